# The memory plan of every GPU job in the DAG (opd.memory_plan): a dry run prints it, and a
# job whose peak exceeds its rule's declared `gpu_mem_gib` is refused while the DAG is built,
# before anything is submitted, naming the setting to change.
import yaml

from opd.disk_plan import line as disk_line, run_disk, study_line  # noqa: E402
from opd.launch import deepspeed_path  # noqa: E402
from opd.memory_plan import (  # noqa: E402
    GiB,
    PROMPT_TOKENS,
    entry_shape,
    gib_text,
    sampling_plan,
    training_plan,
    usable_bytes,
)

PUBLISHED_CONFIGS = yaml.safe_load((Path(workflow.basedir) / "config/hub_configs.yaml").read_text())
PRINTED_PLANS = set()


def model_shape(name):
    """A model's sizes; a hub model's from its locked commit's config.json once downloaded."""
    entry = base_entry(name)
    if "hub" in entry and (Path(hub_snapshot("model", entry)) / "config.json").is_file():
        entry = {"path": hub_snapshot("model", entry)}
    return entry_shape(entry, PUBLISHED_CONFIGS)


def gpu_setup(rule_name):
    """(ranks, usable bytes of one GPU or None) of a rule's jobs."""
    r = resources_for(config, rule_name, BUILTIN_RESOURCES)
    gib = r.get("gpu_mem_gib")
    return max(1, r["gpus"]) * (r.get("nodes") or 1), usable_bytes(gib * GiB) if gib else None


def zero_setup(train):
    """(ZeRO stage, reduce bucket elements) of a training job's DeepSpeed config."""
    if not train.get("deepspeed"):
        return 0, 0
    zero = json.loads(deepspeed_path(train["deepspeed"]).read_text()).get("zero_optimization", {})
    return zero.get("stage", 0), int(zero.get("reduce_bucket_size", 5e8)) if zero.get("stage", 0) >= 2 else 0


def training_job_plan(rule_name, key, name, entry):
    student = model_shape(entry["student"])
    teacher = model_shape(entry["teacher"]) if rule_name == "opd_train" else None
    if student is None or (rule_name == "opd_train" and teacher is None):
        return None
    world, gpu = gpu_setup(rule_name)
    stage, bucket = zero_setup(entry["train"])
    bucket = min(bucket, student.parameters)  # as the job caps it (opd.train.updater.deepspeed_config)
    plan = training_plan(f"{rule_name} {name}", student, entry["train"], world=world, zero_stage=stage,
                         bucket_elems=bucket, teacher=teacher,
                         teacher_dtype=base_entry(entry["teacher"])["dtype"] if teacher else "bfloat16",
                         student_dtype=base_entry(entry["student"])["dtype"], gpu_bytes=gpu)
    train = f"{key}.{name}.train"
    if plan.peak_phase == "start-up":
        hint = (f"{train}.teacher_sharding" if teacher is not None and entry["train"].get("teacher_sharding") != "zero3"
                else f"{train}.deepspeed")
    elif plan.peak_phase == "sampling" or plan.refusal:
        hint = (f"{train}.vllm_gpu_memory_utilization" if entry["train"].get("rollout_backend") == "vllm"
                else f"{train}.rollout_batch_size")
    elif not entry["train"].get("gradient_checkpointing"):
        hint = f"{train}.gradient_checkpointing"
    else:
        hint = f"{train}.max_tokens_per_micro_batch (or micro_batch_size)"
    return plan, hint


def one_engine_plan(job, model, max_new_tokens, gpu, tensor_parallel):
    return sampling_plan(job, model_shape(model), base_entry(model)["dtype"], backend=config["eval"]["backend"],
                         batch=config["eval"]["batch_size"], max_len=PROMPT_TOKENS + max_new_tokens,
                         tensor_parallel=tensor_parallel,
                         gpu_memory_utilization=config["eval"]["gpu_memory_utilization"], gpu_bytes=gpu)


def rollout_parallelism(rule_name, model, max_new_tokens):
    """(workers, tensor parallel) of the teacher rollouts over the rule's GPUs: an engine
    per GPU where the model fits one (as the paper's rollout script runs; tensor parallel
    on a small model is bound by its all-reduces), else one engine over all of them."""
    world, gpu = gpu_setup(rule_name)
    if world <= 1:
        return 1, 1
    if config["eval"]["backend"] != "vllm":
        return world, 1  # the HF backend: one model per GPU
    if model_shape(model) is None:
        return 1, world
    return (world, 1) if one_engine_plan(rule_name, model, max_new_tokens, gpu, 1).fits else (1, world)


