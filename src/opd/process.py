"""Per-process settings of a job's processes: CPU threads and deterministic kernels.

A job's ``cpus`` are shared by all the ranks torchrun starts on its node: 8 ranks of a
64-CPU job each take 8 threads, not 64 (512 threads on 64 CPUs thrash).

Deterministic algorithms are asked for on the CPU, where they cost little and make the
toy world's runs repeat bit for bit. On CUDA they are not: with them torch fills every
``torch.empty`` (vLLM's captured graphs' buffers included) and swaps in slower kernels,
and a GPU run with vLLM sampling does not repeat bit for bit anyway.
"""

from __future__ import annotations

import os

import torch


def threads_per_rank(job_threads: int) -> int:
    """This rank's share of the job's CPUs (``LOCAL_WORLD_SIZE`` ranks on this node)."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, job_threads // max(1, local))


def set_threads(job_threads: int) -> None:
    torch.set_num_threads(threads_per_rank(job_threads))


def set_determinism(device: str) -> None:
    """Deterministic algorithms on the CPU only (see above)."""
    torch.use_deterministic_algorithms(not str(device).startswith("cuda"), warn_only=True)
