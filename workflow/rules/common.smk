import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from opd.config import (  # noqa: E402
    ConfigError,
    base_eval_pairs,
    load_schema,
    resources_for,
    sampling_for,
    template_for,
    validate_config,
)

SCRIPTS = Path(workflow.basedir) / "scripts"


def script_path(name):
    """A script as a job input: editing it reruns the jobs it made."""
    return str(SCRIPTS / name)

RULES_WITH_RESOURCES = ("build_toy_tokenizer", "prepare_benchmark", "prepare_model", "eval_model")
BUILTIN_RESOURCES = {"cpus": 1, "mem_mb": 4000, "runtime": 60, "gpus": 0}

try:
    validate_config(
        config, load_schema(Path(workflow.basedir) / "workflow/schemas/config.schema.yaml"), RULES_WITH_RESOURCES
    )
except ConfigError as e:
    raise WorkflowError(f"invalid config: {e}") from None

TOY_MODELS = [m for m, entry in config["models"].items() if "toy" in entry]
NAME = "[A-Za-z0-9][A-Za-z0-9_.-]*"


wildcard_constraints:
    model=NAME,
    benchmark=NAME,


def one_of(names):
    """A wildcard pattern matching exactly these names (or nothing)."""
    return "|".join(map(re.escape, names)) or "(?!x)x"


def model_source(name):
    """Where a model is loaded from: the workflow's own output, a local path or a hub id."""
    entry = config["models"][name]
    if "toy" in entry:
        return f"results/models/{name}"
    return entry.get("path") or entry["hub"]


def model_inputs(wildcards):
    """A model's files as job inputs, so a changed model reruns what depends on it."""
    entry = config["models"][wildcards.model]
    return [model_source(wildcards.model)] if "hub" not in entry else []


def benchmark_data_spec(name):
    """The keys that decide a benchmark's problems (not how it is sampled or prompted)."""
    entry = config["benchmarks"][name]
    return {k: v for k, v in entry.items() if k not in ("sampling", "prompt_template")}


def rule_threads(rule):
    return resources_for(config, rule, BUILTIN_RESOURCES)["cpus"]


def rule_resources(rule):
    """Config resources in the names Snakemake and its SLURM executor read."""
    r = resources_for(config, rule, BUILTIN_RESOURCES)
    out = {"mem_mb": r["mem_mb"], "runtime": r["runtime"], "gpu": r["gpus"]}
    for key, name in (("gpu_model", "gpu_model"), ("nodes", "nodes"), ("partition", "slurm_partition"),
                      ("account", "slurm_account"), ("slurm_extra", "slurm_extra")):
        if r.get(key) is not None:
            out[name] = r[key]
    return out


def as_json(obj):
    return json.dumps(obj, sort_keys=True)
