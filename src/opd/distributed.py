"""Data parallelism for the training scripts, one process per GPU.

Processes come from ``torchrun`` (RANK, WORLD_SIZE, MASTER_ADDR... already set) or from
``srun`` with one task per GPU (submitit's ``TorchDistributedEnvironment`` derives the
same variables from SLURM's). Every rank holds the whole model and takes its share of a
step's examples; token counts and gradients are *summed* over ranks and the loss is
normalised by the global token count, so one update equals the single-process update on
the whole batch. Rank 0 alone writes logs and checkpoints.

Collectives on the default group carry the job's timeout (``collective_timeout_min``, an
hour by default), not NCCL's 10 minutes: a rank whose rollouts or share of a validation
run longer waits for the others there. The recipes make the first collective after every
phase whose length differs between ranks one of this module's (on the default group);
DeepSpeed's and vLLM's own groups keep torch's default and see only balanced work.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def device(self, requested: str) -> str:
        """This rank's own GPU when running on GPUs."""
        return f"cuda:{self.local_rank}" if requested.startswith("cuda") and self.world > 1 else requested

    def seed(self, base: int) -> int:
        """This rank's sampling seed for a draw whose rank-0 seed is ``base``."""
        return base + 7919 * self.rank

    @property
    def comm_device(self) -> str:
        """Where this rank's collective tensors live: its own GPU under NCCL, named by index
        (not "cuda", which follows whatever device was made current last)."""
        return f"cuda:{self.local_rank}" if dist.get_backend() == "nccl" else "cpu"

    def sum(self, values: list[float]) -> list[float]:
        if self.world == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.comm_device)
        dist.all_reduce(t)
        return t.tolist()

    def gather(self, items: list) -> list:
        """Every rank's list, concatenated in rank order (on every rank)."""
        if self.world == 1:
            return list(items)
        out = [None] * self.world
        dist.all_gather_object(out, items)
        return [x for part in out for x in part]

    def any(self, flag: bool) -> bool:
        return self.sum([float(flag)])[0] > 0

    def sync_grads(self, params) -> None:
        """Sum every gradient over ranks (one flat buffer, one all-reduce)."""
        if self.world == 1:
            return
        params = [p for p in params if p.requires_grad]
        for p in params:  # a rank whose share of the batch was empty still joins the sum
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        grads = [p.grad for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


DEFAULT_TIMEOUT_MIN = 60


def init(timeout_min: float = DEFAULT_TIMEOUT_MIN) -> Dist:
    """Join the process group when started as one of several processes; its collectives
    time out after ``timeout_min`` minutes."""
    env = os.environ
    if "RANK" not in env and int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
        from submitit.helpers import TorchDistributedEnvironment  # srun, one task per GPU

        os.environ.setdefault("SUBMITIT_EXECUTOR", "slurm")  # its SLURM environment, outside submitit's own jobs
        TorchDistributedEnvironment().export()
    world = int(env.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    local_rank = int(env.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo",
                                timeout=timedelta(minutes=timeout_min))
        global _OWN_GROUP
        _OWN_GROUP = True
    return Dist(dist.get_rank(), world, local_rank)


_OWN_GROUP = False  # whether init() made the default group (an in-process vLLM engine makes its own)


def export_single_process_env() -> None:
    """The rendezvous variables of a world of one, for a library that needs them in a plain
    ``python`` process (DeepSpeed's init otherwise falls back to MPI discovery)."""
    if "RANK" in os.environ:
        return
    import socket

    with socket.socket() as s:  # a free port on this machine
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))


def shutdown() -> None:
    """Leave the process group this module made, and no other."""
    global _OWN_GROUP
    if _OWN_GROUP and dist.is_initialized():
        dist.destroy_process_group()
    _OWN_GROUP = False
