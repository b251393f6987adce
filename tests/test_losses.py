"""OPD objectives and metrics against a brute-force per-position reference."""

import math

import pytest
import torch

from opd.losses import METRICS, Objective, naive_opd_loss, opd_loss, ppo_surrogate


def brute_force(z_s, z_t, tokens, obj: Objective, n_tokens):
    """Loop over positions, sets as Python sets; the gradient by autograd per position."""
    z_s = z_s.detach().double().requires_grad_(True)
    total = 0.0
    metrics = dict.fromkeys(METRICS, 0.0)
    overlap_positions = 0
    for t in range(z_s.shape[0]):
        logp = z_s[t].log_softmax(-1)
        logq = (z_t[t].double() / obj.teacher_temperature).log_softmax(-1)
        lp, lq = logp.detach(), logq
        top_p = set(lp.topk(obj.k).indices.tolist())
        top_q = set(lq.topk(obj.k).indices.tolist())
        if obj.kind == "full":
            total = total + (logp.exp() * (logp - logq)).sum()
        else:
            if obj.kind == "sampled":
                s = {int(tokens[t])}
            else:
                s = {"student": top_p, "teacher": top_q, "intersection": top_p & top_q,
                     "union": top_p | top_q, "non_overlap": top_p - top_q}[obj.topk_set]
            base = {"student_p": lp.exp(), "teacher_p": lq.exp()}.get(obj.weights)
            z = sum(float(base[v]) for v in s) if base is not None and obj.kind != "sampled" else None
            for v in s:
                w = 1.0 if z is None else float(base[v]) / z
                a = w * float(lq[v] - lp[v])
                ratio = torch.exp(logp[v] - lp[v])
                total = total - a * ratio  # ratio is 1: no clipping is active
        mk = obj.metrics_k
        sp, sq = set(lp.topk(mk).indices.tolist()), set(lq.topk(mk).indices.tolist())
        both = sorted(sp & sq)
        p, q = lp.exp(), lq.exp()
        metrics["overlap_ratio"] += len(both) / mk
        metrics["overlap_mass_student"] += float(sum(p[v] for v in both))
        metrics["overlap_mass_teacher"] += float(sum(q[v] for v in both))
        if both:
            overlap_positions += 1
            pz, qz = sum(float(p[v]) for v in both), sum(float(q[v]) for v in both)
            metrics["overlap_token_advantage"] += sum(
                float(p[v]) / pz * (math.log(float(q[v]) / qz) - math.log(float(p[v]) / pz)) for v in both)
        hp, hq = float(-(p * lp).sum()), float(-(q * lq).sum())
        metrics["entropy_student"] += hp
        metrics["entropy_teacher"] += hq
        metrics["entropy_gap"] += abs(hq - hp)
        metrics["reverse_kl"] += float((p * (lp - lq)).sum())
        y = int(tokens[t])
        metrics["sampled_reward"] += float(lq[y] - lp[y])
    loss = total / n_tokens
    loss.backward()
    return float(loss.detach()), z_s.grad.float(), metrics, overlap_positions


OBJECTIVES = [
    Objective("topk", k=4),
    Objective("topk", k=4, topk_set="teacher"),
    Objective("topk", k=4, topk_set="intersection"),
    Objective("topk", k=4, topk_set="union", weights="teacher_p"),
    Objective("topk", k=4, topk_set="non_overlap", weights="none"),
    Objective("topk", k=1),
    Objective("sampled"),
    Objective("full"),
    Objective("topk", k=4, teacher_temperature=0.5),
]


