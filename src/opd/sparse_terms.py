"""The OPD terms of a chunk of positions with the top-k sets as token ids, not vocabulary
masks: at most 2k ids a position, so the PPO surrogate, the set weights, the advantages and
the advantage metrics cost C x k work, and the vocabulary-wide work is the two
log-softmaxes, the top-k searches, the entropies and the reverse KL. Used by
``opd.losses.chunk_terms`` for k up to ``SPARSE_MAX_K``; tested against the dense path and
the brute-force reference.
"""

from __future__ import annotations

import torch

from .objective import LOG_FLOOR, Objective, ppo_surrogate, shared_sums

SPARSE_MAX_K = 256  # membership tests between sets cost C x m x m


def _member(ids: torch.Tensor, of: torch.Tensor) -> torch.Tensor:
    """(C, m): whether each of ``ids`` (C, m) is among ``of`` (C, n), row by row."""
    return (ids[:, :, None] == of[:, None, :]).any(-1)


def _sparse_set(top_p, top_q, tokens, obj: Objective):
    """S_t as (C, m) token ids and which of them count (union and non-overlap list both
    top-k sets and drop the duplicates or the shared ones)."""
    if obj.kind == "sampled":
        ids = tokens[:, None]
        return ids, torch.ones_like(ids, dtype=torch.bool)
    if obj.topk_set in ("student", "teacher", "intersection"):
        ids = top_q if obj.topk_set == "teacher" else top_p
        keep = _member(top_p, top_q) if obj.topk_set == "intersection" else torch.ones_like(ids, dtype=torch.bool)
        return ids, keep
    p_in_q, q_in_p = _member(top_p, top_q), _member(top_q, top_p)
    keep_p = torch.ones_like(p_in_q) if obj.topk_set == "union" else ~p_in_q
    return torch.cat([top_p, top_q], -1), torch.cat([keep_p, ~q_in_p], -1)


def _sparse_advantage(logp, logq, ids, keep, obj: Objective):
    """A(t, v) = w_v (log q - log p) at ``ids`` (0 where not kept), as in :func:`advantage`."""
    lp, lq = logp.gather(-1, ids), logq.gather(-1, ids)
    if obj.kind == "sampled":
        w = keep.float()
    else:
        base = {"student_p": lp, "teacher_p": lq, "none": torch.zeros_like(lp)}[obj.weights]
        base = torch.where(keep, base, -torch.inf)
        if obj.topk_set != "non_overlap":
            base = base - base.logsumexp(-1, keepdim=True)  # an empty S_t gives NaN, zeroed below
        w = torch.where(keep, base.exp(), 0.0)
    return torch.where(keep, w * (lq - lp), 0.0), lp


def _advantage_at(cand, ids, keep, adv):
    """The advantage at token ids ``cand`` (C, c): A at the matching kept id of S_t, else 0."""
    match = (cand[:, :, None] == ids[:, None, :]) & keep[:, None, :]
    return torch.where(match, adv[:, None, :], 0.0).sum(-1)


def _top_ids(x: torch.Tensor, k: int) -> torch.Tensor:
    return x.topk(min(k, x.shape[-1]), dim=-1).indices


def sparse_terms(z_s, z_t, tokens, obj: Objective, weight):
    """:func:`opd.losses.chunk_terms` with the sets as token ids: the vocabulary-wide work is the two
    log-softmaxes, the top-k searches, the entropies and the reverse KL."""
    logp = z_s.float().log_softmax(-1).clamp_min_(LOG_FLOOR)
    zt = z_t.float() if obj.teacher_temperature == 1.0 else z_t.float() / obj.teacher_temperature
    logq = zt.log_softmax(-1).clamp_min_(LOG_FLOOR)
    p, q = logp.exp(), logq.exp()
    weight = weight.to(logp)
    km = min(obj.metrics_k, logp.shape[-1])
    top_p, top_q = _top_ids(logp, km), _top_ids(logq, km)
    if obj.kind == "topk" and min(obj.k, logp.shape[-1]) != km:
        train_p, train_q = _top_ids(logp, obj.k), _top_ids(logq, obj.k)
    else:
        train_p, train_q = top_p, top_q
    plogp, plogq = (p * logp).sum(-1), (p * logq).sum(-1)
    if obj.kind == "full":
        kl = plogp - plogq
        loss = (kl * weight).sum()
        grad_z = p * (logp - logq - kl[:, None]) * weight[:, None]
        # the advantage metrics: the default objective's (student top-km, student_p; no support mask)
        ids, keep = top_p, torch.ones_like(top_p, dtype=torch.bool)
        adv, _ = _sparse_advantage(logp, logq, ids, keep, Objective(k=km))
    else:
        ids, keep = _sparse_set(train_p, train_q, tokens, obj)
        keep = keep & (z_s.gather(-1, ids) > -torch.inf)  # never a token the student masks out
        adv, lp = _sparse_advantage(logp, logq, ids, keep, obj)
        # one update per rollout batch: the rollout policy is the current one (ratio 1)
        per_pair, grad_lp = ppo_surrogate(lp, lp, adv, obj.clip, obj.dual_clip)
        loss = (torch.where(keep, per_pair, 0.0).sum(-1) * weight).sum()
        grad_lp = torch.where(keep, grad_lp, 0.0) * weight[:, None]
        # d log p(v) / d z_u = [u = v] - p(u)
        grad_z = (-p * grad_lp.sum(-1, keepdim=True)).scatter_add_(-1, ids, grad_lp)
        if obj.kind == "sampled":  # advantage metrics: the default objective's, as for full
            ids, keep = top_p, torch.ones_like(top_p, dtype=torch.bool)
            adv, _ = _sparse_advantage(logp, logq, ids, keep, Objective(k=km))
            train_p, train_q = top_p, top_q
    both = _member(top_p, top_q)
    mass_p = torch.where(both, p.gather(-1, top_p), 0.0).sum()
    mass_q = torch.where(both, q.gather(-1, top_p), 0.0).sum()
    h_p, h_q = -plogp, -(q * logq).sum(-1)
    sampled = tokens[:, None]
    reward = logq.gather(-1, sampled)[:, 0] - logp.gather(-1, sampled)[:, 0]
    sums = shared_sums(both, km, mass_p, mass_q, h_p, h_q, (plogp - plogq).sum(), reward.sum())
    p_in_q, q_in_p = _member(train_p, train_q), _member(train_q, train_p)
    adv_p, adv_q = _advantage_at(train_p, ids, keep, adv), _advantage_at(train_q, ids, keep, adv)
    for name, values, mask in (("intersection", adv_p, p_in_q), ("only_stu", adv_p, ~p_in_q),
                               ("only_tch", adv_q, ~q_in_p)):
        sums[f"adv_{name}"] = torch.where(mask, values, 0.0).sum()
        sums[f"pairs_{name}"] = mask.sum().float()
    return loss, grad_z, sums, reward
