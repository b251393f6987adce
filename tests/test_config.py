import copy
import json
import re

import pytest
import yaml

from opd.config import (
    ConfigError,
    base_eval_pairs,
    check_config_files,
    resources_for,
    sampling_for,
    seed_runs,
    validate_config,
)




def test_default_config_validates_and_gets_defaults(toy, schema):
    cfg = validate_config(toy, schema)
    assert cfg["models"]["student"]["trust_remote_code"] is False
    assert cfg["models"]["student"]["toy"]["layers"] == 2
    assert cfg["eval"]["grading"]["timeout_s"] == 1
    assert cfg["seed_runs"] == "first" and not any(".seed" in name for name in cfg["experiments"])
    assert len(base_eval_pairs(cfg)) == len(cfg["models"]) * len(cfg["benchmarks"])


def test_entries_sharing_a_yaml_anchor_are_independent(root, schema):
    cfg = validate_config(yaml.safe_load((root / "config/config.yaml").read_text()), schema)
    cfg["experiments"]["opd_new_skill"]["objective"]["k"] = 3
    assert cfg["experiments"]["opd_same_pipeline"]["objective"]["k"] == 16


def test_anchor_holders_are_ignored_but_other_unknown_keys_are_not(toy, schema):
    toy["_anchors"] = {"anything": 1}
    validate_config(toy, schema)
    toy["anchors"] = {}
    with pytest.raises(ConfigError, match=r"^unknown key config.anchors \("):
        validate_config(toy, schema)


