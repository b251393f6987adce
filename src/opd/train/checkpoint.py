"""Resumable training state in a run directory that Snakemake never deletes.

A checkpoint is a directory ``step_NNNNNN`` holding the model (safetensors), and the
optimizer, scheduler, RNG and data position (``torch.save``, loaded back with
``weights_only=True``: no arbitrary pickle). It is written under a temporary name and
renamed, then ``latest`` is switched atomically, so a kill at any moment leaves the last
complete checkpoint in place. ``fingerprint`` records the run's settings: a run directory
made with other settings is not resumed.

SIGTERM (a preemption) and SIGUSR2 (SLURM's warning before the time limit) set a flag;
the training loop checkpoints at the next step boundary, puts its SLURM batch job back in
the queue (``scontrol requeue``: same job id, the rerun resumes) and exits with
``EXIT_REQUEUE``. Outside a requeue-able batch job the exit code alone asks for a retry.
Snakemake's own retries are left for that case only, so a bug fails once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..distributed import Dist
from ..io import atomic_dir, atomic_open, read_json, write_json, write_text
from ..models import save_model

EXIT_REQUEUE = 75  # EX_TEMPFAIL: stopped on a signal after saving a checkpoint
# settings of where checkpoints go, not of the training: changing them resumes the run
NOT_FINGERPRINTED = ("keep_checkpoints", "keep_final_checkpoint")


def fingerprinted(settings) -> dict:
    """A recipe's settings as its run directory's fingerprint holds them."""
    return {k: v for k, v in asdict(settings).items() if k not in NOT_FINGERPRINTED}


class StopFlag:
    """Set by SIGTERM/SIGUSR2; checked by the loop between steps."""

    def __init__(self, signals=(signal.SIGTERM, signal.SIGUSR2)):
        self.signal: int | None = None
        for s in signals:
            signal.signal(s, self._handle)

    def _handle(self, signum, _frame) -> None:
        self.signal = signum

    def __bool__(self) -> bool:
        return self.signal is not None


class RunDir:
    """Only the main rank writes; every rank loads (after the others wait for it)."""

    def __init__(self, path: str | Path, fingerprint: dict, keep: int = 1, dist: Dist = Dist()):
        self.path = Path(path)
        self.keep = keep
        self.dist = dist
        self.fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True))
        stamp = self.path / "fingerprint.json"
        if dist.main:
            if stamp.exists() and read_json(stamp) != self.fingerprint:
                print(f"{self.path}: settings changed since this run started; starting afresh")
                shutil.rmtree(self.path)
            self.path.mkdir(parents=True, exist_ok=True)
            if not stamp.exists():
                write_json(stamp, self.fingerprint)
        dist.barrier()

    @property
    def log_path(self) -> Path:
        return self.path / "train_log.jsonl"

    def open_log(self):
        """The step log for appending, a line at a time (it is watched while the run goes);
        other ranks write nowhere."""
        return open(self.log_path if self.dist.main else os.devnull, "a", buffering=1)

    def note_start(self, step: int) -> None:
        """One line per start of the run in ``starts.jsonl``: the history of a resumed run,
        which its job log (rewritten at each start) does not keep."""
        if not self.dist.main:
            return
        job = os.environ.get("SLURM_JOB_ID")
        entry = {"step": step, "slurm_job": job,
                 "restarts": int(slurm_job_fields(job).get("Restarts", 0)) if job else None}
        with open(self.path / "starts.jsonl", "a") as f:
            f.write(json.dumps(entry) + "\n")
        if step:
            print(f"resumed from step {step}", flush=True)

    def latest(self) -> Path | None:
        pointer = self.path / "latest"
        if not pointer.exists():
            return None
        ckpt = self.path / pointer.read_text().strip()
        return ckpt if (ckpt / "state.pt").exists() else None

    @property
    def shards(self) -> Path:
        """DeepSpeed's per-rank optimizer partitions, one folder per checkpoint."""
        return self.path / "deepspeed"

    def save(self, step: int, model, updater, scheduler, extra: dict) -> Path:
        """Called on every rank: each writes its optimizer shard (if sharded), then the main
        rank writes weights and state and moves ``latest``."""
        name = f"step_{step:06d}"
        updater.save_shards(self.shards, name)
        self.dist.barrier()
        if self.dist.main:
            with atomic_dir(self.path / name) as tmp:
                state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
                save_file(_untie(state), str(tmp / "model.safetensors"))
                optimizer = updater.optimizer_state()
                torch.save({
                    **({"optimizer": optimizer} if optimizer is not None else {}),
                    "scheduler": scheduler.state_dict(),
                    "torch_rng": torch.get_rng_state(),
                    "step": step,
                    "extra": json.dumps(extra),
                }, tmp / "state.pt")
            write_text(self.path / "latest", name + "\n")
            for old in sorted(self.path.glob("step_*"))[: -self.keep]:
                shutil.rmtree(old, ignore_errors=True)
                shutil.rmtree(self.shards / old.name, ignore_errors=True)
        self.dist.barrier()
        return self.path / name

    def end_step(self, step: int, last_step: int, every: int, stop: StopFlag, model, updater, scheduler,
                 extra: dict | None = None) -> None:
        """Checkpoint every ``every`` steps, at the last step and on a signal (to any rank);
        after a signal, exit with EXIT_REQUEUE so the job's retry resumes."""
        stopping = self.dist.any(bool(stop))
        if step % every == 0 or step == last_step or stopping:
            self.save(step, model, updater, scheduler, extra or {})
        if stopping:
            print(f"signal {stop.signal}: checkpoint at step {step} saved", flush=True)
            if self.dist.main:
                requeue_slurm_job()
            raise SystemExit(EXIT_REQUEUE)

    def load(self, model, updater, scheduler) -> tuple[int, dict]:
        """Restore the latest checkpoint into the given objects; returns (step, extra)."""
        ckpt = self.latest()
        if ckpt is None:
            return 0, {}
        params = model.state_dict()
        unexpected, loaded = [], set()
        # a tensor at a time from the memory-mapped file: no rank holds a second copy of the
        # weights in host memory
        with torch.no_grad(), safe_open(str(ckpt / "model.safetensors"), framework="pt") as f:
            for k in f.keys():
                if k not in params:
                    unexpected.append(k)
                    continue
                params[k].copy_(f.get_tensor(k))
                loaded.add(params[k].data_ptr())
        untied = [k for k in params if params[k].data_ptr() not in loaded]
        if unexpected or untied:
            raise RuntimeError(f"{ckpt}: checkpoint does not fit the model "
                               f"(unexpected {unexpected[:3]}, missing {untied[:3]})")
        state = torch.load(ckpt / "state.pt", weights_only=True)
        if ("optimizer" in state) == updater.sharded:
            raise RuntimeError(f"{ckpt}: optimizer state saved {'without' if updater.sharded else 'with'} "
                               "DeepSpeed; resume with the same setting")
        if updater.sharded:
            updater.load_shards(self.shards, ckpt.name)
        else:
            updater.load_optimizer_state(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        return int(state["step"]), json.loads(state["extra"])

    def truncate_log(self, step: int) -> None:
        """Drop log lines of steps after ``step`` (written before a kill, then redone). A run
        that starts over (no checkpoint yet) drops them all: it logs step 0 again."""
        if not self.dist.main or not self.log_path.exists():
            return
        lines = [ln for ln in self.log_path.read_text().splitlines() if ln.strip()]
        kept = [ln for ln in lines if json.loads(ln)["step"] <= step] if step else []
        write_text(self.log_path, "".join(ln + "\n" for ln in kept))


def requeue_slurm_job() -> bool:
    """Put this SLURM batch job back in the queue; SLURM ends this run at once and starts
    the same script again, which resumes from the checkpoint just saved. Only a batch job
    submitted requeue-able (``--requeue``, which profiles/slurm asks for) is requeued: an
    interactive allocation (``salloc``) is never touched."""
    job = os.environ.get("SLURM_JOB_ID")
    fields = slurm_job_fields(job) if job else {}
    if not fields:
        print(f"not in a SLURM batch job: exit {EXIT_REQUEUE} asks for a retry", flush=True)
        return False
    if fields.get("BatchFlag") != "1" or fields.get("Requeue") != "1":
        print(f"SLURM job {job} is not a requeue-able batch job (BatchFlag={fields.get('BatchFlag')}, "
              f"Requeue={fields.get('Requeue')}): exit {EXIT_REQUEUE} asks for a retry", flush=True)
        return False
    done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
    if done.returncode:
        print(f"scontrol requeue {job} refused: {done.stderr.strip()}; exit {EXIT_REQUEUE} asks for a retry",
              flush=True)
        return False
    print(f"SLURM job {job} requeued: its next run resumes here", flush=True)
    return True


def slurm_job_fields(job: str) -> dict:
    """``scontrol show job``'s fields (the job's own environment loses SLURM_RESTART_COUNT
    on the way through Snakemake's job step); empty without SLURM."""
    if not shutil.which("scontrol"):
        return {}
    show = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True)
    return dict(f.split("=", 1) for f in show.stdout.split() if "=" in f) if show.returncode == 0 else {}


