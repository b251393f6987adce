"""OPD objectives, aggregation and metrics against brute-force references written from the
paper's released code's definitions (PAPER.md, "The released code's definitions")."""

import math

import pytest
import torch

from opd.losses import chunk_terms, chunked_nll, naive_opd_loss, opd_loss
from opd.objective import LOSS_AGG_MODES, METRICS, Objective, metric_means, position_weights, ppo_surrogate
from opd.sparse_terms import SPARSE_MAX_K


def topk(values, k):
    return set(values.topk(min(k, values.shape[0])).indices.tolist())


def brute_advantage(lp, lq, y, obj: Objective) -> dict[int, float]:
    """A(t, v) for the v in S_t at one position, from Python sets."""
    if obj.kind == "sampled":
        return {y: float(lq[y] - lp[y])}
    sp, sq = topk(lp, obj.k), topk(lq, obj.k)
    s = {"student": sp, "teacher": sq, "intersection": sp & sq, "union": sp | sq,
         "non_overlap": sp ^ sq}[obj.topk_set]  # non-overlap: in exactly one of the two
    if obj.weights == "none":
        base = {v: 1.0 for v in s}
    else:
        lw = lp if obj.weights == "student_p" else lq
        base = {v: math.exp(float(lw[v])) for v in s}
    if obj.topk_set != "non_overlap":  # renormalised over S_t (uniform 1/|S_t| for none)
        z = sum(base.values())
        base = {v: b / z for v, b in base.items()}
    return {v: base[v] * float(lq[v] - lp[v]) for v in s}


def brute_force(z_s, z_t, tokens, obj: Objective, lengths, max_len=None):
    """Loop over sequences and positions; the loss aggregated as the released code's
    ``agg_loss`` over the whole batch; the gradient by autograd."""
    z_s = z_s.detach().double().requires_grad_(True)
    metrics = dict.fromkeys(METRICS, 0.0)
    counts = dict.fromkeys(("inter", "only_stu", "only_tch", "overlap"), 0)
    seq_losses, t = [], 0
    for n in lengths:
        per_token = []
        for _ in range(n):
            logp = (z_s[t] / obj.student_temperature).log_softmax(-1)  # the rollouts' distribution
            lq = (z_t[t].double() / obj.teacher_temperature).log_softmax(-1)
            lp = logp.detach()
            y = int(tokens[t])
            if obj.kind == "full":
                per_token.append((logp.exp() * (logp - lq)).sum())
                mk = obj.metrics_k
                adv = brute_advantage(lp, lq, y, Objective(k=mk))
                ak = mk
            else:
                adv = brute_advantage(lp, lq, y, obj)
                # ratio exp(logp - old) is 1 here, so neither clip is active
                per_token.append(sum(-a * torch.exp(logp[v] - lp[v]) for v, a in adv.items()))
                ak = obj.k if obj.kind == "topk" else obj.metrics_k
                if obj.kind == "sampled":
                    adv = brute_advantage(lp, lq, y, Objective(k=obj.metrics_k))
            mk = min(obj.metrics_k, lp.shape[0])
            sp, sq = topk(lp, mk), topk(lq, mk)
            both = sp & sq
            p, q = lp.exp(), lq.exp()
            metrics["overlap_ratio"] += len(both) / mk
            for name, probs in (("student", p), ("teacher", q)):
                metrics[f"overlap_mass_{name}"] += float(sum(probs[v] for v in both))
                metrics[f"{name}_p_sum_intersection"] += float(sum(probs[v] for v in both))
            counts["overlap"] += bool(both)
            ap, aq = topk(lp, ak), topk(lq, ak)
            for region, members in (("inter", ap & aq), ("only_stu", ap - aq), ("only_tch", aq - ap)):
                key = "adv_intersection" if region == "inter" else f"adv_{region}"
                metrics[key] += sum(adv.get(v, 0.0) for v in members)
                counts[region] += len(members)
            hp, hq = float(-(p * lp).sum()), float(-(q * lq).sum())
            metrics["entropy_student"] += hp
            metrics["entropy_teacher"] += hq
            metrics["entropy_gap"] += abs(hq - hp)
            metrics["reverse_kl"] += float((p * (lp - lq)).sum())
            metrics["sampled_reward"] += float(lq[y] - lp[y])
            t += 1
        seq_losses.append(per_token)
    filled = [s for s in seq_losses if s]
    mode = obj.loss_agg_mode
    if mode == "token-mean":
        loss = sum(sum(s) for s in filled) / sum(len(s) for s in filled)
    elif mode == "seq-mean-token-sum":
        loss = sum(sum(s) for s in filled) / len(filled)
    elif mode == "seq-mean-token-mean":
        loss = sum(sum(s) / len(s) for s in filled) / len(filled)
    else:  # DrGRPO: every sequence's sum over the constant padded length, averaged over the batch
        loss = sum(sum(s) / max_len for s in seq_losses) / len(seq_losses)
    loss.backward()
    positions = sum(lengths)
    means = {}
    for m in METRICS:
        den = {"overlap_ratio": positions, "adv_intersection": counts["inter"], "adv_only_stu": counts["only_stu"],
               "adv_only_tch": counts["only_tch"], "student_p_sum_intersection": counts["overlap"],
               "teacher_p_sum_intersection": counts["overlap"]}.get(m, positions)
        means[m] = metrics[m] / den if den else None
    return float(loss.detach()), z_s.grad.float(), means