def test_experiment_defaults_are_the_papers(schema):
    cfg = validate_config({"models": {"s": {"hub": "Qwen/Qwen3-1.7B-Base"}, "t": {"hub": "Qwen/Qwen3-4B"}},
                           "benchmarks": {"b": {"path": "aime.jsonl"}},
                           "prompt_sets": {"dapo": {"path": "dapo.jsonl"}},
                           "experiments": {"e": {"student": "s", "teacher": "t", "prompts": "dapo"}}}, schema)
    e = cfg["experiments"]["e"]
    assert e["objective"] == {"kind": "topk", "k": 16, "topk_set": "student", "weights": "student_p", "clip": 0.2,
                              "dual_clip": 3.0, "teacher_temperature": 1.0, "metrics_k": 16,
                              "loss_agg_mode": "token-mean"}
    t = e["train"]
    assert (t["n"], t["temperature"], t["top_p"], t["prompts_per_step"], t["max_new_tokens"], t["lr"],
            t["grad_clip"], t["eval_every"]) == (4, 1.0, 1.0, 64, 7168, 1e-6, 1.0, 20)


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
     "config.models.student: give exactly one of toy, tiny, hub, path (got toy, hub)"),
    (lambda c: c["models"].update(student={"tiny": {"vocab_rows": 151000}}),
     "config.models.student.tiny.vocab_rows: fewer rows than the qwen3 tokenizer's 151669 tokens"),
    (lambda c: c["models"].update(student={"tiny": {"architecture": "llama"}}), "config.models.student.tiny.architecture"),
    (lambda c: c["prompt_sets"]["opd_prompts"].update(answer_key=None),
     "config.experiments.opd_new_skill.prompts: prompt set 'opd_prompts' has no answers"),
    (lambda c: c["benchmarks"]["new_digits"].update(sampling={"temperature": -1}),
     "config.benchmarks.new_digits.sampling.temperature: -1 is less than the minimum of 0"),
    (lambda c: c["eval"]["sampling"].update(top_p=1.5), "config.eval.sampling.top_p"),
    (lambda c: c["base_eval"].update(models=["nobody"]), "config.base_eval.models.0: no model named 'nobody'"),
    (lambda c: c["models"]["student"]["toy"].update(min_digits=5), "config.models.student.toy.min_digits"),
    (lambda c: c["models"]["student"]["toy"].update(format="latex"), "config.models.student.toy.format"),
    (lambda c: c.pop("benchmarks"), "missing key config.benchmarks"),
    (lambda c: c["resources"].update(rules={"no_such_rule": {"gpus": 1}}),
     "config.resources.rules.no_such_rule: no rule named 'no_such_rule'"),
    (lambda c: c["models"].update({"a/b": {"toy": {}}}), "config.models"),
    (lambda c: c["experiments"]["opd_new_skill"].update(teacher="nobody"),
     "config.experiments.opd_new_skill.teacher: no other model named 'nobody'"),
    (lambda c: c["experiments"]["opd_new_skill"].update(prompts="nothing"),
     "config.experiments.opd_new_skill.prompts: no prompt set named 'nothing'"),
    (lambda c: c["experiments"]["opd_new_skill"]["objective"].update(topk_set="both"),
     "config.experiments.opd_new_skill.objective.topk_set"),
    (lambda c: c["experiments"]["opd_new_skill"]["train"].update(lr=0), "config.experiments.opd_new_skill.train.lr"),
    (lambda c: c["experiments"].update(student={"student": "student", "teacher": "student", "prompts": "opd_prompts"}),
     "config.experiments.student: the name is also used in config.models"),
    (lambda c: c["experiments"]["opd_new_skill"].update(student="reverse_to_base"), "cycle"),
    (lambda c: c["prompt_sets"]["opd_prompts"].update(exclude=["opd_prompts"]),
     "config.prompt_sets.opd_prompts.exclude.0"),
    (lambda c: c["sft"]["student_coldstart"]["train"].update(epochs=0), "config.sft.student_coldstart.train.epochs"),
    (lambda c: c["sweeps"]["objective"].update(grid={"objective.kk": [1]}),
     "config.sweeps.objective.grid: 'objective.kk' is not an experiment setting"),
    (lambda c: c["sweeps"]["objective"]["points"].update(bad={"train.lr": -1}),
     "config.experiments.objective.bad.train.lr: -1 is less than or equal to the minimum of 0 "
     "(made by config.sweeps.objective)"),
    (lambda c: c["sweeps"]["objective"].update(base="nothing"), "config.sweeps.objective.base: no experiment named"),
    (lambda c: c["sweeps"]["objective"].pop("points"), "config.sweeps.objective: give a grid or points"),
    (lambda c: c["probes"]["student_teachers"].update(teachers=["nobody"]),
     "config.probes.student_teachers.teachers.0: no model named 'nobody'"),
    (lambda c: c["resources"].update(rules={"eval_model": {"nodes": 2}}),
     "config.resources.rules.eval_model.nodes: only opd_train, sft can span several nodes"),
    # slurm_extra reaches sbatch's command line: options only
    (lambda c: c["resources"].update(rules={"eval_model": {"slurm_extra": "--wrap='rm -rf ~'; echo"}}),
     "config.resources.rules.eval_model.slurm_extra: --wrap is not an option for a rule's job"),
    (lambda c: c["resources"]["default"].update(slurm_extra="--exclusive; rm -rf ~"),
     "config.resources.default.slurm_extra: not sbatch options: the shell operator ';'"),
    (lambda c: c["resources"]["default"].update(slurm_extra="--comment=$(id)"),
     "config.resources.default.slurm_extra: not sbatch options: shell text"),
    (lambda c: c["resources"]["default"].update(slurm_extra="exclusive"),
     "config.resources.default.slurm_extra: not sbatch options: 'exclusive' is neither an option"),
    # careless input that used to pass the check and fail (or mislead) later
    (lambda c: c["experiments"]["opd_new_skill"]["train"].update(lr=float("inf")),
     "config.experiments.opd_new_skill.train.lr: inf is not a finite number"),
    (lambda c: c["sft"]["student_coldstart"]["train"].update(lr=float("nan")),
     "config.sft.student_coldstart.train.lr: nan is not a finite number"),
    (lambda c: c["experiments"]["opd_new_skill"]["train"].update(deepspeed="zero7"),
     "config.experiments.opd_new_skill.train.deepspeed: 'zero7' is neither a built-in DeepSpeed config (zero1, zero2)"),
    (lambda c: c["benchmarks"]["shared"]["toy"].update(count=10_000, max_digits=1, min_digits=1),
     "config.benchmarks.shared.toy.count: 10000 distinct problems asked for, but these digits allow only 49"),  # max_digit 6
    (lambda c: c["prompt_sets"]["opd_prompts"]["toy"].update(max_digit=6, require_digit_above=6),
     "config.prompt_sets.opd_prompts.toy.count"),
    (lambda c: c["prompt_sets"].update(shared=c["prompt_sets"]["opd_prompts"]),
     "config.prompt_sets.shared: the name is also used in config.benchmarks"),
    (lambda c: c["sweeps"].update(opd_new_skill=c["sweeps"]["objective"]),
     "config.sweeps.opd_new_skill: the name is also used in config.experiments"),
    (lambda c: c["sweeps"]["objective"].update(grid={"objective.k": [4, 4]}),
     "config.sweeps.objective.grid: {'objective.k': 4} and {'objective.k': 4} both make the point 'objective.k-4'"),
    (lambda c: c["sweeps"]["objective"].update(grid={"objective.teacher_temperature": [0.5, "0.5"]}),
     "both make the point 'objective.teacher_temperature-0.5'"),
    (lambda c: c["sweeps"]["objective"].update(grid={"objective.k": [4]}, points={"k-4": {"objective.k": 8}}),
     "config.sweeps.objective.points.k-4: the grid's point {'objective.k': 4} has this name too"),
])
def test_errors_are_one_line_and_name_the_key(toy, schema, edit, message):
    cfg = copy.deepcopy(toy)
    edit(cfg)
    with pytest.raises(ConfigError) as err:
        validate_config(cfg, schema, rule_names=("eval_model",))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_sbatch_options_in_slurm_extra_pass(toy, schema):
    cfg = copy.deepcopy(toy)
    cfg["resources"]["default"]["slurm_extra"] = "--exclusive --qos high -C 'a100|h100' --signal=USR1@60"
    validate_config(cfg, schema, rule_names=("eval_model",))


