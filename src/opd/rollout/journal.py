"""Sampling a large prompt set in chunks that survive the job: each chunk's rollouts are
appended to a journal as one line (flushed and fsynced) as soon as they are sampled, and a
restarted job skips the chunks already there. Each chunk is sampled with a seed of its own
(chunk 0 with the run's seed itself), so the rollouts do not depend on where a run was
interrupted, nor on how many workers shared the chunks.

The journal's first line is the run's fingerprint: a journal written with other settings
is discarded, not resumed. A line cut short by a kill is dropped and its chunk resampled.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, replace
from pathlib import Path

from . import Rollout, SamplingParams


def chunk_seed(seed: int, chunk: int) -> int:
    """Chunk 0 samples with ``seed`` (a set that fits one chunk samples as one call would);
    the others with a seed derived from both, below 2**31 for every backend's generator."""
    if chunk == 0:
        return seed
    return int(hashlib.sha256(f"{seed}:{chunk}".encode()).hexdigest()[:8], 16) % 2**31


def chunks(count: int, size: int) -> list[range]:
    return [range(start, min(count, start + size)) for start in range(0, count, size)]


def read_journal(path: Path, fingerprint: dict) -> tuple[dict[int, list[Rollout]], int] | None:
    """The chunks a journal holds and the length of its intact part; None when it was
    written with other settings (or is no journal)."""
    lines = path.read_bytes().split(b"\n")
    try:
        head = json.loads(lines[0])
    except ValueError:
        return None
    if not isinstance(head, dict) or head.get("fingerprint") != fingerprint:
        return None
    done, good = {}, len(lines[0]) + 1
    for raw in lines[1:]:
        try:
            entry = json.loads(raw)
        except ValueError:  # cut short by a kill: resampled
            break
        done[entry["chunk"]] = [Rollout(**r) for r in entry["rollouts"]]
        good += len(raw) + 1
    return done, good


class Journal:
    """One worker's journal; ``done`` also holds the chunks of the other workers' journals
    in the same folder, so that no chunk is sampled twice."""

    def __init__(self, folder: str | Path, fingerprint: dict, rank: int = 0):
        self.folder = Path(folder)
        self.path = self.folder / f"worker{rank}.jsonl"
        self.fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True))
        self.done: dict[int, list[Rollout]] = {}
        self.folder.mkdir(parents=True, exist_ok=True)
        for other in sorted(self.folder.glob("worker*.jsonl")):
            found = read_journal(other, self.fingerprint)
            if found is not None:
                self.done.update(found[0])
            if other != self.path:
                continue
            if found is None:
                print(f"{other}: written with other settings; sampling afresh", flush=True)
                other.unlink()
            else:  # drop a partial last line, so appends start clean
                with open(other, "r+b") as f:
                    f.truncate(min(found[1], other.stat().st_size))
        if not self.path.exists():
            self._append({"fingerprint": self.fingerprint})

    def _append(self, entry: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def record(self, chunk: int, rollouts: list[Rollout]) -> None:
        self._append({"chunk": chunk, "rollouts": [asdict(r) for r in rollouts]})
        self.done[chunk] = rollouts


def sample_in_chunks(backend, prompts: list[list[int]], sampling: SamplingParams, journal: Journal,
                     chunk_size: int, rank: int = 0, world: int = 1) -> int:
    """Sample this worker's chunks (every ``world``-th, from ``rank``) not yet in the journal;
    returns how many were sampled now. Rollouts keep the prompt's index in the whole set."""
    sampled, parts = 0, chunks(len(prompts), chunk_size)
    for c, idx in enumerate(parts):
        if c % world != rank or c in journal.done:
            continue
        out = backend.generate([prompts[i] for i in idx], replace(sampling, seed=chunk_seed(sampling.seed, c)))
        journal.record(c, [replace(r, prompt_index=idx[r.prompt_index]) for r in out])
        sampled += 1
        print(f"chunk {c + 1} of {len(parts)}: {len(out)} rollouts", flush=True)
    return sampled


def collected(folder: str | Path, fingerprint: dict, count: int, chunk_size: int) -> list[Rollout]:
    """Every chunk's rollouts from the workers' journals (read, not touched), in prompt
    order; an error naming the chunks that are missing."""
    fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True))
    done = {}
    for path in sorted(Path(folder).glob("worker*.jsonl")):
        found = read_journal(path, fingerprint)
        if found is not None:
            done.update(found[0])
    missing = [c for c in range(len(chunks(count, chunk_size))) if c not in done]
    if missing:
        raise RuntimeError(f"{folder}: chunks {missing[:5]} of the prompt set were never sampled")
    return [r for c in sorted(done) for r in done[c]]
