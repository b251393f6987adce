"""Validate the study's config against its JSON Schema, fill defaults, check references.

Errors are one line that names the offending key (``config.models.student.toy.steps``),
raised before Snakemake schedules any job.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import yaml


class ConfigError(ValueError):
    pass


MULTI_NODE_RULES = ("opd_train", "sft")  # the rules whose scripts run one process per GPU


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


_Validator = _with_defaults(jsonschema.Draft202012Validator)


def _key(path) -> str:
    return ".".join(["config", *map(str, path)])


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
    errors = sorted(_Validator(schema).iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ConfigError(_message(jsonschema.exceptions.best_match(errors)))
    _check_sources(config)
    _check_references(config, rule_names)
    return config


def _check_sources(config: dict) -> None:
    for kind in ("models", "benchmarks"):
        for name, entry in config[kind].items():
            given = [k for k in ("toy", "hub", "path") if k in entry]
            if len(given) != 1:
                raise ConfigError(
                    f"{_key([kind, name])}: give exactly one of toy, hub, path (got {', '.join(given) or 'none'})"
                )
            toy = entry.get("toy")
            if toy and toy["min_digits"] > toy["max_digits"]:
                raise ConfigError(f"{_key([kind, name, 'toy', 'min_digits'])}: larger than max_digits")
            if toy and kind == "models" and toy["hidden"] % toy["heads"]:
                raise ConfigError(f"{_key([kind, name, 'toy', 'hidden'])}: not divisible by heads")


def _check_references(config: dict, rule_names: tuple[str, ...]) -> None:
    seen: dict[str, str] = {}
    for kind in ("models", "sft", "experiments"):
        for name in config[kind]:
            if name in seen:
                raise ConfigError(f"{_key([kind, name])}: the name is also used in config.{seen[name]}")
            seen[name] = kind
    models = set(seen)
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
            for i, b in enumerate(entry.get("benchmarks", [])):
                if b not in config["benchmarks"]:
                    raise ConfigError(f"{_key([kind, name, 'benchmarks', i])}: no benchmark named {b!r}")
    _check_acyclic(config)
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
    for rule, res in config["resources"]["rules"].items():
        if (res.get("nodes") or 1) > 1 and rule not in MULTI_NODE_RULES:
            raise ConfigError(f"{_key(['resources', 'rules', rule, 'nodes'])}: only "
                              f"{', '.join(MULTI_NODE_RULES)} can span several nodes")


def _check_acyclic(config: dict) -> None:
    """A model cannot be distilled (even indirectly) from itself as a student."""
    parents = {name: (e["student"], e["teacher"]) for kind in ("sft", "experiments")
               for name, e in config[kind].items()}

    def visit(name, path):
        if name in path:
            raise ConfigError(f"config: models depend on each other in a cycle: {' -> '.join([*path, name])}")
        for parent in parents.get(name, ()):
            visit(parent, [*path, name])

    for name in parents:
        visit(name, [])


def base_eval_pairs(config: dict) -> list[tuple[str, str]]:
    """(model, benchmark) pairs of the base evaluation; an empty list means all."""
    models = config["base_eval"]["models"] or list(config["models"])
    benchmarks = config["base_eval"]["benchmarks"] or list(config["benchmarks"])
    return [(m, b) for m in models for b in benchmarks]


def sampling_for(config: dict, benchmark: str) -> dict:
    return {**config["eval"]["sampling"], **config["benchmarks"][benchmark]["sampling"]}


def template_for(config: dict, benchmark: str) -> str:
    return config["benchmarks"][benchmark]["prompt_template"] or config["eval"]["prompt_template"]


def resources_for(config: dict, rule: str, defaults: dict) -> dict:
    """A rule's resources: built-in ``defaults`` < config default < config per rule."""
    res = config["resources"]
    return {**defaults, **res["default"], **res["rules"].get(rule, {})}
