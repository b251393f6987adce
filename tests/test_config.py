import copy

import pytest
import yaml

from opd.config import ConfigError, base_eval_pairs, load_schema, resources_for, sampling_for, validate_config


@pytest.fixture(scope="module")
def schema(root):
    return load_schema(root / "workflow/schemas/config.schema.yaml")


@pytest.fixture
def toy(root):
    return yaml.safe_load((root / "config/config.yaml").read_text())


def test_default_config_validates_and_gets_defaults(toy, schema):
    cfg = validate_config(toy, schema)
    assert cfg["models"]["student"]["trust_remote_code"] is False
    assert cfg["models"]["student"]["toy"]["layers"] == 2
    assert cfg["eval"]["grading"]["timeout_s"] == 5
    assert len(base_eval_pairs(cfg)) == len(cfg["models"]) * len(cfg["benchmarks"])


def test_paper_defaults_for_sampling(schema):
    cfg = validate_config({"models": {"m": {"hub": "Qwen/Qwen3-1.7B"}},
                           "benchmarks": {"b": {"path": "aime.jsonl"}}}, schema)
    assert cfg["eval"]["sampling"] == {"n": 16, "temperature": 0.7, "top_p": 0.95,
                                       "max_new_tokens": 31744, "seed": 0}


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.update(modles={}), "unknown key config.modles"),
    (lambda c: c["models"]["student"]["toy"].update(steps="ten"),
     "config.models.student.toy.steps: 'ten' is not of type 'integer'"),
    (lambda c: c["models"]["student"]["toy"].update(stepz=1), "unknown key config.models.student.toy.stepz"),
    (lambda c: c["models"]["student"].update(hub="Qwen/Qwen3-1.7B"),
     "config.models.student: give exactly one of toy, hub, path (got toy, hub)"),
    (lambda c: c["benchmarks"]["add_4"].update(sampling={"temperature": -1}),
     "config.benchmarks.add_4.sampling.temperature: -1 is less than the minimum of 0"),
    (lambda c: c["eval"]["sampling"].update(top_p=1.5), "config.eval.sampling.top_p"),
    (lambda c: c["base_eval"].update(models=["nobody"]), "config.base_eval.models.0: no model named 'nobody'"),
    (lambda c: c["models"]["student"]["toy"].update(min_digits=5), "config.models.student.toy.min_digits"),
    (lambda c: c["models"]["student"]["toy"].update(format="latex"), "config.models.student.toy.format"),
    (lambda c: c.pop("benchmarks"), "missing key config.benchmarks"),
    (lambda c: c["resources"].update(rules={"no_such_rule": {"gpus": 1}}),
     "config.resources.rules.no_such_rule: no rule named 'no_such_rule'"),
    (lambda c: c["models"].update({"a/b": {"toy": {}}}), "config.models"),
])
def test_errors_are_one_line_and_name_the_key(toy, schema, edit, message):
    cfg = copy.deepcopy(toy)
    edit(cfg)
    with pytest.raises(ConfigError) as err:
        validate_config(cfg, schema, rule_names=("eval_model",))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_benchmark_sampling_overrides_only_its_keys(toy, schema):
    toy["benchmarks"]["add_4"]["sampling"] = {"temperature": 0.2}
    cfg = validate_config(toy, schema)
    assert sampling_for(cfg, "add_4")["temperature"] == 0.2
    assert sampling_for(cfg, "add_4")["n"] == cfg["eval"]["sampling"]["n"]
    assert sampling_for(cfg, "add_1to3")["temperature"] == cfg["eval"]["sampling"]["temperature"]


def test_resources_layering(toy, schema):
    toy["resources"] = {"default": {"mem_mb": 100}, "rules": {"eval_model": {"gpus": 2}}}
    cfg = validate_config(toy, schema)
    r = resources_for(cfg, "eval_model", {"cpus": 1, "mem_mb": 1, "gpus": 0})
    assert r == {"cpus": 1, "mem_mb": 100, "gpus": 2}
