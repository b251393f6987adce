"""OPD objectives and token-level metrics, computed in chunks of positions.

Rollouts come from the student p; the teacher q scores the student's own tokens. The
objectives follow the paper's released code (PAPER.md, "Objective" and "The released
code's definitions"):

* ``topk``: for v in a set S_t, advantage A(t,v) = w_v (log q(v) - log p(v)) with
  full-vocabulary log-probs. S_t is the student's or the teacher's top-k, their
  intersection, their union, or ``non_overlap``: the tokens in exactly one of the two
  (symmetric difference). w_v is the student's or the teacher's probability renormalised
  over S_t, or uniform 1/|S_t| (``none``); for ``non_overlap`` the raw probabilities (1 each
  for ``none``), as in the released code;
* ``sampled``: S_t = {y_t}, the sampled token, w = 1;
* ``full``: the exact reverse KL(p || q) at every position (no PPO surrogate).

Advantages feed the PPO clipped surrogate (clip, dual clip) per (t, v) pair, summed over
v. Each position's loss is multiplied by its weight in the step's aggregate
(:func:`position_weights`: token-mean and the released code's sequence means, computed
over the whole optimizer step), so micro-batching and ranks do not re-weight anything.

The student's log-probs are those of the distribution its rollouts were sampled from: its
logits over ``student_temperature`` (the rollout temperature), as the released code divides
them in every log-prob it trains on; the teacher's over ``teacher_temperature``.

A token the student's logits mask out (-inf) has probability 0: it is never in S_t, and
log-probs are floored at ``LOG_FLOOR`` so that 0 * log 0 terms stay 0, not NaN.

:func:`chunk_terms` is the math for a block of positions: loss, its gradient with respect
to the student's logits (analytic: no autograd graph over the vocabulary) and metric sums.
:func:`opd_loss` runs it chunk by chunk from hidden states, so no (tokens x vocab) tensor
is ever held beyond one chunk. :func:`naive_opd_loss` is the plain full-logits autograd
version: the test oracle and the benchmark baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .objective import LOG_FLOOR, SUMS, Objective, ppo_surrogate, shared_sums
from .sparse_terms import SPARSE_MAX_K, sparse_terms

def log_probs(z_s: torch.Tensor, z_t: torch.Tensor, teacher_temperature: float, student_temperature: float = 1.0):
    """Floored full-vocabulary log-probs of student and teacher, and the student's support
    (the tokens its logits do not mask out)."""
    logp = (z_s.float() / student_temperature).log_softmax(-1)
    logq = (z_t.float() / teacher_temperature).log_softmax(-1)
    return logp.clamp_min(LOG_FLOOR), logq.clamp_min(LOG_FLOOR), logp > -torch.inf


def _topk_mask(x: torch.Tensor, k: int) -> torch.Tensor:
    idx = x.topk(min(k, x.shape[-1]), dim=-1).indices
    return torch.zeros_like(x, dtype=torch.bool).scatter_(-1, idx, True)


def token_set(logp: torch.Tensor, logq: torch.Tensor, tokens: torch.Tensor, obj: Objective,
              support: torch.Tensor | None = None) -> torch.Tensor:
    """S_t as a boolean mask over the vocabulary (k above the vocabulary means all of it)."""
    if obj.kind == "sampled":
        s = torch.zeros_like(logp, dtype=torch.bool).scatter_(-1, tokens[:, None], True)
    elif obj.topk_set == "student":
        s = _topk_mask(logp, obj.k)
    else:
        mp, mq = _topk_mask(logp, obj.k), _topk_mask(logq, obj.k)
        s = {"teacher": mq, "intersection": mp & mq, "union": mp | mq, "non_overlap": mp ^ mq}[obj.topk_set]
    return s if support is None else s & support


def set_weights(logp: torch.Tensor, logq: torch.Tensor, s: torch.Tensor, obj: Objective) -> torch.Tensor:
    """w_v on S_t, 0 elsewhere: a softmax of the chosen log-probs restricted to S_t (uniform
    for ``none``); raw probabilities (1 for ``none``) for ``non_overlap``."""
    if obj.kind == "sampled":
        return s.float()
    base = {"student_p": logp, "teacher_p": logq, "none": torch.zeros_like(logp)}[obj.weights]
    base = torch.where(s, base, -torch.inf)
    if obj.kind == "topk" and obj.topk_set != "non_overlap":
        base = base - base.logsumexp(-1, keepdim=True)  # an empty S_t gives NaN, zeroed below
    return torch.where(s, base.exp(), torch.zeros_like(logp))


def advantage(logp: torch.Tensor, logq: torch.Tensor, tokens: torch.Tensor, obj: Objective,
              support: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A(t, v) over the vocabulary (0 outside S_t) and S_t."""
    s = token_set(logp, logq, tokens, obj, support)
    adv = torch.where(s, set_weights(logp, logq, s, obj) * (logq - logp), torch.zeros_like(logp))
    return adv, s


