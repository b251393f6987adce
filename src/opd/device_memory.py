"""Memory in use at each phase boundary of a training step, as the device sees it.

A colocated vLLM engine maps its weights and KV cache outside torch's caching allocator,
so torch's ``max_memory_allocated``/``reserved`` say nothing about an out-of-memory error
in such a process: the device's own count (``cudaMemGetInfo``: total - free) does. On the
CPU the process's resident set stands in for it, so the same fields are logged and the
same code runs in the tests.
"""

from __future__ import annotations

import os

GiB = 2**30


def memory_source(device: str) -> str:
    return "device_used" if str(device).startswith("cuda") else "host_rss"


def used_gib(device: str) -> float:
    """What is in use now: the whole device's used memory on a GPU (every process on it), the
    resident set of this process on the CPU."""
    if str(device).startswith("cuda"):
        import torch

        free, total = torch.cuda.mem_get_info(torch.device(device))
        return (total - free) / GiB
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / GiB


class PhaseMemory:
    """``mark(phase)`` at each boundary; ``take()`` returns the step's marks and starts over."""

    def __init__(self, device: str):
        self.device = device
        self.source = memory_source(device)
        self.marks: dict[str, float] = {}

    def mark(self, phase: str) -> None:
        if str(self.device).startswith("cuda"):
            import torch

            torch.cuda.synchronize(torch.device(self.device))
        self.marks[phase] = round(used_gib(self.device), 3)

    def take(self) -> dict:
        marks, self.marks = self.marks, {}
        return {"memory_gib": marks, "memory_source": self.source}