def test_benchmark_sampling_overrides_only_its_keys(toy, schema):
    toy["benchmarks"]["new_digits"]["sampling"] = {"temperature": 0.2}
    cfg = validate_config(toy, schema)
    assert sampling_for(cfg, "new_digits")["temperature"] == 0.2
    assert sampling_for(cfg, "new_digits")["n"] == cfg["eval"]["sampling"]["n"]
    assert sampling_for(cfg, "shared")["temperature"] == cfg["eval"]["sampling"]["temperature"]


def test_resources_layering(toy, schema):
    toy["resources"] = {"default": {"mem_mb": 100}, "rules": {"eval_model": {"gpus": 2}}}
    cfg = validate_config(toy, schema)
    r = resources_for(cfg, "eval_model", {"cpus": 1, "mem_mb": 1, "gpus": 0})
    assert r == {"cpus": 1, "mem_mb": 100, "gpus": 2}


def test_sweep_points_become_experiments(toy, schema):
    cfg = copy.deepcopy(toy)
    cfg["sweeps"] = {"k": {"base": "opd_new_skill", "grid": {"objective.kind": ["topk"], "objective.k": [1, 4]},
                           "points": {"sampled": {"objective.kind": "sampled"}}}}
    validate_config(cfg, schema)
    points = [name for name in cfg["experiments"] if name.startswith("k.")]
    assert points == ["k.kind-topk_k-1", "k.kind-topk_k-4", "k.sampled"]
    base = cfg["experiments"]["opd_new_skill"]
    for name in points:
        point = cfg["experiments"][name]
        assert point["train"] == base["train"] and point["teacher"] == base["teacher"]
    assert cfg["experiments"]["k.kind-topk_k-4"]["objective"] == {**base["objective"], "kind": "topk", "k": 4}
    assert cfg["experiments"]["k.sampled"]["objective"]["kind"] == "sampled"


