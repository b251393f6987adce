# The canary's jobs (workflow/rules/canary.smk): the study's GPU jobs grouped by shape
# (opd.canary), the first of each shape its representative, and the manifest the canary's
# table is made from (each job's plan, and what every job of its shape would run).
import dataclasses

from opd.canary import canary_train, cost_settings, group_shapes, shape_key  # noqa: E402

CANARY = {"steps": config["canary"]["steps"], "val_per_rank": config["canary"]["val_problems_per_rank"],
          "problems": config["canary"]["problems"]}


def base_model(name):
    """The base model a derived (SFT or OPD) model descends from."""
    while name not in config["models"]:
        name = (config["experiments"].get(name) or config["sft"][name])["student"]
    return name


def shape_of(name):
    """A model's sizes and dtype (models of one architecture are one shape), or its name."""
    base = base_model(name)
    shape = model_shape(base)
    sizes = {k: v for k, v in dataclasses.asdict(shape).items() if k != "max_positions"} if shape else base
    return [sizes, config["models"][base]["dtype"]]


def rule_shape(rule):
    r = resources_for(config, rule, BUILTIN_RESOURCES)
    return [r["gpus"], r.get("nodes") or 1, r.get("gpu_mem_gib")]


def sampling_key(sampling):
    return {k: v for k, v in sampling.items() if k != "seed"}


CANARY_OPD = group_shapes({
    name: shape_key("opd", shape_of(e["student"]), shape_of(e["teacher"]), cost_settings(e["train"]),
                    rule_shape("opd_train"))
    for name, e in config["experiments"].items()})
CANARY_SFT = group_shapes({
    name: shape_key("sft", shape_of(s["student"]), cost_settings(s["train"]), rule_shape("sft"))
    for name, s in config["sft"].items()})
CANARY_ROLLOUTS = group_shapes({
    name: shape_key("rollouts", shape_of(s["teacher"]), sampling_key(s["sampling"]), rule_shape("teacher_rollouts"))
    for name, s in config["sft"].items()})
CANARY_EVAL = group_shapes({
    (m, b): shape_key("eval", shape_of(m), sampling_key(sampling_for(config, b)), rule_shape("eval_model"))
    for m, b in ALL_EVALS})  # {(model, benchmark): [(model, benchmark), ...]}


def canary_outputs():
    return ([f"results/canary/opd/{n}/train_log.jsonl" for n in CANARY_OPD]
            + [f"results/canary/sft/{n}/train_log.jsonl" for n in CANARY_SFT]
            + [f"results/canary/rollouts/{n}/report.json" for n in CANARY_ROLLOUTS]
            + [f"results/canary/eval/{m}/{b}.json" for m, b in CANARY_EVAL])


def ranks(rule):
    world, _ = gpu_setup(rule)
    return world


def plan_figures(found):
    """A plan's phases in GiB, for the table."""
    if found is None:
        return {}
    plan, _ = found
    return {"peak_phase": plan.peak_phase, "peak": plan.peak / GiB,
            "phases": {phase: sum(parts.values()) / GiB for phase, parts in plan.phases.items()} or
            {plan.peak_phase: plan.peak / GiB}}


def validations(train):
    steps, every = train["steps"], train["eval_every"]
    return 1 + steps // every + (1 if steps % every else 0)


def canary_manifest():
    jobs = {}
    for rep, members in CANARY_OPD.items():
        e = config["experiments"][rep]
        val = {n: [problem_file(b) for b in experiment_benchmarks(n)] for n in members}
        jobs[f"opd {rep}"] = {
            "kind": "opd", "output": f"results/canary/opd/{rep}/train_log.jsonl", "gpus": ranks("opd_train"),
            "plan": plan_figures(training_job_plan("opd_train", "experiments", rep, e)),
            "canary_val_problems": CANARY["val_per_rank"] * ranks("opd_train"),
            "members": {n: {"steps": config["experiments"][n]["train"]["steps"],
                            "validations": validations(config["experiments"][n]["train"]),
                            "benchmarks": val[n]} for n in members}}
    for rep, members in CANARY_SFT.items():
        jobs[f"sft {rep}"] = {
            "kind": "sft", "output": f"results/canary/sft/{rep}/train_log.jsonl", "gpus": ranks("sft"),
            "plan": plan_figures(training_job_plan("sft", "sft", rep, config["sft"][rep])),
            "members": {n: {"epochs": config["sft"][n]["train"]["epochs"],
                            "batch_size": config["sft"][n]["train"]["batch_size"],
                            "prompts": problem_file(config["sft"][n]["prompts"])} for n in members}}
    for rep, members in CANARY_ROLLOUTS.items():
        s = config["sft"][rep]
        jobs[f"teacher_rollouts {rep}"] = {
            "kind": "sampling", "output": f"results/canary/rollouts/{rep}/report.json", "gpus": ranks("teacher_rollouts"),
            "plan": plan_figures(sampling_job_plan("teacher_rollouts", rep, s["teacher"],
                                                   s["sampling"]["max_new_tokens"])),
            "members": {n: {"problems": problem_file(config["sft"][n]["prompts"]), "n": 1} for n in members}}
    for (m, b), members in CANARY_EVAL.items():
        jobs[f"eval_model {m} {b}"] = {
            "kind": "sampling", "output": f"results/canary/eval/{m}/{b}.json", "gpus": ranks("eval_model"),
            "plan": plan_figures(sampling_job_plan("eval_model", f"{m} {b}", m, sampling_for(config, b)["max_new_tokens"])),
            "members": {f"{jm} {jb}": {"problems": problem_file(jb), "n": sampling_for(config, jb)["n"]}
                        for jm, jb in members}}
    return as_json(jobs)
