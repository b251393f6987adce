"""Validate the study's config against its JSON Schema, fill defaults, check references.

Errors are one line that names the offending key (``config.models.student.toy.steps``),
raised before Snakemake schedules any job.
"""

from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path

import jsonschema
import yaml

from .analysis.findings import declaration_error
from .chat import entry_error as chat_error
from .config_errors import ConfigError
from .config_errors import key as _key
from .config_points import (  # noqa: F401 (the workflow imports them from here)
    check_seeds_beside_seed,
    dotted,
    expand_seeds,
    expand_sweeps,
    point_experiment,
    point_name,
    seed_run,
    seed_runs,
    sweep_points,
)
from .config_values import read_typed_strings
from .launch import builtin_deepspeed_configs, deepspeed_path, slurm_extra_error
from .toy.task import distinct_questions


MULTI_NODE_RULES = ("opd_train", "sft")  # the rules whose scripts run one process per GPU
# lengths of opd.qwen_tokenizers' flavours (kept here: the DAG is built without transformers)
TOKENIZER_SIZES = {"qwen3": 151669, "r1_distill": 151665}
# the study's own entries: a second config file that defines any of them is a second study
STUDY_KEYS = ("models", "benchmarks", "prompt_sets", "sft", "experiments", "sweeps")


def _with_defaults(cls):
    """A validator class that fills each property's ``default`` before checking it."""
    check_properties = cls.VALIDATORS["properties"]

    def properties(validator, props, instance, schema):
        if isinstance(instance, dict):
            for name, sub in props.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from check_properties(validator, props, instance, schema)

    return jsonschema.validators.extend(cls, {"properties": properties})


# an integer is an int: 5.0 passes JSON Schema's integer, and a seed of 1e16 (a float) would
# overflow the samplers; settings that count or index fail at job time on a float
_STRICT_TYPES = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
    "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool))
_Validator = _with_defaults(jsonschema.validators.extend(jsonschema.Draft202012Validator, type_checker=_STRICT_TYPES))


def _message(err: jsonschema.ValidationError) -> str:
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        patterns = err.schema.get("patternProperties", {})
        extra = sorted(k for k in set(err.instance) - set(allowed) if not any(re.search(p, k) for p in patterns))
        keys = ", ".join(_key([*err.absolute_path, k]) for k in extra)
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return f"unknown key {keys}{hint}"
    if err.validator == "required":
        missing = err.message.split("'")[1]
        return f"missing key {_key([*err.absolute_path, missing])}"
    if err.validator == "pattern" and err.absolute_path and isinstance(err.instance, str):
        return f"{_key(err.absolute_path)}: {err.instance!r} does not match {err.validator_value!r}"
    if err.validator == "propertyNames":
        return f"{_key(err.absolute_path)}: invalid name {err.instance!r} (letters, digits, _ . - only)"
    return f"{_key(err.absolute_path)}: {err.message}"


def load_schema(path: str | Path) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def validate_config(config: dict, schema: dict, rule_names: tuple[str, ...] = ()) -> dict:
    """Fill defaults into ``config`` in place and check it; raises :class:`ConfigError`."""
    # YAML anchors make entries share nested dicts; give every entry its own copy
    unshared = json.loads(json.dumps(config))
    config.clear()
    config.update(unshared)
    if "seed" in config:
        raise ConfigError("config.seed: a study has no global seed (this key set nothing); seeds are given where "
                          "they act: experiments' train.seed and seeds, sweeps' seeds, sampling.seed, toy recipes' seed")
    check_seeds_beside_seed(config)
    _check_schema(config, schema)
    origin = expand_sweeps(config)
    origin.update(expand_seeds(config))
    try:
        _check_schema(config, schema)  # the points, with their overrides
    except ConfigError as e:
        point = next((p for p in origin if str(e).startswith(f"config.experiments.{p}.")), None)
        raise ConfigError(f"{e} (made by config.{origin[point]})" if point else str(e)) from None
    _check_finite(config, [])
    _check_sources(config)
    _check_references(config, rule_names)
    copies = {run for runs in seed_runs({**config, "seed_runs": "all"}).values() for run in list(runs.values())[1:]}
    if why := declaration_error(config, copies):
        raise ConfigError(why)
    _check_deepspeed(config)
    return config


