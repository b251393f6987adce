"""The canary: every distinct GPU job shape of a study for a few steps at the study's real
lengths, and one table of what it measured beside what the memory plan predicted, with the
GPU-hours the whole study would take at the measured speed.

A shape is what decides a job's memory and speed: the models' sizes (two models of the
same architecture are one shape), the rule's GPUs and nodes, and the settings that change
lengths, batching, precision and placement; learning rates, seeds and schedules do not.
Each shape runs once, as the first job of the study that has it. Plain Python: the DAG
calls it when it is built.
"""

from __future__ import annotations

import json
import statistics

# settings that change neither memory nor speed
COST_FREE = frozenset({"steps", "epochs", "lr", "warmup_steps", "warmup_ratio", "weight_decay", "grad_clip", "seed",
                       "eval_every", "checkpoint_every", "collective_timeout_min"})


def cost_settings(train: dict) -> dict:
    return {k: v for k, v in sorted(train.items()) if k not in COST_FREE}


def shape_key(*parts) -> str:
    return json.dumps(parts, sort_keys=True, default=str)


def group_shapes(jobs: dict[str, tuple]) -> dict[str, list[str]]:
    """{representative: [every job of its shape]}: ``jobs`` maps a job's name to its shape key,
    in the study's order; the representative is the first job of each shape."""
    groups: dict[str, list[str]] = {}
    firsts: dict[str, str] = {}
    for name, key in jobs.items():
        first = firsts.setdefault(key, name)
        groups.setdefault(first, []).append(name)
    return groups


def canary_train(train: dict, steps: int, kind: str) -> dict:
    """A training job's settings for the canary: ``steps`` steps, validated (OPD) and
    checkpointed at the last one, so that both are timed."""
    if kind == "opd":
        return {**train, "steps": steps, "eval_every": steps, "checkpoint_every": steps}
    return {**train, "epochs": 1, "checkpoint_every": steps}  # its data: ``steps`` batches


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def training_figures(log: list[dict], *, full_steps: int, full_validations: int, val_scale: float,
                     gpus: int) -> dict:
    """A canary training log's figures: per phase the device's used memory (the largest over
    the steps), the medians of the steps after the first (its start-up costs are its own),
    and the GPU-hours of the whole run at that speed: steps, validations (scaled from the
    canary's share of the benchmarks to the whole) and the start-up."""
    steps = [r for r in log if r.get("step", 0) > 0]
    timed = steps[1:] or steps
    memory: dict[str, float] = {}
    for r in log:
        for phase, gib in (r.get("memory_gib") or {}).items():
            memory[phase] = max(memory.get(phase, 0.0), gib)
    seconds = _median([r["seconds"] if "seconds" in r else r["time_rollout"] + r["time_wait"] + r["time_update"]
                       + r["time_teacher"] + r["time_grading"] for r in timed])
    validations = [r["time_validation"] for r in log if "time_validation" in r]
    startup = next((r["time_startup"] for r in log if "time_startup" in r), 0.0)
    val_s = _median(validations)
    total_s = (full_steps * (seconds or 0) + full_validations * (val_s or 0) * val_scale + startup)
    return {
        "memory_gib": memory,
        "memory_source": next((r["memory_source"] for r in log if "memory_source" in r), None),
        "seconds_per_step": seconds,
        "rollout_tokens_per_s": _median([r["rollout_tokens_per_s"] for r in timed if "rollout_tokens_per_s" in r]),
        "update_tokens_per_s": _median([r["update_tokens_per_s"] for r in timed if "update_tokens_per_s" in r]
                                       or [r["tokens"] / r["seconds"] for r in timed if "tokens" in r]),
        "time_wake": _median([r["time_wake"] for r in timed if "time_wake" in r]),
        "time_weight_sync": _median([r["time_weight_sync"] for r in timed if "time_weight_sync" in r]),
        "time_sleep": _median([r["time_sleep"] for r in timed if "time_sleep" in r]),
        "time_validation": val_s,
        "time_startup": startup,
        "gpu_hours": total_s * gpus / 3600,
    }


def sampling_figures(metrics: dict, *, full_samples: int, gpus: int) -> dict:
    """A canary evaluation's figures, and the GPU-hours of all the study's samples of its shape."""
    rate = metrics.get("samples_per_second") or 0
    tokens = metrics["mean_response_tokens"] * metrics["problems"] * metrics["samples_per_problem"]
    return {
        "memory_gib": {"after_sampling": metrics["memory_gib"]} if metrics.get("memory_gib") is not None else {},
        "memory_source": metrics.get("memory_source"),
        "samples_per_s": rate,
        "tokens_per_s": tokens / metrics["seconds"] if metrics.get("seconds") else None,
        "gpu_hours": full_samples / rate * gpus / 3600 if rate else None,
    }


def _fmt(value, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def _speed(r: dict) -> str:
    if "samples_per_s" in r:
        return f"{_fmt(r['samples_per_s'], '.3g')} samples/s, {_fmt(r.get('tokens_per_s'), '.0f')} tokens/s"
    rollout = f"rollout {_fmt(r['rollout_tokens_per_s'], '.0f')}, " if r.get("rollout_tokens_per_s") else ""
    return f"{rollout}update {_fmt(r.get('update_tokens_per_s'), '.0f')} tokens/s"


def table(rows: list[dict]) -> str:
    """Markdown: one row per canary job; device memory per phase (measured / planned, GiB)."""
    lines = ["| job | shape of | GPUs | memory per phase, GiB: measured / planned | s a step | speed | "
             "wake (weight sync) / sleep s | validation s | GPU-hours, whole study at this speed |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        planned = r.get("plan", {}).get("phases", {})
        phases = sorted(set(r["memory_gib"]) | {PHASE_OF.get(p, p) for p in planned}, key=_phase_order)
        memory = "; ".join(
            f"{p} {_fmt(r['memory_gib'].get(p))} / {_fmt(_planned(planned, p))}" for p in phases)
        note = " (host RSS)" if r.get("memory_source") == "host_rss" else ""
        lines.append(
            f"| {r['job']} | {', '.join(r['members'])} | {r['gpus']} | {memory}{note} "
            f"| {_fmt(r.get('seconds_per_step'), '.3g')} | {_speed(r)} "
            f"| {_fmt(r.get('time_wake'), '.2f')} ({_fmt(r.get('time_weight_sync'), '.2f')}) / "
            f"{_fmt(r.get('time_sleep'), '.2f')} "
            f"| {_fmt(r.get('time_validation'), '.3g')} | {_fmt(r.get('gpu_hours'), '.2f')} |")
    return "\n".join(lines) + "\n"


# the step log's phase boundaries and the plan's phases they are set beside
PHASE_OF = {"start-up": "after_startup", "sampling": "after_sampling", "update": "after_update",
            "optimizer step": "after_update"}
ORDER = ("after_startup", "before_wake", "after_wake", "after_sampling", "after_sleep", "after_update")


def _phase_order(phase: str) -> int:
    return ORDER.index(phase) if phase in ORDER else len(ORDER)


def _planned(planned: dict, boundary: str) -> float | None:
    """The plan's figure for a boundary: the largest plan phase that ends there."""
    values = [gib for phase, gib in planned.items() if PHASE_OF.get(phase, phase) == boundary]
    return max(values) if values else None
