import json
import os
import re
import shlex
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from opd.chat import DEFAULT as DEFAULT_CHAT, ChatFormat  # noqa: E402
from opd.config import (  # noqa: E402
    MULTI_NODE_RULES,
    ConfigError,
    base_eval_pairs,
    chain_lengths,
    check_config_files,
    load_schema,
    resources_for,
    point_experiment,
    sampling_for,
    seed_runs,
    sweep_points,
    template_for,
    toy_tokenizer,
    validate_config,
)
from opd.launch import launch_prefix, slurm_resources  # noqa: E402
from opd.model_dirs import local_model_errors  # noqa: E402
from opd.partitions import check_partitions, parse_sinfo, read_sinfo  # noqa: E402
from opd.memory_plan import PROMPT_TOKENS  # noqa: E402

SCRIPTS = Path(workflow.basedir) / "scripts"

if "SLURM_JOB_ID" in os.environ:
    # SLURM's warning signal (--signal=USR2@s, scancel --signal=USR2) reaches every process
    # of the job step: Snakemake's job process and its shell must outlive it, so that the
    # training script (which installs its own handler) checkpoints and exits 75 for a retry.
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


def script_path(name):
    """A script as a job input: editing it reruns the jobs it made."""
    return str(SCRIPTS / name)

RULES_WITH_RESOURCES = (
    "build_toy_tokenizer",
    "build_toy_subword_tokenizer",
    "build_qwen_tokenizer",
    "prepare_benchmark",
    "prepare_prompts",
    "prepare_model",
    "eval_model",
    "opd_train",
    "teacher_rollouts",
    "sft",
    "probe_teachers",
    "teacher_continuation",
)
BUILTIN_RESOURCES = {"cpus": 1, "mem_mb": 4000, "runtime": 60, "gpus": 0, "nodes": 1, "checkpoint_signal_s": 300}

try:
    check_config_files(workflow.overwrite_configfiles or [Path(workflow.basedir) / "config/config.yaml"])
    validate_config(
        config, load_schema(Path(workflow.basedir) / "workflow/schemas/config.schema.yaml"), RULES_WITH_RESOURCES
    )
except ConfigError as e:
    raise WorkflowError(f"invalid config: {e}") from None
if MODEL_DIR_ERRORS := local_model_errors(config):  # a path: model missing a file, before any job
    raise WorkflowError(f"invalid config: {'; '.join(MODEL_DIR_ERRORS)}")

BUILT_MODELS = [m for m, entry in config["models"].items() if "toy" in entry or "tiny" in entry]
SWEEPS = {name: sweep_points(name, sweep) for name, sweep in config["sweeps"].items()}  # {sweep: {point: overrides}}
EXPERIMENTS = list(config["experiments"])
SEED_RUNS = seed_runs(config)  # {experiment: {seed: run}}; the first seed's run is the experiment
OTHER_SEED_RUNS = {run for runs in SEED_RUNS.values() for run in list(runs.values())[1:]}
SFT_RUNS = list(config["sft"])
CHAIN_LENGTH = chain_lengths(config)  # the training jobs' priority


def one_of(names):
    """A wildcard pattern matching exactly these names (or nothing)."""
    return "|".join(map(re.escape, names)) or "(?!x)x"


# a target naming no model or benchmark of this study (results/eval/ghost/x.json) matches no
# rule, and Snakemake says which file it cannot make, instead of a KeyError in an input function
wildcard_constraints:
    model=one_of([*config["models"], *SFT_RUNS, *EXPERIMENTS]),
    benchmark=one_of(config["benchmarks"]),
    prompt_set=one_of(config["prompt_sets"]),


def model_source(name):
    """Where a model is loaded from: a workflow output, a local path, or a hub commit's
    snapshot directory."""
    if name in config["experiments"]:
        return f"results/opd/{name}/model"
    if name in config["sft"]:
        return f"results/sft/{name}/model"
    entry = config["models"][name]
    if "toy" in entry or "tiny" in entry:
        return f"results/models/{name}"
    if "hub" in entry:
        return hub_snapshot("model", entry)  # the locked commit, in the cache (hub.smk)
    return entry["path"]


