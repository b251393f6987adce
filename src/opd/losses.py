"""OPD objectives and token-level metrics, computed in chunks of positions.

Rollouts come from the student p; the teacher q scores the student's own tokens. The
objectives (PAPER.md, "Objective"):

* ``topk``: for v in a set S_t (student / teacher top-k, their intersection or union, or
  the student's top-k outside the teacher's), advantage A(t,v) = w_v (log q(v) - log p(v))
  with full-vocabulary log-probs and w_v a probability renormalised over S_t only;
* ``sampled``: S_t = {y_t}, the sampled token, w = 1;
* ``full``: the exact reverse KL(p || q) at every position (no PPO surrogate).

Advantages feed the PPO clipped surrogate (clip, dual clip) per (t, v) pair, summed over
v, and the sum over positions is divided by ``n_tokens``, the token count of the whole
optimizer step, so gradient accumulation does not re-weight micro-batches.

:func:`chunk_terms` is the math for a block of positions: loss, its gradient with respect
to the student's logits (analytic: no autograd graph over the vocabulary) and metric sums.
:func:`opd_loss` runs it chunk by chunk from hidden states, so no (tokens x vocab) tensor
is ever held beyond one chunk. :func:`naive_opd_loss` is the plain full-logits autograd
version: the test oracle and the benchmark baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

KINDS = ("topk", "sampled", "full")
TOPK_SETS = ("student", "teacher", "intersection", "union", "non_overlap")
WEIGHTS = ("student_p", "teacher_p", "none")
METRICS = (
    "overlap_ratio", "overlap_mass_student", "overlap_mass_teacher", "overlap_token_advantage",
    "entropy_student", "entropy_teacher", "entropy_gap", "reverse_kl", "sampled_reward",
)


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

    def __post_init__(self):
        for field, value, allowed in (("kind", self.kind, KINDS), ("topk_set", self.topk_set, TOPK_SETS),
                                      ("weights", self.weights, WEIGHTS)):
            if value not in allowed:
                raise ValueError(f"objective {field} {value!r} is not one of {allowed}")
        if self.kind == "topk" and self.k < 1:
            raise ValueError("top-k objective needs k >= 1 (k = 0 is the sampled-token objective)")


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


def _topk_mask(x: torch.Tensor, k: int) -> torch.Tensor:
    idx = x.topk(min(k, x.shape[-1]), dim=-1).indices
    return torch.zeros_like(x, dtype=torch.bool).scatter_(-1, idx, True)


def _renormalise(prob: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    masked = prob * mask
    return masked / masked.sum(-1, keepdim=True).clamp_min(1e-30)


def token_set(logp: torch.Tensor, logq: torch.Tensor, tokens: torch.Tensor, obj: Objective) -> torch.Tensor:
    """S_t as a boolean mask over the vocabulary."""
    if obj.kind == "sampled":
        return torch.zeros_like(logp, dtype=torch.bool).scatter_(-1, tokens[:, None], True)
    mp = _topk_mask(logp, obj.k)
    if obj.topk_set == "student":
        return mp
    mq = _topk_mask(logq, obj.k)
    return {"teacher": mq, "intersection": mp & mq, "union": mp | mq, "non_overlap": mp & ~mq}[obj.topk_set]


def metric_sums(logp: torch.Tensor, logq: torch.Tensor, tokens: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
    """Per-chunk sums of the token-level metrics (PAPER.md, "Token-level metrics")."""
    p, q = logp.exp(), logq.exp()
    both = _topk_mask(logp, k) & _topk_mask(logq, k)
    h_p = -(p * logp).sum(-1)
    h_q = -(q * logq).sum(-1)
    has = both.any(-1)
    lp_i = torch.where(both, logp, -torch.inf)
    lq_i = torch.where(both, logq, -torch.inf)
    lp_i = lp_i - lp_i.logsumexp(-1, keepdim=True)  # log p' renormalised on the intersection
    lq_i = lq_i - lq_i.logsumexp(-1, keepdim=True)
    adv = torch.where(both, lp_i.exp() * (lq_i - lp_i), torch.zeros_like(logp)).sum(-1)
    sampled = tokens[:, None]
    return {
        "overlap_ratio": (both.sum(-1).float() / k).sum(),
        "overlap_mass_student": (p * both).sum(),
        "overlap_mass_teacher": (q * both).sum(),
        "overlap_token_advantage": torch.where(has, adv, torch.zeros_like(adv)).sum(),
        "overlap_positions": has.sum().float(),
        "entropy_student": h_p.sum(),
        "entropy_teacher": h_q.sum(),
        "entropy_gap": (h_q - h_p).abs().sum(),
        "reverse_kl": (p * (logp - logq)).sum(),
        "sampled_reward": (logq.gather(-1, sampled) - logp.gather(-1, sampled)).sum(),
    }


def chunk_terms(z_s: torch.Tensor, z_t: torch.Tensor, tokens: torch.Tensor, obj: Objective):
    """Loss sum, d(loss sum)/d(student logits), metric sums and per-token sampled reward.

    ``z_s``, ``z_t``: (C, V) logits at C response positions; ``tokens``: (C,) the student's
    sampled tokens. Everything here is detached; the gradient is returned explicitly.
    """
    z_s, z_t = z_s.detach().float(), z_t.detach().float()
    logp = z_s.log_softmax(-1)
    logq = (z_t / obj.teacher_temperature).log_softmax(-1)
    p = logp.exp()
    if obj.kind == "full":
        kl = (p * (logp - logq)).sum(-1)
        loss = kl.sum()
        grad_z = p * (logp - logq - kl[:, None])
    else:
        s = token_set(logp, logq, tokens, obj)
        if obj.kind == "sampled" or obj.weights == "none":
            w = s.float()
        else:
            w = _renormalise(p if obj.weights == "student_p" else logq.exp(), s)
        adv = torch.where(s, w * (logq - logp), torch.zeros_like(logp))
        # one update per rollout batch: the rollout policy is the current one (ratio 1)
        per_pair, grad_logp = ppo_surrogate(logp, logp, adv, obj.clip, obj.dual_clip)
        loss = (per_pair * s).sum()
        grad_logp = grad_logp * s
        # d log p(v) / d z_u = [u = v] - p(u)
        grad_z = grad_logp - p * grad_logp.sum(-1, keepdim=True)
    metrics = metric_sums(logp, logq, tokens, obj.metrics_k)
    reward = logq.gather(-1, tokens[:, None])[:, 0] - logp.gather(-1, tokens[:, None])[:, 0]
    return loss, grad_z, metrics, reward


class _ChunkedOPD(torch.autograd.Function):
    """Forward computes the loss and, chunk by chunk, the gradients of h_s and W_s."""

    @staticmethod
    def forward(ctx, h_s, w_s, h_t, w_t, tokens, obj, n_tokens, chunk_size):
        grad_h = torch.zeros_like(h_s)
        grad_w = torch.zeros_like(w_s, dtype=torch.float32)
        loss = torch.zeros((), dtype=torch.float32, device=h_s.device)
        metrics = torch.zeros(len(METRICS) + 1, dtype=torch.float32, device=h_s.device)
        rewards = torch.empty(h_s.shape[0], dtype=torch.float32, device=h_s.device)
        for start in range(0, h_s.shape[0], chunk_size):
            sl = slice(start, start + chunk_size)
            z_s = h_s[sl] @ w_s.T
            z_t = h_t[sl] @ w_t.T
            c_loss, g_z, c_metrics, c_reward = chunk_terms(z_s, z_t, tokens[sl], obj)
            g_z = (g_z / n_tokens).to(h_s.dtype)
            grad_h[sl] = g_z @ w_s
            grad_w += (g_z.T @ h_s[sl]).float()
            loss += c_loss
            metrics += torch.stack([c_metrics[m] for m in (*METRICS, "overlap_positions")])
            rewards[sl] = c_reward
        ctx.save_for_backward(grad_h, grad_w.to(w_s.dtype))
        ctx.mark_non_differentiable(metrics, rewards)
        return loss / n_tokens, metrics, rewards

    @staticmethod
    def backward(ctx, grad_loss, _grad_metrics, _grad_rewards):
        grad_h, grad_w = ctx.saved_tensors
        return grad_h * grad_loss, grad_w * grad_loss, None, None, None, None, None, None


@dataclass
class OPDLoss:
    loss: torch.Tensor  # scalar, differentiable; already divided by n_tokens
    metric_sums: dict[str, float]  # sums over positions (divide by positions for means)
    positions: int
    token_reward: torch.Tensor  # (N,) log q(y_t) - log p(y_t) at each sampled token


def _pack(loss, metrics_vec, rewards, positions) -> OPDLoss:
    values = metrics_vec.tolist()
    sums = dict(zip(METRICS, values[:-1]))
    sums["overlap_positions"] = values[-1]
    return OPDLoss(loss, sums, positions, rewards)


def opd_loss(h_s: torch.Tensor, w_s: torch.Tensor, h_t: torch.Tensor, w_t: torch.Tensor,
             tokens: torch.Tensor, obj: Objective, n_tokens: int, chunk_size: int = 64) -> OPDLoss:
    """The OPD loss from final hidden states and LM-head weights, chunked over positions.

    ``h_s`` (N, d) and ``w_s`` (V, d) are the student's (gradients flow to both); ``h_t``
    (N, d_t) and ``w_t`` (V', d_t) the teacher's. Only the first V columns of the teacher's
    logits are used when its head is padded larger (same tokenizer, padded vocab).
    """
    vocab = w_s.shape[0]
    if w_t.shape[0] < vocab:
        raise ValueError(f"teacher vocabulary {w_t.shape[0]} is smaller than the student's {vocab}")
    loss, metrics, rewards = _ChunkedOPD.apply(h_s, w_s, h_t.detach(), w_t.detach()[:vocab], tokens, obj,
                                               n_tokens, chunk_size)
    return _pack(loss, metrics, rewards, h_s.shape[0])


def naive_opd_loss(z_s: torch.Tensor, z_t: torch.Tensor, tokens: torch.Tensor, obj: Objective,
                   n_tokens: int) -> OPDLoss:
    """Full-logits reference: the same objective through ordinary autograd."""
    logp = z_s.float().log_softmax(-1)
    logq = (z_t.detach().float() / obj.teacher_temperature).log_softmax(-1)
    if obj.kind == "full":
        loss = (logp.exp() * (logp - logq)).sum()
    else:
        with torch.no_grad():
            s = token_set(logp, logq, tokens, obj)
            p = logp.exp()
            if obj.kind == "sampled" or obj.weights == "none":
                w = s.float()
            else:
                w = _renormalise(p if obj.weights == "student_p" else logq.exp(), s)
            adv = torch.where(s, w * (logq - logp), torch.zeros_like(logp))
        ratio = torch.exp(logp - logp.detach())
        pg = torch.maximum(-adv * ratio, -adv * ratio.clamp(1 - obj.clip, 1 + obj.clip))
        pg = torch.where((adv < 0) & (-adv * obj.dual_clip < pg), -adv * obj.dual_clip, pg)
        loss = (pg * s).sum()
    with torch.no_grad():
        m = metric_sums(logp.detach(), logq, tokens, obj.metrics_k)
        reward = (logq.gather(-1, tokens[:, None]) - logp.detach().gather(-1, tokens[:, None]))[:, 0]
    vec = torch.stack([m[k] for k in (*METRICS, "overlap_positions")])
    return _pack(loss / n_tokens, vec, reward, z_s.shape[0])