def test_a_sweep_value_that_is_a_mapping_changes_only_the_settings_it_names(toy, schema):
    cfg = copy.deepcopy(toy)
    base = cfg["experiments"]["opd_new_skill"]
    base["objective"] = {"kind": "full", "metrics_k": 1}
    base["train"].update(steps=100, lr=3e-4)
    cfg["sweeps"] = {"k": {"base": "opd_new_skill", "points": {"k2": {"objective": {"k": 2}}}},
                     "whole": {"base": "opd_new_skill", "grid": {"train": [{"steps": 50}, {"steps": 70}]}}}
    validate_config(cfg, schema)
    point = cfg["experiments"]["k.k2"]
    assert point["objective"]["kind"] == "full" and point["objective"]["metrics_k"] == 1 and point["objective"]["k"] == 2
    for steps in (50, 70):
        train = cfg["experiments"][f"whole.steps-{steps}"]["train"]
        assert train["steps"] == steps and train["lr"] == 3e-4  # the base's, not the schema's default
    from opd.config import sweep_points
    assert sweep_points("k", cfg["sweeps"]["k"]) == {"k.k2": {"objective.k": 2}}  # what the sweep table shows


def test_a_global_seed_is_refused_since_it_would_set_nothing(toy, schema):
    with pytest.raises(ConfigError, match=r"config.seed: a study has no global seed.*train.seed"):
        validate_config({**toy, "seed": 5}, schema)


@pytest.mark.parametrize("where, value", [("train.seed", 2**63), ("train.seed", 2**31), ("train.seed", -1),
                                          ("train.seed", 1e16), ("train.seed", "1e16"), ("train.seed", 5.0),
                                          ("seeds", list(range(65)))])
def test_seeds_that_would_overflow_the_samplers_or_the_dag_are_refused_naming_the_key(toy, schema, where, value):
    cfg = copy.deepcopy(toy)
    entry = cfg["experiments"]["opd_new_skill"]
    if where == "seeds":
        entry["seeds"] = value
    else:
        entry["train"]["seed"] = value
    with pytest.raises(ConfigError, match=rf"config.experiments.opd_new_skill.{where}"):
        validate_config(cfg, schema)


def test_a_sweeps_seed_beyond_the_bound_is_refused_naming_the_sweep(toy, schema):
    cfg = without_seeds(toy)
    cfg["sweeps"]["objective"]["points"]["big_seed"] = {"train.seed": 2**40}
    with pytest.raises(ConfigError, match=r"config.experiments.objective.big_seed.train.seed: 1099511627776 is greater "
                                          r"than the maximum of 2147483647 \(made by config.sweeps.objective\)"):
        validate_config(cfg, schema)


def test_a_train_seed_that_seeds_would_overwrite_is_refused(toy, schema):
    """The first of ``seeds`` is the run's train.seed: one given beside them, or by a sweep
    point of a base with seeds, was silently replaced (the sweep's points all ran seed 0)."""
    cfg = copy.deepcopy(toy)
    cfg["experiments"]["opd_new_skill"]["train"]["seed"] = 7
    with pytest.raises(ConfigError, match=r"config.experiments.opd_new_skill.train.seed: 7 given beside seeds "
                                          r"\[0, 1, 2\]"):
        validate_config(cfg, schema)
    cfg = copy.deepcopy(toy)
    cfg["sweeps"]["objective"]["points"]["seed7"] = {"train.seed": 7}
    with pytest.raises(ConfigError, match=r"config.sweeps.objective.points.seed7: 'train.seed' is set by the seeds of "
                                          r"its base"):
        validate_config(cfg, schema)