TOY_TOKENIZERS = {"characters": "results/toy/tokenizer", "subword": "results/toy/tokenizer_subword"}


def tokenizer_dir(name):
    """The tokenizer a built model is made around."""
    entry = config["models"][name]
    if "toy" not in entry:
        return f"results/tokenizers/{entry['tiny']['tokenizer']}"
    return TOY_TOKENIZERS[toy_tokenizer(config, name)]


def local_files(path):
    """A local file, or every file under a local directory, as job inputs. Snakemake compares
    each input's time stamp, and a directory's changes only when entries come or go: weights
    overwritten in place would rerun nothing if the directory alone were the input."""
    root = Path(path)
    if not root.is_dir():
        return [path]
    return sorted(str(f) for f in root.rglob("*")
                  if f.is_file() and not any(part.startswith(".") for part in f.relative_to(root).parts))


def model_files(name):
    """A model as job inputs (a hub model's download record), so a changed model reruns what
    uses it."""
    entry = config["models"].get(name, {})
    if "hub" in entry:
        return [hub_record("model", entry)]
    if "path" in entry:
        return local_files(entry["path"])
    return [model_source(name)]


def model_inputs(wildcards):
    return model_files(wildcards.model)


def base_entry(name):
    """The config entry of the base model a derived (SFT or OPD) model descends from."""
    while name not in config["models"]:
        name = (config["experiments"].get(name) or config["sft"][name])["student"]
    return config["models"][name]


def chat_mode(name):
    """How a model, or the base model it was trained from, is prompted (``opd.chat``)."""
    return ChatFormat.of_entry(base_entry(name)).mode


def chat_flag(name, option="--chat"):
    """``option MODE`` where a model is not prompted at its chat template's default."""
    mode = chat_mode(name)
    return "" if mode == DEFAULT_CHAT.mode else f"{option} {mode}"


def model_flags(name):
    """The prompt format and remote-code flags of the model a job samples from or trains."""
    chat = chat_flag(name)
    return f"{chat} {trust_flag(name)}" if chat else trust_flag(name)


def teacher_flags(name):
    """A teacher's own prompt format and remote-code flags, beside its student's: it reads
    each prompt as its own settings render it and never inherits the student's trust."""
    return " ".join(f for f in (chat_flag(name, "--teacher-chat"), trust_flag(name, "--teacher-trust-remote-code"))
                    if f)


def trust_flag(name, option="--trust-remote-code"):
    """``option`` only if this model's own entry allows its remote code: a teacher never
    inherits its student's trust."""
    return option if base_entry(name)["trust_remote_code"] else ""


def local_data(entry):
    """A benchmark's or prompt set's local files as job inputs (a hub dataset's download
    record, and an embedding dedup's model's)."""
    files = local_files(entry["path"]) if "path" in entry else [hub_record("dataset", entry)] if "hub" in entry else []
    dedup = entry.get("dedup") or {}
    if dedup.get("method") == "embedding" and not Path(dedup["model"]).exists():
        files.append(hub_record("model", {"hub": dedup["model"]}))
    return files


def problem_file(name):
    """The JSONL of a benchmark or a prompt set."""
    if name in config["benchmarks"]:
        return f"results/data/benchmarks/{name}.jsonl"
    return f"results/data/prompts/{name}.jsonl"


# the prompt sets OPD or SFT trains on: each is checked against every benchmark of the study
TRAINING_SETS = {entry["prompts"] for kind in ("experiments", "sft") for entry in config[kind].values()}


def overlap_benchmarks(name):
    """The benchmarks whose problems a prompt set is checked for (opd.overlap): every one of
    the study for a set that is trained on, else those it excludes."""
    if name in TRAINING_SETS:
        return list(config["benchmarks"])
    return [b for b in config["prompt_sets"][name]["exclude"] if b in config["benchmarks"]]


