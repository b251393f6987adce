"""Where a rule's job runs and how its processes start: the config's ``resources`` in the
names Snakemake's SLURM executor reads, and the command prefix that starts one process
per GPU (``python``, ``torchrun`` on one node, ``srun`` + ``torchrun`` across nodes).

A cluster admin edits ``resources`` in the config; rules never name partitions or GPUs.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

RDZV_PORT = 29500
DEEPSPEED_CONFIGS = Path(__file__).resolve().parents[2] / "config" / "deepspeed"


def deepspeed_path(name: str) -> Path:
    """The DeepSpeed config a training job starts with: ``zero1``/``zero2`` name the built-in
    ones (config/deepspeed/<name>.json), a path (a slash, or .json) the user's own file."""
    return DEEPSPEED_CONFIGS / f"{name}.json" if "/" not in name and not name.endswith(".json") else Path(name)


def builtin_deepspeed_configs() -> str:
    """The built-in DeepSpeed config names, for error messages."""
    return ", ".join(sorted(p.stem for p in DEEPSPEED_CONFIGS.glob("*.json")))


def slurm_extra_error(text: str) -> str | None:
    """Why ``slurm_extra`` is not a list of sbatch options (``--flag``, ``--flag=value``,
    ``--flag value``, ``-x value``), or None. It reaches the sbatch command line through a
    shell, so shell text (``;``, ``|`` or ``&`` outside quotes, ``$``, a backtick, a quote
    left open) and ``--wrap`` are refused."""
    if re.search(r"[$`\n]", text):
        return "not sbatch options: shell text ($, a backtick or a newline)"
    try:
        lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
    except ValueError as e:
        return f"not sbatch options ({e})"
    for i, token in enumerate(tokens):
        if re.fullmatch(r"[;&|<>()]+", token):
            return f"not sbatch options: the shell operator {token!r}"
        if token.startswith("-"):
            if token.split("=")[0] == "--wrap":
                return "--wrap is not an option for a rule's job"
            continue
        if i == 0 or not tokens[i - 1].startswith("-") or "=" in tokens[i - 1]:
            return f"not sbatch options: {token!r} is neither an option nor an option's value"
    return None


def slurm_resources(r: dict, training: bool) -> dict:
    """Snakemake resources for one rule from its merged config resources ``r``.

    One node: ``gpu`` (+ ``gpu_model``) becomes ``--gpus``, with ``--nodes=1`` so that SLURM
    cannot spread the GPUs over nodes where one ``torchrun`` would not reach them. Several nodes: GPUs are
    requested per node with ``--gres`` and the job runs one task per node in its batch
    step (``mpi``), where the launcher's own ``srun`` starts ``torchrun`` on every node;
    ``gpu`` together with ``tasks`` would give ``--ntasks-per-gpu`` instead (and ``gpu``
    alone does, from plugin 2.6: ``tasks_per_gpu=0`` keeps one task). Training
    jobs ask SLURM for USR2 ``checkpoint_signal_s`` seconds before their time limit: they
    checkpoint on it and their retry resumes.
    """
    out = {"mem_mb": r["mem_mb"], "runtime": r["runtime"], "cpus_per_task": r["cpus"]}
    nodes, gpus = r.get("nodes") or 1, r["gpus"]
    extra = [r["slurm_extra"]] if r.get("slurm_extra") else []
    if nodes == 1:
        out["gpu"] = gpus
        if gpus:
            out["nodes"] = 1
            out["tasks_per_gpu"] = 0  # one task (torchrun starts a process per GPU), not one per GPU
        if gpus and r.get("gpu_model"):
            out["gpu_model"] = r["gpu_model"]
    else:
        if not training:
            raise ValueError("nodes > 1 is only supported for training rules (opd_train, sft)")
        out.update(nodes=nodes, tasks=nodes, tasks_per_gpu=0, mpi="srun")
        if gpus:
            out["gres"] = f"gpu:{r['gpu_model']}:{gpus}" if r.get("gpu_model") else f"gpu:{gpus}"
        extra.append("--ntasks-per-node=1")
    if training and r.get("checkpoint_signal_s"):
        extra.append(f"--signal=USR2@{r['checkpoint_signal_s']}")
    if r.get("partition"):
        out["slurm_partition"] = r["partition"]
    if r.get("account"):
        out["slurm_account"] = r["account"]
    if extra:
        out["slurm_extra"] = " ".join(extra)
    return out


def launch_prefix(r: dict) -> str:
    """The command that starts a training script: one process per GPU.

    ``python`` for one GPU or the CPU; ``torchrun --standalone`` for several GPUs on one
    node; for several nodes, ``srun`` starts one ``torchrun`` per node, all meeting at a
    rendezvous on the job's first node (``$SLURM_JOB_NODELIST``, keyed by the job id).
    Slurm 22.05's nested ``srun`` needs ``--cpus-per-task`` spelled out.

    A preemption's SIGTERM reaches every process of the job. Only the training processes
    act on it (checkpoint at the step boundary, then requeue: ``opd.train.checkpoint``);
    the job's shell ignores it, since its death would end the job step and kill them, and
    so does torchrun's agent, whose own handler would kill them 30 s later, mid-step.
    """
    nodes, gpus, cpus = r.get("nodes") or 1, r["gpus"], r["cpus"]
    if nodes == 1:
        launcher = "python" if gpus <= 1 else (f"torchrun --standalone --nnodes=1 --nproc-per-node={gpus} "
                                              f"{AGENT_SIGNALS}")
    else:
        launcher = srun_torchrun(nodes, gpus, cpus)
    return f"trap '' TERM; {launcher}"


# torchrun's agent forwards these to its workers (and kills them after its shutdown
# timeout); SIGTERM is left out, so the agent outlives the workers' checkpoint
AGENT_SIGNALS = "--signals-to-handle=SIGINT,SIGHUP,SIGQUIT"


def srun_torchrun(nodes: int, gpus: int, cpus: int) -> str:
    """One ``torchrun`` per node started by ``srun`` from the job's batch step."""
    head = '$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)'
    # SLURM's USR2 warning and a preemption's SIGTERM reach every process of every step:
    # torchrun's agents ignore them (bash's `trap '' ...` is inherited through exec); its
    # workers checkpoint on them
    return (
        f"srun --nodes={nodes} --ntasks-per-node=1 --cpus-per-task={cpus} --kill-on-bad-exit=1 "
        f"bash -c 'trap \"\" USR2 TERM; exec \"$@\"' torchrun "
        f"torchrun --nnodes={nodes} --nproc-per-node={max(1, gpus)} --rdzv-backend=c10d "
        f"--rdzv-endpoint={head}:{RDZV_PORT} --rdzv-id=$SLURM_JOB_ID {AGENT_SIGNALS}"
    )
