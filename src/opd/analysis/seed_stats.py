"""The statistics a finding's verdict rests on: one value of one run over its seeds (mean,
sample sd), and the rules' comparisons of them. Plain Python, no torch (the tables job's
environment has none)."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

MIN_SEEDS = 2     # the fewest runs that have a sample standard deviation
SD_MULTIPLE = 2   # a difference counts when it is larger than this many sd of the seeds

@dataclass(frozen=True)
class Stat:
    """One value of one run over its seeds ({seed: value}); kind: ``points`` (an accuracy,
    0-1, shown in percent), ``gain`` (a signed accuracy difference) or ``ratio``."""

    run: str
    label: str
    per_seed: dict
    kind: str = "points"

    @property
    def n(self) -> int:
        return len(self.per_seed)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.per_seed.values())

    @property
    def sd(self) -> float | None:
        """The sample standard deviation; None below MIN_SEEDS runs."""
        return statistics.stdev(self.per_seed.values()) if self.n >= MIN_SEEDS else None

    def figure(self) -> dict:
        return {"run": self.run, "label": self.label, "kind": self.kind, "mean": self.mean, "sd": self.sd,
                "seeds": self.n}


def one(run: str, label: str, value: float, kind: str = "points") -> Stat:
    """A value measured once (a base model's accuracy, a continuation)."""
    return Stat(run, label, {"-": value}, kind)


class Undecided(Exception):
    """The run lacks a value the rule needs (an AUROC with one class, no overlap logged)."""


def transfers(gain: Stat, min_gain: float) -> bool:
    """Transfers: the mean gain over the seeds is above ``min_gain`` and above SD_MULTIPLE sd."""
    return gain.mean > min_gain and gain.mean > SD_MULTIPLE * gain.sd


def apart(a: Stat, b: Stat, min_diff: float = 0.0) -> bool:
    """a's mean exceeds b's by more than ``min_diff`` and SD_MULTIPLE sd of the difference of
    two independent runs' means, sqrt(sd_a^2 + sd_b^2)."""
    diff = a.mean - b.mean
    return diff > min_diff and diff > SD_MULTIPLE * math.hypot(a.sd, b.sd)


def too_few(*stats: Stat) -> str | None:
    short = sorted({s.run for s in stats if s.n < MIN_SEEDS})
    if not short:
        return None
    return (f"{', '.join(short)}: one seed; the rule needs {MIN_SEEDS} (`--config seed_runs=all`, or more "
            "`seeds`)")


def pts(x: float) -> str:
    return f"{100 * x:.1f}"