def random_case(n=7, d=6, vocab=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    h_s = torch.randn(n, d, generator=g)
    w_s = torch.randn(vocab, d, generator=g)
    h_t = torch.randn(n, d + 2, generator=g)
    w_t = torch.randn(vocab, d + 2, generator=g)
    tokens = torch.randint(0, vocab, (n,), generator=g)
    return h_s, w_s, h_t, w_t, tokens


@pytest.mark.parametrize("obj", OBJECTIVES, ids=lambda o: f"{o.kind}-{o.k}-{o.topk_set}-{o.weights}-{o.teacher_temperature}")
def test_chunked_and_naive_match_brute_force(obj):
    h_s, w_s, h_t, w_t, tokens = random_case()
    obj = Objective(**{**obj.__dict__, "metrics_k": 4})
    z_t = h_t @ w_t.T
    ref_loss, ref_grad_z, ref_metrics, ref_overlap = brute_force(h_s @ w_s.T, z_t, tokens, obj, n_tokens=11)

    z_s = (h_s @ w_s.T).requires_grad_(True)
    naive = naive_opd_loss(z_s, z_t, tokens, obj, n_tokens=11)
    naive.loss.backward()
    assert naive.loss.item() == pytest.approx(ref_loss, rel=1e-4, abs=1e-6)
    assert torch.allclose(z_s.grad, ref_grad_z, atol=1e-5)

    hs, ws = h_s.clone().requires_grad_(True), w_s.clone().requires_grad_(True)
    chunked = opd_loss(hs, ws, h_t, w_t, tokens, obj, n_tokens=11, chunk_size=3)
    chunked.loss.backward()
    assert chunked.loss.item() == pytest.approx(ref_loss, rel=1e-4, abs=1e-6)
    assert torch.allclose(hs.grad, ref_grad_z @ w_s, atol=1e-5)
    assert torch.allclose(ws.grad, ref_grad_z.T @ h_s, atol=1e-5)
    for name in METRICS:
        assert chunked.metric_sums[name] == pytest.approx(ref_metrics[name], rel=1e-4, abs=1e-5), name
        assert naive.metric_sums[name] == pytest.approx(ref_metrics[name], rel=1e-4, abs=1e-5), name
    assert chunked.metric_sums["overlap_positions"] == ref_overlap


def test_large_vocabulary_matches_naive():
    """Qwen's 151,936-token vocabulary, with the teacher's head padded larger."""
    vocab = 151_936
    h_s, w_s, h_t, w_t, tokens = random_case(n=5, d=8, vocab=vocab, seed=1)
    w_t = torch.cat([w_t, torch.randn(64, w_t.shape[1])])  # padded rows are never used
    for obj in (Objective("topk", k=16), Objective("sampled"), Objective("full")):
        z_s = (h_s @ w_s.T).requires_grad_(True)
        naive = naive_opd_loss(z_s, h_t @ w_t[:vocab].T, tokens, obj, n_tokens=5)
        naive.loss.backward()
        hs, ws = h_s.clone().requires_grad_(True), w_s.clone().requires_grad_(True)
        chunked = opd_loss(hs, ws, h_t, w_t, tokens, obj, n_tokens=5, chunk_size=2)
        chunked.loss.backward()
        assert chunked.loss.item() == pytest.approx(naive.loss.item(), rel=1e-4, abs=1e-6)
        assert torch.allclose(hs.grad, z_s.grad @ w_s, atol=1e-5, rtol=1e-3)
        assert torch.allclose(ws.grad, z_s.grad.T @ h_s, atol=1e-6, rtol=1e-3)
        for name in METRICS:
            assert chunked.metric_sums[name] == pytest.approx(naive.metric_sums[name], rel=1e-4, abs=1e-5)


def test_ppo_surrogate_gradient_matches_autograd_in_every_branch():
    g = torch.Generator().manual_seed(0)
    logp = torch.randn(400, generator=g).requires_grad_(True)
    old = (logp.detach() + torch.randn(400, generator=g) * 0.8)
    adv = torch.randn(400, generator=g) * 2
    loss, grad = ppo_surrogate(logp.detach(), old, adv, clip=0.2, dual_clip=3.0)
    ratio = torch.exp(logp - old)
    pg = torch.maximum(-adv * ratio, -adv * ratio.clamp(0.8, 1.2))
    pg = torch.where(adv < 0, torch.minimum(pg, -adv * 3.0), pg)
    pg.sum().backward()
    assert torch.allclose(loss, pg.detach(), atol=1e-6)
    assert torch.allclose(grad, logp.grad, atol=1e-6)
    r = ratio.detach()
    assert ((r > 1.2) & (adv > 0)).any() and ((r < 0.8) & (adv < 0)).any()  # clipped branches hit
    assert (-adv * r > -adv * 3.0).logical_and(adv < 0).any()  # dual clip hit


def test_loss_is_normalised_by_the_step_token_count():
    h_s, w_s, h_t, w_t, tokens = random_case()
    one = opd_loss(h_s, w_s, h_t, w_t, tokens, Objective(), n_tokens=7).loss
    two = opd_loss(h_s, w_s, h_t, w_t, tokens, Objective(), n_tokens=14).loss
    assert one.item() == pytest.approx(2 * two.item())


def test_identical_teacher_gives_zero_loss_and_full_overlap():
    h_s, w_s, _, _, tokens = random_case()
    out = opd_loss(h_s.requires_grad_(True), w_s, h_s.detach(), w_s, tokens, Objective(k=4, metrics_k=4),
                   n_tokens=7)
    out.loss.backward()
    assert out.loss.item() == pytest.approx(0.0, abs=1e-6)
    assert h_s.grad.abs().max().item() < 1e-6
    assert out.metric_sums["overlap_ratio"] / out.positions == pytest.approx(1.0)
    assert out.metric_sums["reverse_kl"] == pytest.approx(0.0, abs=1e-5)


def test_invalid_objectives_are_rejected():
    with pytest.raises(ValueError, match="kind"):
        Objective(kind="forward_kl")
    with pytest.raises(ValueError, match="topk_set"):
        Objective(topk_set="both")
    with pytest.raises(ValueError, match="k >= 1"):
        Objective(kind="topk", k=0)