def overlap_flags(name):
    """``--benchmark`` for each of them, and ``--template`` for each prompt template a
    benchmark's problems may be written in (the study's, not an experiment's: those are
    applied at training, and a problem inside any template is found by containment)."""
    templates = sorted({config["eval"]["prompt_template"],
                        *(b["prompt_template"] for b in config["benchmarks"].values() if b["prompt_template"])})
    return " ".join([*(f"--benchmark {shlex.quote(f'{b}={problem_file(b)}')}" for b in overlap_benchmarks(name)),
                     *(f"--template {shlex.quote(t)}" for t in templates)])


def experiment_benchmarks(name):
    return config["experiments"][name]["benchmarks"] or list(config["benchmarks"])


def experiment_template(name):
    return template_for(config, name, "experiments")


def probe_template(name):
    return template_for(config, name, "probes")


def problem_spec(entry):
    """The keys that decide a problem set's content (not how it is sampled or prompted); a
    hub dataset is read from its locked commit's snapshot."""
    spec = {k: v for k, v in entry.items() if k not in ("sampling", "prompt_template", "exclude", "dedup")}
    if "hub" in entry:
        spec["snapshot"] = hub_snapshot("dataset", entry)
    return spec


def dedup_spec(entry):
    """A prompt set's dedup settings; an embedding model from the hub read from its snapshot."""
    dedup = dict(entry["dedup"])
    if dedup.get("method") == "embedding" and not Path(dedup["model"]).exists():
        dedup["model"] = hub_snapshot("model", {"hub": dedup["model"]})
    return dedup


def rule_threads(rule):
    return resources_for(config, rule, BUILTIN_RESOURCES)["cpus"]


def rule_resources(rule):
    """Config resources in the names Snakemake and its SLURM executor read; the runtime is
    checked against the cluster's partitions as each job enters the DAG."""
    res = slurm_resources(resources_for(config, rule, BUILTIN_RESOURCES), training=rule in MULTI_NODE_RULES)
    runtime = res["runtime"]

    def checked_runtime(wildcards):
        check_partition_limits()
        return runtime

    return {**res, "runtime": checked_runtime}


_PARTITIONS = {}  # the partition check's errors, found once per run


def check_partition_limits():
    """Submitting through SLURM (``--profile slurm``): refuse the run, before its first job
    is submitted, if a rule of its DAG has a runtime above its partition's MaxTime or more
    GPUs per node than the partition's nodes have, naming the setting. A dry run where
    ``sinfo`` answers warns instead; jobs themselves and local runs skip it."""
    executor = workflow.executor_plugin.name if workflow.executor_plugin else None
    if executor not in ("slurm", "dryrun"):
        return
    if "errors" not in _PARTITIONS:  # the first job's resources: check every rule of the DAG
        sinfo = read_sinfo()
        rules = sorted({job.rule.name for job in workflow.dag.jobs} & set(RULES_WITH_RESOURCES))
        _PARTITIONS["errors"] = check_partitions(
            {r: resources_for(config, r, BUILTIN_RESOURCES) for r in rules}, *parse_sinfo(sinfo)) if sinfo else []
        if executor == "dryrun":
            for e in _PARTITIONS["errors"]:
                print(f"warning: on this cluster, {e}", file=sys.stderr)
    if _PARTITIONS["errors"] and executor == "slurm":
        errors = "\n  ".join(_PARTITIONS["errors"])
        raise WorkflowError(f"the cluster cannot run this config:\n  {errors}")


def rule_launcher(rule):
    """``python``, or ``torchrun``/``srun`` for a rule given several GPUs or nodes."""
    return launch_prefix(resources_for(config, rule, BUILTIN_RESOURCES))