def source_fingerprint(source: str | Path) -> object:
    """What identifies a model's weights: its files' names, sizes and times for a local
    directory (a retrained model at the same path differs), the id itself for a hub id."""
    path = Path(str(source))
    if not path.is_dir():
        return str(source)
    return sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in path.iterdir() if f.is_file())


def content_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _untie(state: dict) -> dict:
    """safetensors refuses shared storage (tied embeddings): store each tensor once."""
    seen, out = {}, {}
    for k, v in state.items():
        key = (v.data_ptr(), v.shape)
        if key in seen:
            continue
        seen[key] = k
        out[k] = v
    return out


def export(model, tokenizer, run: RunDir, out_dir: str | Path | None, log_out: str | Path,
           keep_final_checkpoint: bool = False) -> None:
    """The job's declared outputs: the final model (HF format; none when ``out_dir`` is None)
    and the step log, atomically (by the main rank). Then the run's checkpoints go (weights,
    optimizer, DeepSpeed shards: ~10x the model's size) unless asked to keep the last; the
    run directory keeps its fingerprint, step log and starts."""
    if not run.dist.main:
        return
    if out_dir is not None:
        with atomic_dir(out_dir) as tmp:
            save_model(model, tokenizer, tmp)
    with atomic_open(log_out) as f, open(run.log_path) as src:
        shutil.copyfileobj(src, f)
    if not keep_final_checkpoint:
        (run.path / "latest").unlink(missing_ok=True)
        for ckpt in run.path.glob("step_*"):
            shutil.rmtree(ckpt, ignore_errors=True)
        shutil.rmtree(run.shards, ignore_errors=True)