def test_the_largest_seed_gives_step_seeds_every_generator_takes(schema):
    """The samplers derive seed * 1,000,003 + step (+ 7919 a rank): within 2**63 for a
    million steps on a thousand ranks, which torch's, vLLM's (torch) and Python's take."""
    import random

    import torch

    from opd.distributed import Dist

    top = Dist(rank=1023, world=1024).seed(schema["$defs"]["seed"]["maximum"] * 1_000_003 + 10**6)
    assert top < 2**63
    torch.Generator().manual_seed(top)
    random.Random(top)


def test_strings_a_yaml_reader_left_are_read_as_the_numbers_they_are_where_the_schema_wants_numbers(toy, schema):
    """Snakemake reads --config's nested values as strings (eval={sampling: {n: 2}} gives
    '2'), and PyYAML reads 1e-5 (no dot) as a string: neither is the user's mistake."""
    cfg = copy.deepcopy(toy)
    cfg["eval"]["sampling"].update(n="2", temperature="0.5")
    cfg["experiments"]["opd_new_skill"]["train"].update(lr="1e-5", gradient_checkpointing="true")
    cfg["experiments"]["opd_new_skill"]["seeds"] = ["0", "1"]
    cfg["sweeps"]["objective"]["points"]["top4"] = {"objective.k": "4"}  # a sweep's value, checked once expanded
    validate_config(cfg, schema)
    assert cfg["eval"]["sampling"]["n"] == 2 and cfg["eval"]["sampling"]["temperature"] == 0.5
    train = cfg["experiments"]["opd_new_skill"]["train"]
    assert train["lr"] == 1e-5 and train["gradient_checkpointing"] is True
    assert cfg["experiments"]["opd_new_skill"]["seeds"] == [0, 1]
    assert cfg["experiments"]["objective.top4"]["objective"]["k"] == 4
    cfg = copy.deepcopy(toy)
    cfg["eval"]["sampling"]["n"] = "two"
    with pytest.raises(ConfigError, match=r"config.eval.sampling.n: 'two' is not of type 'integer'"):
        validate_config(cfg, schema)
    cfg["eval"]["sampling"]["n"] = "2.5"
    with pytest.raises(ConfigError, match=r"config.eval.sampling.n: 2.5 is not of type 'integer'"):
        validate_config(cfg, schema)


def without_seeds(toy: dict) -> dict:
    cfg = copy.deepcopy(toy)
    cfg["seed_runs"] = "all"
    for e in cfg["experiments"].values():
        e.pop("seeds", None)
    return cfg


def test_seeds_expand_into_one_run_per_seed(toy, schema):
    cfg = without_seeds(toy)
    cfg["experiments"]["opd_new_skill"]["seeds"] = [5, 1, 2]
    cfg["sweeps"] = {"k": {"base": "opd_new_skill", "seeds": [0, 3], "points": {"top4": {"objective.k": 4}}}}
    validate_config(cfg, schema)
    exps = cfg["experiments"]
    assert seed_runs(cfg) == {"opd_new_skill": {5: "opd_new_skill", 1: "opd_new_skill.seed1",
                                                2: "opd_new_skill.seed2"},
                              "k.top4": {0: "k.top4", 3: "k.top4.seed3"}}
    assert [exps[r]["train"]["seed"] for r in seed_runs(cfg)["opd_new_skill"].values()] == [5, 1, 2]
    assert [exps[r]["train"]["seed"] for r in seed_runs(cfg)["k.top4"].values()] == [0, 3]
    copy_ = exps["opd_new_skill.seed2"]
    assert copy_["seeds"] is None and copy_["objective"] == exps["opd_new_skill"]["objective"]
    assert {k: v for k, v in copy_["train"].items() if k != "seed"} == \
        {k: v for k, v in exps["opd_new_skill"]["train"].items() if k != "seed"}
    assert exps["k.top4.seed3"]["objective"]["k"] == 4
    assert exps["reverse_to_base"]["student"] == "opd_new_skill"  # later experiments use the first seed's run
    quick = without_seeds(toy)
    quick["seed_runs"] = "first"
    quick["experiments"]["opd_new_skill"]["seeds"] = [5, 1, 2]
    validate_config(quick, schema)
    # the sweep's points are copies of their base, seeds included
    assert seed_runs(quick) == {name: {5: name} for name in ("opd_new_skill", "objective.sampled", "objective.top4")}
    assert quick["experiments"]["opd_new_skill"]["train"]["seed"] == 5
    assert not any(".seed" in name for name in quick["experiments"])


