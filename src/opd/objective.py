"""What an OPD objective is: its settings, how a step's positions are weighted, the PPO
surrogate every (position, token) pair goes through, and the token-level metrics it logs.
The math that computes them over the vocabulary is in ``opd.losses`` (and, for top-k sets
of at most ``SPARSE_MAX_K`` tokens, ``opd.sparse_terms``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

KINDS = ("topk", "sampled", "full")
TOPK_SETS = ("student", "teacher", "intersection", "union", "non_overlap")
WEIGHTS = ("student_p", "teacher_p", "none")
LOSS_AGG_MODES = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")
# below the log of the smallest positive float32 (about -103.3): flooring changes only exact zeros
LOG_FLOOR = -1e4

# each logged metric and the count its sum is divided by (PAPER.md, "Overlap metrics")
METRICS = {
    "overlap_ratio": "slots",  # student top-k slots whose token is in the teacher's top-k
    "overlap_mass_student": "positions",  # p summed over the intersection, over all positions
    "overlap_mass_teacher": "positions",
    "student_p_sum_intersection": "overlap_positions",  # the same, over positions with an overlap
    "teacher_p_sum_intersection": "overlap_positions",
    "adv_intersection": "pairs_intersection",  # mean A(t, v) over (position, token) pairs in both top-k
    "adv_only_stu": "pairs_only_stu",  # ... in the student's top-k only
    "adv_only_tch": "pairs_only_tch",  # ... in the teacher's top-k only
    "entropy_student": "positions",
    "entropy_teacher": "positions",
    "entropy_gap": "positions",
    "reverse_kl": "positions",
    "sampled_reward": "positions",
}
COUNTS = ("positions", "slots", "overlap_positions", "pairs_intersection", "pairs_only_stu", "pairs_only_tch")
SUMS = (*METRICS, *COUNTS)


@dataclass(frozen=True)
class Objective:
    kind: str = "topk"
    k: int = 16
    topk_set: str = "student"
    weights: str = "student_p"
    clip: float = 0.2
    dual_clip: float = 3.0
    teacher_temperature: float = 1.0
    metrics_k: int = 16
    student_temperature: float = 1.0  # the rollouts' temperature (set by the recipe, not the config)
    loss_agg_mode: str = "token-mean"

    def __post_init__(self):
        for field, value, allowed in (("kind", self.kind, KINDS), ("topk_set", self.topk_set, TOPK_SETS),
                                      ("weights", self.weights, WEIGHTS),
                                      ("loss_agg_mode", self.loss_agg_mode, LOSS_AGG_MODES)):
            if value not in allowed:
                raise ValueError(f"objective {field} {value!r} is not one of {allowed}")
        if self.kind == "topk" and self.k < 1:
            raise ValueError("top-k objective needs k >= 1 (k = 0 is the sampled-token objective)")
        if self.metrics_k < 1:
            raise ValueError("objective metrics_k must be >= 1")
        if not self.student_temperature > 0:
            raise ValueError("the student's temperature must be > 0 (a greedy rollout is scored at 1)")


def position_weights(lengths: list[int], mode: str, n_tokens: int, n_sequences: int, n_rollouts: int,
                     max_len: int) -> torch.Tensor:
    """The weight of each response position's loss in the step's loss, position by position
    for sequences of these ``lengths`` (one micro-batch).

    ``n_tokens``, ``n_sequences`` (those with a response token) and ``n_rollouts`` are the
    whole step's counts over all micro-batches and ranks, and ``max_len`` the padded
    response length (the generation limit), so the weighted sum over the step is the
    released code's aggregate of the step taken as one batch: token-mean = sum / tokens;
    seq-mean-token-sum = mean over sequences of their sums; seq-mean-token-mean = mean over
    sequences of their means; seq-mean-token-sum-norm = sum / (rollouts x max_len), a
    constant divisor (verl divides each micro-batch's sum by max_len alone, which is this
    times the micro-batch size: a learning-rate factor that changes with the batching).
    """
    if mode not in LOSS_AGG_MODES:
        raise ValueError(f"loss_agg_mode {mode!r} is not one of {LOSS_AGG_MODES}")
    per_seq = []
    for n in lengths:
        if mode == "token-mean":
            w = 1.0 / n_tokens if n_tokens else 0.0
        elif mode == "seq-mean-token-sum":
            w = 1.0 / n_sequences if n_sequences else 0.0
        elif mode == "seq-mean-token-mean":
            w = 1.0 / (n_sequences * n) if n else 0.0
        else:
            w = 1.0 / (n_rollouts * max_len)
        per_seq.append(torch.full((n,), w, dtype=torch.float64))
    return torch.cat(per_seq).float() if per_seq else torch.zeros(0)


def ppo_surrogate(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, clip: float,
                  dual_clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Dual-clip PPO loss per element and its derivative with respect to ``logp``."""
    ratio = torch.exp(logp - old_logp)
    clipped = ratio.clamp(1 - clip, 1 + clip)
    pg1, pg2 = -adv * ratio, -adv * clipped
    loss = torch.maximum(pg1, pg2)
    use_unclipped = pg1 >= pg2
    pg3 = -adv * dual_clip
    dual = (adv < 0) & (pg3 < loss)
    loss = torch.where(dual, pg3, loss)
    grad = torch.where(use_unclipped & ~dual, -adv * ratio, torch.zeros_like(adv))
    return loss, grad


def shared_sums(both, k, mass_p, mass_q, h_p, h_q, reverse_kl, sampled_reward) -> dict[str, torch.Tensor]:
    """The metric sums besides the advantage ones. ``both``: (C, *) which of the student's
    top-k tokens are in the teacher's (over the vocabulary or the top-k ids); the masses
    are each summed once for their two denominators (METRICS)."""
    return {
        "overlap_ratio": both.sum().float(),
        "overlap_mass_student": mass_p,
        "overlap_mass_teacher": mass_q,
        "student_p_sum_intersection": mass_p,
        "teacher_p_sum_intersection": mass_q,
        "entropy_student": h_p.sum(),
        "entropy_teacher": h_q.sum(),
        "entropy_gap": (h_q - h_p).abs().sum(),
        "reverse_kl": reverse_kl,
        "sampled_reward": sampled_reward,
        "positions": torch.tensor(float(both.shape[0])),
        "slots": torch.tensor(float(both.shape[0] * k)),
        "overlap_positions": both.any(-1).sum().float(),
    }


def metric_means(sums: dict[str, float]) -> dict[str, float | None]:
    """Each metric's sum over its count; None where the count is 0 (e.g. no overlap at all)."""
    return {m: sums[m] / sums[count] if sums[count] else None for m, count in METRICS.items()}
