"""Disk a training run takes under ``results/runs/``: its checkpoint's parts, the most it
holds while it runs (the checkpoints it keeps, one more while the next is written, the
exported model) and what stays after it (the model; the last checkpoint only if kept).
The dry run prints each job's and the study's figures, so that a scratch quota is checked
before, not after, a day of GPUs.
"""

from __future__ import annotations

GB = 1e9


def checkpoint_bytes(params: int, settings: dict, zero_stage: int) -> dict:
    """One checkpoint (``opd.train.checkpoint``): the weights as trained (fp32, or bf16 under
    DeepSpeed's bf16), AdamW's two moments in ``state.pt``; with ZeRO, DeepSpeed's own files
    instead: a copy of the module and, over all ranks, the fp32 master weights and moments."""
    w = 2 if settings.get("precision") == "bf16" and settings.get("deepspeed") else 4
    parts = {"weights": w * params}
    if zero_stage >= 1:
        parts.update({"DeepSpeed module": w * params, "optimizer shards": 12 * params})
    else:
        parts["optimizer"] = 2 * w * params
    return parts


def run_disk(params: int, settings: dict, zero_stage: int) -> dict:
    """The checkpoint's parts, the run's peak while it runs, and what stays after it."""
    parts = checkpoint_bytes(params, settings, zero_stage)
    ckpt = sum(parts.values())
    model = parts["weights"]
    keep = settings.get("keep_checkpoints", 1)
    return {"checkpoint": parts, "peak": (keep + 1) * ckpt + model,
            "after": model + (ckpt if settings.get("keep_final_checkpoint") else 0)}


def line(job: str, disk: dict) -> str:
    parts = ", ".join(f"{k} {v / GB:.1f}" for k, v in disk["checkpoint"].items())
    return (f"{job}: checkpoint {sum(disk['checkpoint'].values()) / GB:.1f} GB ({parts}); "
            f"up to {disk['peak'] / GB:.1f} GB while it runs, {disk['after'] / GB:.1f} GB after")


def study_line(disks: list[dict]) -> str:
    """The study's training runs: what stays after all of them, and the most they could
    hold if every one were running at once."""
    after = sum(d["after"] for d in disks)
    peak = sum(d["peak"] for d in disks)
    return (f"{len(disks)} training runs: {after / GB:.1f} GB after them (models and kept checkpoints); "
            f"at most {peak / GB:.1f} GB were all of them running at once")