@pytest.mark.parametrize("seeds, message", [
    ([], "config.experiments.opd_new_skill.seeds: [] should be non-empty"),
    ([1, 1], "config.experiments.opd_new_skill.seeds: [1, 1] has non-unique elements"),
    ([0, "a"], "config.experiments.opd_new_skill.seeds.1: 'a' is not of type 'integer'"),
])
def test_bad_seeds_are_refused(toy, schema, seeds, message):
    cfg = copy.deepcopy(toy)
    cfg["experiments"]["opd_new_skill"]["seeds"] = seeds
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate_config(cfg, schema)


def test_a_seed_run_named_like_an_experiment_is_refused(toy, schema):
    cfg = without_seeds(toy)
    cfg["experiments"]["opd_new_skill"]["seeds"] = [0, 1]
    cfg["experiments"]["opd_new_skill.seed1"] = copy.deepcopy(cfg["experiments"]["opd_same_pipeline"])
    with pytest.raises(ConfigError, match=r"config.experiments.opd_new_skill.seeds: seed 1's run "
                                          r"'opd_new_skill.seed1' is also an experiment's name"):
        validate_config(cfg, schema)


def test_a_key_written_twice_in_a_config_file_is_refused(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text("sweeps:\n  s:\n    points:\n      a: {objective.k: 4}\n      a: {objective.k: 8}\n")
    with pytest.raises(ConfigError, match=r"study.yaml line 5: key 'a' is given twice \(first on line 4\)"):
        check_config_files([path])


def test_a_yaml_syntax_error_names_the_file_and_line(tmp_path, root):
    import subprocess
    import sys

    path = tmp_path / "study.yaml"
    path.write_text("models:\n  s: {toy: {}\n  t: {toy: {}}\n")
    message = f"{path} line 3, column 3: not valid YAML: expected ',' or '}}', but got '<scalar>' (while parsing a " \
              "flow mapping, from line 2)"
    with pytest.raises(ConfigError) as err:
        check_config_files([path])
    assert str(err.value) == message
    # a --configfile is read by Snakemake before the workflow, which says only "not valid JSON or YAML"
    run = subprocess.run([sys.executable, str(root / "scripts/check_config.py"), str(path)], capture_output=True,
                         text=True)
    assert run.returncode == 1 and run.stderr.strip() == f"invalid config: {message}"
    run = subprocess.run([sys.executable, str(root / "scripts/check_config.py"), str(root / "config/paper.yaml")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_two_config_files_with_a_study_each_are_refused_but_a_settings_file_is_not(tmp_path, root):
    site = tmp_path / "site.yaml"
    site.write_text("resources:\n  default: {cpus: 4}\n")
    check_config_files([root / "config/paper.yaml", site])  # a study plus site settings
    with pytest.raises(ConfigError, match="several config files define a study.*config.yaml defines models"):
        check_config_files([root / "config/paper.yaml", root / "config/config.yaml"])
    for name in ("config.yaml", "paper.yaml", "rehearsal.yaml"):  # anchors and merge keys are not duplicates
        check_config_files([root / "config" / name])


def test_an_addition_extends_the_study_it_names_and_changes_none_of_it(tmp_path, root, schema):
    addition = root / "config/recipes_5_2.yaml"
    check_config_files([root / "config/config.yaml", addition])
    with pytest.raises(ConfigError, match=r"extends: .*recipes_5_2.yaml adds to .*config.yaml; give that file before"):
        check_config_files([addition])
    with pytest.raises(ConfigError, match="several config files define a study"):
        check_config_files([root / "config/paper.yaml", root / "config/config.yaml", addition])
    (tmp_path / "study.yaml").write_text("models:\n  student: {hub: a/b}\nbenchmarks: {}\n")
    (tmp_path / "more.yaml").write_text("extends: study.yaml\nmodels:\n  student: {hub: c/d}\n")
    with pytest.raises(ConfigError, match=r"^models.student: .*more.yaml extends .*study.yaml, which defines it"):
        check_config_files([tmp_path / "study.yaml", tmp_path / "more.yaml"])
    cfg = merged_with_addition(root, addition, schema)
    assert cfg["models"]["student_two_templates"]["toy"]["prompt_template"] == ["{problem}", "Solve: {problem}"]
    assert cfg["experiments"]["prompt_template.other_template"]["prompt_template"] == "Solve: {problem}"
    assert cfg["experiments"]["prompt_content.other_content"]["prompts"] == "opd_prompts_4digit"


def merged_with_addition(root, addition, schema=None):
    """The toy world and an addition, merged as Snakemake merges config files, validated
    (given the schema)."""
    check_config_files([root / "config/config.yaml", addition])
    merged = json.loads(json.dumps(yaml.safe_load((root / "config/config.yaml").read_text())))
    for kind, entries in yaml.safe_load(addition.read_text()).items():
        merged[kind] = {**merged[kind], **entries} if isinstance(entries, dict) else entries
    return validate_config(merged, schema) if schema else merged


def test_every_addition_shipped_extends_the_toy_world_and_validates(root, schema):
    additions = [p for p in sorted((root / "config").glob("*.yaml")) if "extends" in yaml.safe_load(p.read_text())]
    assert {p.name for p in additions} >= {"recipes_5_2.yaml", "ablation_topk.yaml", "subword_world.yaml"}
    for addition in additions:
        assert yaml.safe_load(addition.read_text())["extends"] == "config.yaml"
        merged_with_addition(root, addition, schema)
    cfg = merged_with_addition(root, root / "config/ablation_topk.yaml", schema)
    assert {e: cfg["experiments"][f"objective_k.top{e}"]["objective"]["k"] for e in (1, 16, 64)} == \
        {1: 1, 16: 16, 64: 64}


def test_a_teacher_of_another_toy_tokenizer_is_refused(root, schema):
    cfg = merged_with_addition(root, root / "config/subword_world.yaml")
    assert "tokenizer" not in validate_config(copy.deepcopy(cfg), schema)["models"]["student"]["toy"]
    for where, edit in ((r"experiments\.opd_subword\.teacher", ("experiments", "opd_subword", "teacher")),
                        (r"probes\.subword\.teachers\.0", ("probes", "subword", "teachers"))):
        bad = copy.deepcopy(cfg)
        kind, name, key = edit
        bad[kind][name][key] = ["teacher_new_skill"] if key == "teachers" else "teacher_new_skill"
        with pytest.raises(ConfigError, match=rf"^config\.{where}: 'teacher_new_skill' is a toy model of the characters "
                                              r"tokenizer and the student 'student_subword' of the subword one"):
            validate_config(bad, schema)
    # a trained student is judged by the tokenizer of the base model it comes from
    bad = copy.deepcopy(cfg)
    bad["experiments"]["reverse_to_base"]["teacher"] = "student_subword"
    with pytest.raises(ConfigError, match=r"^config\.experiments\.reverse_to_base\.teacher: 'student_subword'"):
        validate_config(bad, schema)


def test_a_toy_recipe_takes_one_template_or_several(toy, schema):
    toy["models"]["student"]["toy"]["prompt_template"] = ["{problem}", "Q: {problem}"]
    validate_config(copy.deepcopy(toy), schema)
    for bad in ([], ["{problem}", "no problem"]):
        toy["models"]["student"]["toy"]["prompt_template"] = bad
        with pytest.raises(ConfigError, match=r"models.student.toy.prompt_template"):
            validate_config(copy.deepcopy(toy), schema)