OBJECTIVES = [
    Objective("topk", k=4),
    Objective("topk", k=4, topk_set="teacher"),
    Objective("topk", k=4, topk_set="intersection"),
    Objective("topk", k=4, topk_set="union", weights="teacher_p"),
    Objective("topk", k=4, topk_set="union", weights="none"),
    Objective("topk", k=4, topk_set="non_overlap"),
    Objective("topk", k=4, topk_set="non_overlap", weights="none"),
    Objective("topk", k=4, topk_set="non_overlap", weights="teacher_p"),
    Objective("topk", k=4, weights="none"),
    Objective("topk", k=1),
    Objective("topk", k=8, metrics_k=4),
    Objective("sampled"),
    Objective("full"),
    Objective("topk", k=4, teacher_temperature=0.5),
    *(Objective("topk", k=4, student_temperature=t) for t in (0.6, 0.8, 1.3)),  # the rollout temperature
    Objective("topk", k=4, topk_set="union", weights="teacher_p", student_temperature=0.8, teacher_temperature=0.7),
    Objective("sampled", student_temperature=0.8),
    Objective("full", student_temperature=0.8),
    *(Objective("topk", k=4, loss_agg_mode=m) for m in LOSS_AGG_MODES[1:]),
    Objective("sampled", loss_agg_mode="seq-mean-token-mean"),
    Objective("full", loss_agg_mode="seq-mean-token-sum"),
]