def vllm_flags(rule, max_new_tokens, tensor_parallel=None):
    """A sampling rule's vLLM engine: tensor parallel over the rule's GPUs (unless told
    otherwise), its context the prompt allowance plus the response (the memory plan's), not
    the model's 128K positions."""
    if config["eval"]["backend"] != "vllm":
        return ""
    return (f"--tensor-parallel-size {tensor_parallel or max(1, rule_resources(rule)['gpu'])} "
            f"--gpu-memory-utilization {config['eval']['gpu_memory_utilization']} "
            f"--max-model-len {PROMPT_TOKENS + max_new_tokens}")


def rollout_flags(rule, sft):
    """The teacher rollouts' engines: ``--workers`` (one per GPU) and their vLLM settings."""
    entry = config["sft"][sft]
    workers, tensor_parallel = rollout_parallelism("teacher_rollouts", entry["teacher"],
                                                   entry["sampling"]["max_new_tokens"])
    return f"--workers {workers} {vllm_flags(rule, entry['sampling']['max_new_tokens'], tensor_parallel)}"


def as_json(obj):
    return json.dumps(obj, sort_keys=True)


BASE_EVAL = base_eval_pairs(config)
EXPERIMENT_EVALS = sorted(
    {
        (m, b)
        for name, e in config["experiments"].items()
        for b in experiment_benchmarks(name)
        for m in (name, e["student"], e["teacher"])
    }
)
ALL_EVALS = sorted(set(BASE_EVAL) | set(EXPERIMENT_EVALS))


def experiments_manifest():
    return as_json(
        {
            name: {
                "student": e["student"],
                "teacher": e["teacher"],
                "section": e["section"],
                "prompts": e["prompts"],
                "prompt_template": experiment_template(name),
                "benchmarks": experiment_benchmarks(name),
                "log": f"results/opd/{name}/train_log.jsonl",
            }
            for name, e in config["experiments"].items()
        }
    )


def probe_accuracy(probe):
    """{(model, benchmark): metrics path} of the base evaluation for a probe's models."""
    p = config["probes"][probe]
    models = {p["student"], *p["teachers"]}
    return {(m, b): f"results/eval/{m}/{b}.json" for m, b in BASE_EVAL if m in models}


def sweep_point_experiment(wc):
    return point_experiment(config, wc.sweep, f"{wc.sweep}.{wc.point}")


def point_runs(wc):
    """{seed: experiment} of a sweep point: one per seed, or the experiment alone."""
    name = sweep_point_experiment(wc)
    return SEED_RUNS.get(name) or {config["experiments"][name]["train"]["seed"]: name}


def point_evals(wc):
    name = sweep_point_experiment(wc)
    e = config["experiments"][name]
    return {(m, b): f"results/eval/{m}/{b}.json" for b in experiment_benchmarks(name)
            for m in (*point_runs(wc).values(), e["student"], e["teacher"])}


def figure_groups():
    """Experiments per paper section, and each sweep's points: one figure each."""
    groups = {}
    for name, e in config["experiments"].items():
        if name not in OTHER_SEED_RUNS and not any(name in points for points in SWEEPS.values()):
            groups.setdefault(f"section_{e['section'] or 'none'}", []).append(name)
    for sweep, points in SWEEPS.items():
        groups[f"sweep_{sweep}"] = sorted({point_experiment(config, sweep, p) for p in points})
    return groups


FIGURES = figure_groups()

# Tables per paper section (the experiments outside sweeps), named like the figures
SECTIONS = {group[len("section_"):]: names for group, names in FIGURES.items() if group.startswith("section_")}

# Sweep, probe and analysis results that results/summary.json carries
SUMMARY_ATTACHMENTS = {
    **{f"sweeps.{s}": f"results/sweeps/{s}/summary.json" for s in SWEEPS},
    **{f"probes.{p}": f"results/probes/{p}.json" for p in config["probes"]},
    **{f"continuations.{c}": f"results/analysis/continuation/{c}.json" for c in config["continuations"]},
    **({"analyses.rollout_auroc": "results/analysis/rollout_auroc.json"} if EXPERIMENTS else {}),
}