def sampling_job_plan(rule_name, job, model, max_new_tokens):
    shape = model_shape(model)
    if shape is None:
        return None
    world, gpu = gpu_setup(rule_name)
    vllm = config["eval"]["backend"] == "vllm"
    tensor_parallel = world if vllm else 1
    if rule_name == "teacher_rollouts":
        tensor_parallel = rollout_parallelism(rule_name, model, max_new_tokens)[1]
    plan = one_engine_plan(job, model, max_new_tokens, gpu, tensor_parallel)
    hint = "eval.gpu_memory_utilization (or this rule's gpus)" if vllm else "eval.batch_size"
    return plan, hint


def job_plan(rule_name, wc):
    if rule_name == "opd_train":
        return training_job_plan(rule_name, "experiments", wc.experiment, config["experiments"][wc.experiment])
    if rule_name == "sft":
        return training_job_plan(rule_name, "sft", wc.sft, config["sft"][wc.sft])
    if rule_name == "teacher_rollouts":
        entry = config["sft"][wc.sft]
        return sampling_job_plan(rule_name, f"{rule_name} {wc.sft}", entry["teacher"],
                                 entry["sampling"]["max_new_tokens"])
    # named by model alone: a model's benchmarks sampled alike share one printed plan
    return sampling_job_plan(rule_name, f"{rule_name} {wc.model}", wc.model,
                             sampling_for(config, wc.benchmark)["max_new_tokens"])


def gpu_size_hint(rule_name, plan):
    """The declared GPU size, where it is below what no setting of the job can lower."""
    declared = resources_for(config, rule_name, BUILTIN_RESOURCES)["gpu_mem_gib"]
    own = config["resources"]["rules"].get(rule_name, {}).get("gpu_mem_gib") is not None
    key = f"resources.rules.{rule_name}.gpu_mem_gib" if own else "resources.default.gpu_mem_gib"
    return (f"{key} (declared {declared:g} GiB; the job needs {gib_text(plan.floor)} GiB per GPU at its smallest "
            f"phase, whatever its batch sizes) or the rule's gpus")


def memory_checked(rule_name):
    """An input function (no files) that plans the job when the DAG is built: printed once
    by a dry run; a job that does not fit its GPU is refused with the setting to change."""

    def check(wc):
        if resources_for(config, rule_name, BUILTIN_RESOURCES)["gpus"] == 0:
            return []
        found = job_plan(rule_name, wc)
        if found is None:
            return []
        plan, hint = found
        if not plan.fits() and plan.gpu_bytes and plan.floor > plan.gpu_bytes:
            hint = gpu_size_hint(rule_name, plan)
        if not plan.fits():
            raise WorkflowError(f"memory plan: {plan.line()}: does not fit; change {hint}")
        if workflow.dryrun and plan.line() not in PRINTED_PLANS:
            PRINTED_PLANS.add(plan.line())
            print(f"memory plan: {plan.line()}", file=sys.stderr)
        return []

    return check


def training_disk(key, name):
    """A training run's disk (opd.disk_plan), or None where its student's shape is unknown."""
    entry = config[key][name]
    shape = model_shape(entry["student"])
    if shape is None:
        return None
    return run_disk(shape.parameters, entry["train"], zero_setup(entry["train"])[0])


TRAINING_DISKS = {}  # (section, run) -> its disk, for every training run of the study


def disk_planned(rule_name):
    """An input function (no files): a dry run prints each training job's checkpoint size
    and disk, and once, the study's."""

    def show(wc):
        if not workflow.dryrun:
            return []
        if not TRAINING_DISKS:
            TRAINING_DISKS.update({(k, n): training_disk(k, n) for k in ("experiments", "sft") for n in config[k]})
            known = [d for d in TRAINING_DISKS.values() if d is not None]
            if known:
                print(f"disk plan: {study_line(known)}", file=sys.stderr)
        key, name = ("experiments", wc.experiment) if rule_name == "opd_train" else ("sft", wc.sft)
        if TRAINING_DISKS.get((key, name)) is not None:
            print(f"disk plan: {disk_line(f'{rule_name} {name}', TRAINING_DISKS[(key, name)])}", file=sys.stderr)
        return []

    return show