def metric_sums(logp: torch.Tensor, logq: torch.Tensor, tokens: torch.Tensor, obj: Objective,
                adv: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per-chunk sums and counts of the token-level metrics (PAPER.md, "Overlap metrics").

    Overlap ratio and masses use the top-``metrics_k`` sets. The advantage metrics average
    the training advantage ``adv`` over the pairs of the training k's top-k sets, as the
    released code logs them; for the sampled and full objectives, which have no per-token
    advantage, the default objective's (student top-``metrics_k``, student_p)."""
    k = min(obj.metrics_k, logp.shape[-1])
    p, q = logp.exp(), logq.exp()
    mp, mq = _topk_mask(logp, k), _topk_mask(logq, k)
    both = mp & mq
    if obj.kind == "topk" and adv is not None:
        ap, aq = (mp, mq) if min(obj.k, logp.shape[-1]) == k else (_topk_mask(logp, obj.k), _topk_mask(logq, obj.k))
    else:
        adv = advantage(logp, logq, tokens, Objective(k=k))[0]
        ap, aq = mp, mq
    regions = {"intersection": ap & aq, "only_stu": ap & ~aq, "only_tch": aq & ~ap}
    h_p = -(p * logp).sum(-1)
    h_q = -(q * logq).sum(-1)
    sampled = tokens[:, None]
    zero = torch.zeros_like(logp)
    sums = shared_sums(both, k, (p * both).sum(), (q * both).sum(), h_p, h_q, (p * (logp - logq)).sum(),
                        (logq.gather(-1, sampled) - logp.gather(-1, sampled)).sum())
    for name, mask in regions.items():
        sums[f"adv_{name}"] = torch.where(mask, adv, zero).sum()
        sums[f"pairs_{name}"] = mask.sum().float()
    return sums


def chunk_terms(z_s: torch.Tensor, z_t: torch.Tensor, tokens: torch.Tensor, obj: Objective,
                weight: torch.Tensor):
    """Weighted loss sum, its gradient with respect to the student logits, metric sums and
    per-token sampled reward.

    ``z_s``, ``z_t``: (C, V) logits at C response positions; ``tokens``: (C,) the student's
    sampled tokens; ``weight``: (C,) each position's weight in the step's loss.
    Everything here is detached; the gradient is returned explicitly. Small sets (k and
    ``metrics_k`` up to ``SPARSE_MAX_K``) take :func:`opd.sparse_terms.sparse_terms`: the PPO surrogate,
    weights and metrics on the sets' token ids instead of over the whole vocabulary.
    """
    t = obj.student_temperature
    if t != 1.0:  # the terms of the tempered logits z / t; d(z / t) / dz = 1 / t
        loss, grad_z, metrics, reward = _terms(z_s.detach().float() / t, z_t, tokens, obj, weight)
        return loss, grad_z / t, metrics, reward
    return _terms(z_s, z_t, tokens, obj, weight)


def _terms(z_s, z_t, tokens, obj: Objective, weight):
    """:func:`chunk_terms` of logits already at the student's temperature."""
    if max(min(obj.k, z_s.shape[-1]), min(obj.metrics_k, z_s.shape[-1])) <= SPARSE_MAX_K:
        return sparse_terms(z_s.detach(), z_t.detach(), tokens, obj, weight)
    logp, logq, support = log_probs(z_s.detach(), z_t.detach(), obj.teacher_temperature)
    p = logp.exp()
    weight = weight.to(logp)
    adv = None
    if obj.kind == "full":
        kl = (p * (logp - logq)).sum(-1)
        loss = (kl * weight).sum()
        grad_z = p * (logp - logq - kl[:, None]) * weight[:, None]
    else:
        adv, s = advantage(logp, logq, tokens, obj, support)
        # one update per rollout batch: the rollout policy is the current one (ratio 1)
        per_pair, grad_logp = ppo_surrogate(logp, logp, adv, obj.clip, obj.dual_clip)
        loss = (torch.where(s, per_pair, 0.0).sum(-1) * weight).sum()
        grad_logp = torch.where(s, grad_logp, 0.0) * weight[:, None]
        # d log p(v) / d z_u = [u = v] - p(u)
        grad_z = grad_logp - p * grad_logp.sum(-1, keepdim=True)
    metrics = metric_sums(logp, logq, tokens, obj, adv)
    reward = logq.gather(-1, tokens[:, None])[:, 0] - logp.gather(-1, tokens[:, None])[:, 0]
    return loss, grad_z, metrics, reward


class _ChunkedOPD(torch.autograd.Function):
    """Forward computes the loss and, chunk by chunk, the gradients of h_s and W_s."""

    @staticmethod
    def forward(ctx, h_s, w_s, h_t, w_t, tokens, obj, weight, chunk_size):
        grad_h = torch.zeros_like(h_s)
        grad_w = torch.zeros_like(w_s, dtype=torch.float32)
        loss = torch.zeros((), dtype=torch.float32, device=h_s.device)
        metrics = torch.zeros(len(SUMS), dtype=torch.float32, device=h_s.device)
        rewards = torch.empty(h_s.shape[0], dtype=torch.float32, device=h_s.device)
        # the head's matmuls in the hidden states' dtype (bf16 under mixed precision: one cast of
        # the fp32 master weight, not one per chunk); the gradient is accumulated in fp32
        w_c = w_s.detach().to(h_s.dtype)
        for start in range(0, h_s.shape[0], chunk_size):
            sl = slice(start, start + chunk_size)
            z_s = h_s[sl] @ w_c.T
            z_t = h_t[sl] @ w_t.T
            c_loss, g_z, c_metrics, c_reward = chunk_terms(z_s, z_t, tokens[sl], obj, weight[sl])
            g_z = g_z.to(h_s.dtype)
            grad_h[sl] = g_z @ w_c
            grad_w.addmm_(g_z.T.float(), h_s[sl].float())  # in place: no (V x d) temporary per chunk
            loss += c_loss
            metrics += torch.stack([c_metrics[m].to(metrics) for m in SUMS])
            rewards[sl] = c_reward
        ctx.save_for_backward(grad_h, grad_w.to(w_s.dtype))
        ctx.mark_non_differentiable(metrics, rewards)
        return loss, metrics, rewards

    @staticmethod
    def backward(ctx, grad_loss, _grad_metrics, _grad_rewards):
        grad_h, grad_w = ctx.saved_tensors
        return grad_h * grad_loss, grad_w * grad_loss, None, None, None, None, None, None


@dataclass
class OPDLoss:
    loss: torch.Tensor  # scalar, differentiable; this micro-batch's share of the step's loss
    metric_sums: dict[str, float]  # sums and counts over positions (metric_means divides them)
    positions: int
    token_reward: torch.Tensor  # (N,) log q(y_t) - log p(y_t) at each sampled token


def _pack(loss, metrics_vec, rewards, positions) -> OPDLoss:
    return OPDLoss(loss, dict(zip(SUMS, metrics_vec.tolist())), positions, rewards)


def _weights(weight: torch.Tensor | float, n: int, device) -> torch.Tensor:
    if isinstance(weight, torch.Tensor):
        if weight.shape != (n,):
            raise ValueError(f"position weights of shape {tuple(weight.shape)} for {n} positions")
        return weight.to(device=device, dtype=torch.float32)
    return torch.full((n,), float(weight), device=device)


def opd_loss(h_s: torch.Tensor, w_s: torch.Tensor, h_t: torch.Tensor, w_t: torch.Tensor,
             tokens: torch.Tensor, obj: Objective, weight: torch.Tensor | float, chunk_size: int = 64) -> OPDLoss:
    """The OPD loss from final hidden states and LM-head weights, chunked over positions.

    ``h_s`` (N, d) and ``w_s`` (V, d) are the student's (gradients flow to both); ``h_t``
    (N, d_t) and ``w_t`` (V', d_t) the teacher's. Only the first V columns of the teacher's
    logits are used when its head is padded larger (same tokenizer, padded vocab).
    ``weight``: each position's weight in the step's loss, (N,) from :func:`position_weights`
    or one number for all (1 / the step's tokens is token-mean).
    """
    vocab = w_s.shape[0]
    if w_t.shape[0] < vocab:
        raise ValueError(f"teacher vocabulary {w_t.shape[0]} is smaller than the student's {vocab}")
    weight = _weights(weight, h_s.shape[0], h_s.device)
    loss, metrics, rewards = _ChunkedOPD.apply(h_s, w_s, h_t.detach(), w_t.detach()[:vocab], tokens, obj,
                                               weight, chunk_size)
    return _pack(loss, metrics, rewards, h_s.shape[0])


def naive_opd_loss(z_s: torch.Tensor, z_t: torch.Tensor, tokens: torch.Tensor, obj: Objective,
                   weight: torch.Tensor | float) -> OPDLoss:
    """Full-logits reference: the same objective through ordinary autograd."""
    weight = _weights(weight, z_s.shape[0], z_s.device)
    # autograd flows through logp
    logp, logq, support = log_probs(z_s, z_t.detach(), obj.teacher_temperature, obj.student_temperature)
    adv = None
    if obj.kind == "full":
        per_position = (logp.exp() * (logp - logq)).sum(-1)
    else:
        with torch.no_grad():
            adv, s = advantage(logp, logq, tokens, obj, support)
        ratio = torch.exp(torch.where(s, logp - logp.detach(), 0.0))
        pg = torch.maximum(-adv * ratio, -adv * ratio.clamp(1 - obj.clip, 1 + obj.clip))
        pg = torch.where((adv < 0) & (-adv * obj.dual_clip < pg), -adv * obj.dual_clip, pg)
        per_position = torch.where(s, pg, 0.0).sum(-1)
    loss = (per_position * weight).sum()
    with torch.no_grad():
        m = metric_sums(logp.detach(), logq, tokens, obj, adv)
        reward = (logq.gather(-1, tokens[:, None]) - logp.detach().gather(-1, tokens[:, None]))[:, 0]
    vec = torch.stack([m[k].to(logp) for k in SUMS])
    return _pack(loss, vec, reward, z_s.shape[0])


def _chunk_nll(h: torch.Tensor, w: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy((h @ w.T).float(), targets, reduction="sum")


def chunked_nll(h: torch.Tensor, w: torch.Tensor, targets: torch.Tensor, chunk_size: int = 1024) -> torch.Tensor:
    """Summed next-token negative log-likelihood from hidden states ``h`` (N, d) and the
    LM-head weight ``w`` (V, d), one chunk of positions at a time. Each chunk's logits are
    recomputed in the backward (activation checkpointing), so no (N x V) tensor exists:
    the SFT cold start's 28K-token micro-batches would otherwise hold several 17 GB ones."""
    from torch.utils.checkpoint import checkpoint

    total = torch.zeros((), dtype=torch.float32, device=h.device)
    for start in range(0, h.shape[0], chunk_size):
        sl = slice(start, start + chunk_size)
        total = total + checkpoint(_chunk_nll, h[sl], w, targets[sl], use_reentrant=False)
    return total