class _StrictLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys in a mapping without a word; this refuses."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor`: keys written beside it override the anchor's, as intended
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"{self.name} line {key_node.start_mark.line + 1}: key {key!r} is given twice "
                                  f"(first on line {seen[key] + 1})")
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def check_config_files(paths) -> None:
    """Checks of the files themselves, which the merged config cannot show: YAML that does
    not parse (file and line), a key written twice in one mapping, and two files that each
    define a study (Snakemake deep-merges every --configfile, which would join two studies
    into one DAG). A file with ``extends`` adds to the study of the file it names, which
    must come before it, and may add names but not change the ones that study defines."""
    studies, loaded = [], []
    for path in paths:
        data = _read_config_file(path)
        defined = [k for k in STUDY_KEYS if k in data]
        if "extends" in data:
            _check_addition(path, data, loaded)
        elif defined:
            studies.append((str(path), defined))
        loaded.append((Path(path), data))
    if len(studies) > 1:
        names = "; ".join(f"{p} defines {', '.join(keys)}" for p, keys in studies)
        raise ConfigError(f"config: several config files define a study ({names}); give one study per run, and "
                          "put shared settings (resources, eval) in a file without models, benchmarks, prompt "
                          "sets or experiments")


def _read_config_file(path) -> dict:
    """A config file's mapping; YAML that does not parse is an error naming the file and line."""
    with open(path) as f:
        loader = _StrictLoader(f)
        loader.name = str(path)
        try:
            data = loader.get_single_data() or {}
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            context = f" ({e.context}, from line {e.context_mark.line + 1})" if e.context and e.context_mark else ""
            raise ConfigError(f"{path}{where}: not valid YAML: {e.problem}{context}") from None
        finally:
            loader.dispose()
    return data if isinstance(data, dict) else {}


def _check_addition(path, data: dict, loaded: list) -> None:
    base = (Path(path).parent / str(data["extends"])).resolve()
    study = next((d for p, d in loaded if p.resolve() == base), None)
    if study is None:
        raise ConfigError(f"extends: {path} adds to {base}; give that file before it: --configfile {base} {path}")
    for kind in STUDY_KEYS:
        taken = sorted(set(data.get(kind) or {}) & set(study.get(kind) or {}))
        if taken:
            raise ConfigError(f"{kind}.{taken[0]}: {path} extends {base}, which defines it already; an addition "
                              "adds names and changes none")