def random_case(n=9, d=6, vocab=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    h_s = torch.randn(n, d, generator=g)
    w_s = torch.randn(vocab, d, generator=g)
    h_t = torch.randn(n, d + 2, generator=g)
    w_t = torch.randn(vocab, d + 2, generator=g)
    tokens = torch.randint(0, vocab, (n,), generator=g)
    return h_s, w_s, h_t, w_t, tokens


LENGTHS = [3, 0, 5, 1]  # one rollout with an empty response
MAX_LEN = 6


def weights_for(lengths, obj, all_lengths=LENGTHS):
    return position_weights(lengths, obj.loss_agg_mode, sum(all_lengths), sum(n > 0 for n in all_lengths),
                            len(all_lengths), MAX_LEN)


def objective_id(o):
    return (f"{o.kind}-{o.k}-{o.topk_set}-{o.weights}-{o.teacher_temperature}-s{o.student_temperature}"
            f"-m{o.metrics_k}-{o.loss_agg_mode}")


@pytest.mark.parametrize("obj", OBJECTIVES, ids=objective_id)
def test_chunked_and_naive_match_brute_force(obj):
    h_s, w_s, h_t, w_t, tokens = random_case()
    if obj.metrics_k == 16:
        obj = Objective(**{**obj.__dict__, "metrics_k": 4})
    z_t = h_t @ w_t.T
    ref_loss, ref_grad_z, ref_metrics = brute_force(h_s @ w_s.T, z_t, tokens, obj, LENGTHS, MAX_LEN)
    weight = weights_for(LENGTHS, obj)

    z_s = (h_s @ w_s.T).requires_grad_(True)
    naive = naive_opd_loss(z_s, z_t, tokens, obj, weight)
    naive.loss.backward()
    assert naive.loss.item() == pytest.approx(ref_loss, rel=1e-4, abs=1e-6)
    assert torch.allclose(z_s.grad, ref_grad_z, atol=1e-5)

    hs, ws = h_s.clone().requires_grad_(True), w_s.clone().requires_grad_(True)
    chunked = opd_loss(hs, ws, h_t, w_t, tokens, obj, weight, chunk_size=4)
    chunked.loss.backward()
    assert chunked.loss.item() == pytest.approx(ref_loss, rel=1e-4, abs=1e-6)
    assert torch.allclose(hs.grad, ref_grad_z @ w_s, atol=1e-5)
    assert torch.allclose(ws.grad, ref_grad_z.T @ h_s, atol=1e-5)
    for out in (chunked, naive):
        means = metric_means(out.metric_sums)
        for name in METRICS:
            if ref_metrics[name] is None:
                assert means[name] is None, name
            else:
                assert means[name] == pytest.approx(ref_metrics[name], rel=1e-4, abs=1e-5), name


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_step_loss_does_not_depend_on_micro_batches_or_ranks(mode):
    """Sequences split over 2 ranks and micro-batches of 1 or 2 give the whole batch's loss
    and gradient."""
    obj = Objective(k=4, loss_agg_mode=mode)
    h_s, w_s, h_t, w_t, tokens = random_case()
    whole_h = h_s.clone().requires_grad_(True)
    whole = opd_loss(whole_h, w_s, h_t, w_t, tokens, obj, weights_for(LENGTHS, obj))
    whole.loss.backward()
    starts = [sum(LENGTHS[:i]) for i in range(len(LENGTHS) + 1)]
    for groups in ([[0, 1], [2, 3]], [[0], [1], [2], [3]], [[0, 2], [1, 3]]):  # rank 0 | rank 1 | ...
        parts_h = h_s.clone().requires_grad_(True)
        total = 0.0
        for seqs in groups:
            idx = torch.cat([torch.arange(starts[i], starts[i + 1]) for i in seqs])
            out = opd_loss(parts_h[idx], w_s, h_t[idx], w_t, tokens[idx], obj,
                           weights_for([LENGTHS[i] for i in seqs], obj))
            out.loss.backward()
            total += out.loss.item()
        assert total == pytest.approx(whole.loss.item(), rel=1e-5)
        assert torch.allclose(parts_h.grad, whole_h.grad, atol=1e-6)


def test_position_weights_by_hand():
    lengths = [2, 0, 4]
    tm = position_weights(lengths, "token-mean", 6, 2, 3, 10)
    assert tm.tolist() == pytest.approx([1 / 6] * 6)
    assert position_weights(lengths, "seq-mean-token-sum", 6, 2, 3, 10).tolist() == pytest.approx([1 / 2] * 6)
    assert position_weights(lengths, "seq-mean-token-mean", 6, 2, 3, 10).tolist() == pytest.approx(
        [1 / 4] * 2 + [1 / 8] * 4)
    assert position_weights(lengths, "seq-mean-token-sum-norm", 6, 2, 3, 10).tolist() == pytest.approx([1 / 30] * 6)
    assert position_weights([0, 0], "token-mean", 0, 0, 2, 10).numel() == 0
    with pytest.raises(ValueError, match="loss_agg_mode"):
        position_weights(lengths, "sum", 6, 2, 3, 10)


def test_non_overlap_is_the_symmetric_difference_with_raw_probabilities():
    """By hand at V = 4, k = 2: student top-2 {0, 1}, teacher top-2 {1, 2}; S = {0, 2}."""
    logp = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    logq = torch.tensor([[0.1, 0.4, 0.4, 0.1]]).log()
    obj = Objective(k=2, topk_set="non_overlap", metrics_k=2)
    out = naive_opd_loss(logp.clone().requires_grad_(True), logq, torch.tensor([0]), obj, 1.0)
    # A(0) = 0.5 (log 0.1 - log 0.5), A(2) = 0.15 (log 0.4 - log 0.15); loss = -sum A
    expected = -(0.5 * math.log(0.1 / 0.5) + 0.15 * math.log(0.4 / 0.15))
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    means = metric_means(out.metric_sums)
    assert means["adv_intersection"] == 0.0  # token 1 is in both sets, not in S
    assert means["adv_only_stu"] == pytest.approx(0.5 * math.log(0.1 / 0.5), rel=1e-5)
    assert means["adv_only_tch"] == pytest.approx(0.15 * math.log(0.4 / 0.15), rel=1e-5)
    none = naive_opd_loss(logp, logq, torch.tensor([0]), Objective(k=2, topk_set="non_overlap", weights="none"), 1.0)
    assert none.loss.item() == pytest.approx(-(math.log(0.1 / 0.5) + math.log(0.4 / 0.15)), rel=1e-5)


def test_uniform_weights_are_one_over_the_set_size():
    logp = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    logq = torch.tensor([[0.1, 0.4, 0.4, 0.1]]).log()
    out = naive_opd_loss(logp, logq, torch.tensor([0]), Objective(k=2, weights="none"), 1.0)
    assert out.loss.item() == pytest.approx(-(math.log(0.1 / 0.5) + math.log(0.4 / 0.3)) / 2, rel=1e-5)


def test_large_vocabulary_matches_naive():
    """Qwen's 151,936-token vocabulary, with the teacher's head padded larger."""
    vocab = 151_936
    h_s, w_s, h_t, w_t, tokens = random_case(n=5, d=8, vocab=vocab, seed=1)
    w_t = torch.cat([w_t, torch.randn(64, w_t.shape[1])])  # padded rows are never used
    for obj in (Objective("topk", k=16), Objective("sampled"), Objective("full")):
        z_s = (h_s @ w_s.T).requires_grad_(True)
        naive = naive_opd_loss(z_s, h_t @ w_t[:vocab].T, tokens, obj, 1 / 5)
        naive.loss.backward()
        hs, ws = h_s.clone().requires_grad_(True), w_s.clone().requires_grad_(True)
        chunked = opd_loss(hs, ws, h_t, w_t, tokens, obj, 1 / 5, chunk_size=2)
        chunked.loss.backward()
        assert chunked.loss.item() == pytest.approx(naive.loss.item(), rel=1e-4, abs=1e-6)
        assert torch.allclose(hs.grad, z_s.grad @ w_s, atol=1e-5, rtol=1e-3)
        assert torch.allclose(ws.grad, z_s.grad.T @ h_s, atol=1e-6, rtol=1e-3)
        for name, value in metric_means(naive.metric_sums).items():
            assert metric_means(chunked.metric_sums)[name] == pytest.approx(value, rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("obj", [Objective("topk", k=300, topk_set="union"), Objective("topk", k=8, metrics_k=300),
                                 Objective("sampled", metrics_k=300),
                                 Objective("topk", k=300, topk_set="union", student_temperature=0.8)])
def test_sets_above_the_sparse_limit_take_the_dense_path_and_match_naive(obj):
    """k or metrics_k above SPARSE_MAX_K: the sets as vocabulary masks, same values."""
    vocab = 600
    assert max(obj.k, obj.metrics_k) > SPARSE_MAX_K
    h_s, w_s, h_t, w_t, tokens = random_case(n=6, d=8, vocab=vocab, seed=3)
    z_s = (h_s @ w_s.T).requires_grad_(True)
    naive = naive_opd_loss(z_s, h_t @ w_t.T, tokens, obj, 1 / 6)
    naive.loss.backward()
    hs = h_s.clone().requires_grad_(True)
    chunked = opd_loss(hs, w_s, h_t, w_t, tokens, obj, 1 / 6, chunk_size=4)
    chunked.loss.backward()
    assert chunked.loss.item() == pytest.approx(naive.loss.item(), rel=1e-4, abs=1e-6)
    assert torch.allclose(hs.grad, z_s.grad @ w_s, atol=1e-5, rtol=1e-3)
    for name, value in metric_means(naive.metric_sums).items():
        assert metric_means(chunked.metric_sums)[name] == pytest.approx(value, rel=1e-4, abs=1e-5), name


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


def test_identical_teacher_gives_zero_loss_and_full_overlap():
    h_s, w_s, _, _, tokens = random_case()
    out = opd_loss(h_s.requires_grad_(True), w_s, h_s.detach(), w_s, tokens, Objective(k=4, metrics_k=4), 1 / 9)
    out.loss.backward()
    assert out.loss.item() == pytest.approx(0.0, abs=1e-6)
    assert h_s.grad.abs().max().item() < 1e-6
    assert metric_means(out.metric_sums)["overlap_ratio"] == pytest.approx(1.0)
    assert out.metric_sums["reverse_kl"] == pytest.approx(0.0, abs=1e-5)


def test_k_above_the_vocabulary_is_the_whole_vocabulary():
    """V = 10 with k = 16: an identical teacher overlaps fully (not 10/16)."""
    h_s, w_s, _, _, tokens = random_case(vocab=10)
    out = opd_loss(h_s, w_s, h_s, w_s, tokens, Objective(k=16, metrics_k=16), 1 / 9)
    assert metric_means(out.metric_sums)["overlap_ratio"] == pytest.approx(1.0)
    full = opd_loss(h_s, w_s, h_s, w_s, tokens, Objective(k=100_000, metrics_k=100_000), 1 / 9)
    assert metric_means(full.metric_sums)["overlap_ratio"] == pytest.approx(1.0)


@pytest.mark.parametrize("obj", [Objective(k=4), Objective(k=16, weights="teacher_p"), Objective("sampled"),
                                 Objective("full"), Objective(k=4, topk_set="non_overlap")], ids=objective_id)
def test_masked_logits_give_finite_loss_and_gradients(obj):
    """-inf logits (masked vocabulary entries) in both models, more of them than the vocabulary
    has left beyond k: no NaN, and the masked entries get no gradient."""
    z_s = torch.randn(5, 20, generator=torch.Generator().manual_seed(3))
    z_t = torch.randn(5, 20, generator=torch.Generator().manual_seed(4))
    z_s[:, 12:] = -torch.inf
    z_t[:, 14:] = -torch.inf
    z_t[:, 3] = -torch.inf  # the teacher rules out a token the student can sample
    tokens = torch.tensor([0, 1, 2, 4, 5])
    z = z_s.clone().requires_grad_(True)
    out = naive_opd_loss(z, z_t, tokens, obj, 1 / 5)
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(z.grad).all()
    assert (z.grad[:, 12:] == 0).all()
    assert all(v is None or math.isfinite(v) for v in metric_means(out.metric_sums).values())
    loss, grad_z, _, _ = chunk_terms(z_s, z_t, tokens, obj, torch.full((5,), 1 / 5))  # the chunked path's math
    assert loss.item() == pytest.approx(out.loss.item(), rel=1e-4, abs=1e-6)
    assert torch.allclose(grad_z, z.grad, atol=1e-5, rtol=1e-4)


def test_an_all_padding_step_gives_zero_loss_not_nan():
    w_s, w_t = torch.randn(30, 6), torch.randn(30, 8)
    h = torch.zeros(0, 6, requires_grad=True)
    for mode in LOSS_AGG_MODES:
        obj = Objective(loss_agg_mode=mode)
        out = opd_loss(h, w_s, torch.zeros(0, 8), w_t, torch.zeros(0, dtype=torch.long), obj,
                       position_weights([0, 0], mode, 0, 0, 2, 8))
        out.loss.backward()
        assert out.loss.item() == 0.0
        assert all(v is None for v in metric_means(out.metric_sums).values())


def test_the_student_is_scored_at_its_rollout_temperature():
    """At T != 1 the loss is that of the logits over T (the released code's ``logits.div_(temperature)``),
    not of the raw logits; its gradient with respect to the raw logits carries the 1/T."""
    h_s, w_s, h_t, w_t, tokens = random_case()
    z_s, z_t = h_s @ w_s.T, h_t @ w_t.T
    for obj in (Objective("topk", k=4, metrics_k=4), Objective("sampled", metrics_k=4)):
        tempered = Objective(**{**obj.__dict__, "student_temperature": 0.8})
        raw = naive_opd_loss(z_s, z_t, tokens, obj, 1 / 9).loss.item()
        z = z_s.clone().requires_grad_(True)
        at_t = naive_opd_loss(z, z_t, tokens, tempered, 1 / 9)
        at_t.loss.backward()
        assert abs(at_t.loss.item() - raw) > 1e-3  # the temperature matters
        zt = (z_s / 0.8).requires_grad_(True)  # the same loss from logits divided beforehand
        same = naive_opd_loss(zt, z_t, tokens, obj, 1 / 9)
        same.loss.backward()
        assert at_t.loss.item() == pytest.approx(same.loss.item(), rel=1e-6)
        assert torch.allclose(z.grad, zt.grad / 0.8, atol=1e-7)


def test_invalid_objectives_are_rejected():
    with pytest.raises(ValueError, match="kind"):
        Objective(kind="forward_kl")
    with pytest.raises(ValueError, match="topk_set"):
        Objective(topk_set="both")
    with pytest.raises(ValueError, match="k >= 1"):
        Objective(kind="topk", k=0)
    with pytest.raises(ValueError, match="loss_agg_mode"):
        Objective(loss_agg_mode="sum")
    with pytest.raises(ValueError, match="temperature must be > 0"):
        Objective(student_temperature=0.0)


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_chunked_nll_matches_full_cross_entropy(chunk):
    g = torch.Generator().manual_seed(0)
    h = torch.randn(23, 8, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(50, 8, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 50, (23,), generator=g)
    full = torch.nn.functional.cross_entropy(h @ w.T, targets, reduction="sum")
    want = torch.autograd.grad(full, (h, w))
    got = chunked_nll(h, w, targets, chunk)
    assert torch.allclose(got, full.float())
    for a, b in zip(torch.autograd.grad(got, (h, w)), want):
        assert torch.allclose(a, b, atol=1e-5)