def _check_finite(value, path) -> None:
    """YAML's .inf and .nan pass every numeric bound of the schema (nan compares false)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{_key(path)}: {value} is not a finite number")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite(v, [*path, k])
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_finite(v, [*path, i])


def _check_deepspeed(config: dict) -> None:
    for kind in ("experiments", "sft"):
        for name, entry in config[kind].items():
            ds = entry["train"].get("deepspeed")
            if ds and not deepspeed_path(ds).is_file():
                raise ConfigError(f"{_key([kind, name, 'train', 'deepspeed'])}: {ds!r} is neither a built-in "
                                  f"DeepSpeed config ({builtin_deepspeed_configs()}) nor a file")


def _check_schema(config: dict, schema: dict) -> None:
    read_typed_strings(config, _Validator(schema))  # --config's nested '2', PyYAML's '1e-6'
    errors = sorted(_Validator(schema).iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ConfigError(_message(jsonschema.exceptions.best_match(errors)))


def _check_sources(config: dict) -> None:
    for kind in ("models", "benchmarks", "prompt_sets"):
        sources = ("toy", "tiny", "hub", "path") if kind == "models" else ("toy", "hub", "path")
        for name, entry in config[kind].items():
            given = [k for k in sources if k in entry]
            if len(given) != 1:
                raise ConfigError(f"{_key([kind, name])}: give exactly one of {', '.join(sources)} "
                                  f"(got {', '.join(given) or 'none'})")
            if kind == "models" and chat_error(entry):
                raise ConfigError(f"{_key([kind, name, 'enable_thinking'])}: {chat_error(entry)}")
            tiny = entry.get("tiny")
            if tiny and (tiny["hidden"] % tiny["heads"] or tiny["heads"] % tiny["kv_heads"]):
                raise ConfigError(f"{_key([kind, name, 'tiny', 'heads'])}: hidden, heads and kv_heads must divide")
            if tiny and tiny["vocab_rows"] < TOKENIZER_SIZES[tiny["tokenizer"]]:
                raise ConfigError(f"{_key([kind, name, 'tiny', 'vocab_rows'])}: fewer rows than the "
                                  f"{tiny['tokenizer']} tokenizer's {TOKENIZER_SIZES[tiny['tokenizer']]} tokens")
            toy = entry.get("toy")
            if toy and toy["min_digits"] > toy["max_digits"]:
                raise ConfigError(f"{_key([kind, name, 'toy', 'min_digits'])}: larger than max_digits")
            if toy and kind == "models" and toy["hidden"] % toy["heads"]:
                raise ConfigError(f"{_key([kind, name, 'toy', 'hidden'])}: not divisible by heads")
            if toy and kind != "models":
                space = distinct_questions(toy["min_digits"], toy["max_digits"], toy["max_digit"],
                                           toy["require_digit_above"])
                if toy["count"] > space:
                    raise ConfigError(f"{_key([kind, name, 'toy', 'count'])}: {toy['count']} distinct problems "
                                      f"asked for, but these digits allow only {space}")


def _check_references(config: dict, rule_names: tuple[str, ...]) -> None:
    # one namespace: a prompt set called like a benchmark would read the benchmark's file
    seen: dict[str, str] = {}
    for kind in ("models", "sft", "experiments", "benchmarks", "prompt_sets", "sweeps"):
        for name in config[kind]:
            if name in seen:
                raise ConfigError(f"{_key([kind, name])}: the name is also used in config.{seen[name]}")
            seen[name] = kind
    models = {n for n, kind in seen.items() if kind in ("models", "sft", "experiments")}
    data = set(config["benchmarks"]) | set(config["prompt_sets"])
    for name, entry in config["prompt_sets"].items():
        for i, other in enumerate(entry["exclude"]):
            if other not in data or other == name:
                raise ConfigError(f"{_key(['prompt_sets', name, 'exclude', i])}: no other benchmark or prompt set named {other!r}")
    for kind in ("sft", "experiments"):
        for name, entry in config[kind].items():
            for role in ("student", "teacher"):
                if entry[role] not in models or entry[role] == name:
                    raise ConfigError(f"{_key([kind, name, role])}: no other model named {entry[role]!r}")
            if entry["prompts"] not in config["prompt_sets"]:
                raise ConfigError(f"{_key([kind, name, 'prompts'])}: no prompt set named {entry['prompts']!r}")
            if kind == "experiments" and config["prompt_sets"][entry["prompts"]]["answer_key"] is None:
                raise ConfigError(f"{_key([kind, name, 'prompts'])}: prompt set {entry['prompts']!r} has no answers "
                                  "(answer_key: null), which OPD's verifier needs")
            for i, b in enumerate(entry.get("benchmarks", [])):
                if b not in config["benchmarks"]:
                    raise ConfigError(f"{_key([kind, name, 'benchmarks', i])}: no benchmark named {b!r}")
    for name, probe in config["probes"].items():
        for i, model in enumerate([probe["student"], *probe["teachers"]]):
            if model not in models:
                where = ["probes", name, "student"] if i == 0 else ["probes", name, "teachers", i - 1]
                raise ConfigError(f"{_key(where)}: no model named {model!r}")
        for i, b in enumerate(probe["verdict"]["benchmarks"]):
            if b not in config["benchmarks"]:
                raise ConfigError(f"{_key(['probes', name, 'verdict', 'benchmarks', i])}: no benchmark named {b!r}")
        if probe["prompts"] not in data:
            raise ConfigError(f"{_key(['probes', name, 'prompts'])}: no prompt set or benchmark named "
                              f"{probe['prompts']!r}")
    for name, c in config["continuations"].items():
        for role in ("student", "teacher"):
            if c[role] not in models:
                raise ConfigError(f"{_key(['continuations', name, role])}: no model named {c[role]!r}")
        if c["benchmark"] not in config["benchmarks"]:
            raise ConfigError(f"{_key(['continuations', name, 'benchmark'])}: no benchmark named {c['benchmark']!r}")
    _check_acyclic(config)
    _check_toy_tokenizers(config)
    for field, kind in (("models", "models"), ("benchmarks", "benchmarks")):
        for i, name in enumerate(config["base_eval"][field]):
            if name not in (models if kind == "models" else config[kind]):
                raise ConfigError(f"{_key(['base_eval', field, i])}: no {kind[:-1]} named {name!r}")
    if rule_names:
        for rule in config["resources"]["rules"]:
            if rule not in rule_names:
                raise ConfigError(f"{_key(['resources', 'rules', rule])}: no rule named {rule!r}")
    if (config["resources"]["default"].get("nodes") or 1) > 1:
        raise ConfigError(f"{_key(['resources', 'default', 'nodes'])}: several nodes only per training rule")
    for where, res in [("default", config["resources"]["default"]),
                       *((f"rules.{r}", v) for r, v in config["resources"]["rules"].items())]:
        if res.get("slurm_extra") and (why := slurm_extra_error(res["slurm_extra"])):
            raise ConfigError(f"{_key(['resources', *where.split('.'), 'slurm_extra'])}: {why}: "
                              f"{res['slurm_extra']!r:.80}")
    for rule, res in config["resources"]["rules"].items():
        if (res.get("nodes") or 1) > 1 and rule not in MULTI_NODE_RULES:
            raise ConfigError(f"{_key(['resources', 'rules', rule, 'nodes'])}: only "
                              f"{', '.join(MULTI_NODE_RULES)} can span several nodes")


def _parents(config: dict) -> dict[str, tuple[str, str]]:
    """Each training run (SFT, OPD) -> the student and teacher it is made from."""
    return {name: (e["student"], e["teacher"]) for kind in ("sft", "experiments")
            for name, e in config[kind].items()}


def _check_acyclic(config: dict) -> None:
    """A model cannot be distilled (even indirectly) from itself as a student."""
    parents = _parents(config)

    def visit(name, path):
        if name in path:
            raise ConfigError(f"config: models depend on each other in a cycle: {' -> '.join([*path, name])}")
        for parent in parents.get(name, ()):
            visit(parent, [*path, name])

    for name in parents:
        visit(name, [])


def toy_tokenizer(config: dict, name: str, parents: dict | None = None) -> str | None:
    """The toy tokenizer a model is built around (a trained one: its base student's), or
    None for a model that is not a toy one. Absent from a recipe, it is ``characters``."""
    parents = _parents(config) if parents is None else parents
    while name in parents:
        name = parents[name][0]
    toy = config["models"][name].get("toy")
    return toy.get("tokenizer", "characters") if toy else None


def _check_toy_tokenizers(config: dict) -> None:
    """A teacher scores the student's tokens: the toy tokenizers of the two must be one."""
    pairs = [([kind, name, "teacher"], e["student"], e["teacher"]) for kind in ("sft", "experiments")
             for name, e in config[kind].items()]
    pairs += [(["probes", name, "teachers", i], p["student"], t) for name, p in config["probes"].items()
              for i, t in enumerate(p["teachers"])]
    pairs += [(["continuations", name, "teacher"], c["student"], c["teacher"])
              for name, c in config["continuations"].items()]
    parents = _parents(config)
    for where, student, teacher in pairs:
        kinds = toy_tokenizer(config, student, parents), toy_tokenizer(config, teacher, parents)
        if None not in kinds and kinds[0] != kinds[1]:
            raise ConfigError(f"{_key(where)}: {teacher!r} is a toy model of the {kinds[1]} tokenizer and the student "
                              f"{student!r} of the {kinds[0]} one; a teacher must share the student's tokenizer")


def chain_lengths(config: dict) -> dict[str, int]:
    """For each model and training run: the most training runs (SFT, OPD; a built model's
    pretraining counts as one) in a chain that starts with it. As the training jobs' priority
    (evaluations and reports keep 0), long jobs and long chains start first and the short
    evaluations fill the cores at the end, instead of the DAG ending on one long run.
    ``config`` is validated: it has no cycles."""
    users = {}
    for run, used in _parents(config).items():
        for name in set(used):
            users.setdefault(name, []).append(run)
    length = {}

    def chain(name):
        if name not in length:
            length[name] = 1 + max((chain(run) for run in users.get(name, [])), default=0)
        return length[name]

    return {name: chain(name) for name in [*config["models"], *config["sft"], *config["experiments"]]}


def base_eval_pairs(config: dict) -> list[tuple[str, str]]:
    """(model, benchmark) pairs of the base evaluation; an empty list means all."""
    models = config["base_eval"]["models"] or list(config["models"])
    benchmarks = config["base_eval"]["benchmarks"] or list(config["benchmarks"])
    return [(m, b) for m in models for b in benchmarks]


def sampling_for(config: dict, benchmark: str) -> dict:
    return {**config["eval"]["sampling"], **config["benchmarks"][benchmark]["sampling"]}


def template_for(config: dict, name: str, kind: str = "benchmarks") -> str:
    """The prompt template of a benchmark (or an experiment, a probe): its own, else the
    evaluation's."""
    return config[kind][name]["prompt_template"] or config["eval"]["prompt_template"]


def resources_for(config: dict, rule: str, defaults: dict) -> dict:
    """A rule's resources: built-in ``defaults`` < config default < config per rule."""
    res = config["resources"]
    return {**defaults, **res["default"], **res["rules"].get(rule, {})}
