#!/usr/bin/env python
"""How far the released code's token-mean is from this project's, at the paper's micro-batching.

The released code (verl with ``use_dynamic_bsz``) splits each GPU's share of the step (64 x 4
rollouts over 8 GPUs: 32 sequences) into micro-batches of at most 32,768 prompt + response
tokens, balanced by workload, takes each micro-batch's own token-mean and scales it by the
micro-batch's share of the GPU's sequences; the ranks' gradients are then averaged. A response
token of micro-batch m thus weighs n_m / (256 R_m) (n_m sequences, R_m response tokens), where
this project weighs every token 1 / R (R: the step's response tokens): the ratio is the step's
mean response length over the micro-batch's. Prints, for a few length distributions, how the
weights spread (token-weighted quantiles of that ratio), the total variation between the two
weightings (the share of the step's weight that moves) and the weight the truncated responses
get under each. Standard library only; seeded.

    python scripts/bench_token_mean.py [--steps 200]
"""

import argparse
import math
import random
import statistics

GPUS, PER_GPU, MAX_TOKENS, LIMIT = 8, 32, 32_768, 7_168


def workload(length: int) -> int:
    """The balancing key verl uses for a sequence of ``length`` tokens (a dense layer's FLOPs
    up to a constant: linear terms plus attention's square)."""
    return 24_576 * length + length * length


def balanced(lengths: list[int], parts: int) -> list[list[int]]:
    """Indices split into ``parts`` groups of near-equal workload: longest first, each to the
    lightest group (an approximation of verl's Karmarkar-Karp partition)."""
    groups: list[list[int]] = [[] for _ in range(parts)]
    loads = [0] * parts
    for i in sorted(range(len(lengths)), key=lambda i: -workload(lengths[i])):
        g = loads.index(min(loads))
        groups[g].append(i)
        loads[g] += workload(lengths[i])
    return [g for g in groups if g]


def step_weights(prompts: list[list[int]], responses: list[list[int]]) -> tuple[list[float], list[int]]:
    """Per rollout, its tokens' weight under the released code's aggregation divided by the
    step-wide token-mean's (all ranks); and the response lengths, in the same order."""
    total = sum(sum(r) for r in responses)
    ratios, lengths = [], []
    micro = max(math.ceil(sum(p + r for p, r in zip(ps, rs)) / MAX_TOKENS) for ps, rs in zip(prompts, responses))
    for ps, rs in zip(prompts, responses):  # one GPU's 32 rollouts
        for group in balanced([p + r for p, r in zip(ps, rs)], min(micro, len(rs))):
            tokens = sum(rs[i] for i in group)
            for i in group:
                ratios.append((len(group) / (GPUS * PER_GPU * tokens)) * total if tokens else 0.0)
                lengths.append(rs[i])
    return ratios, lengths


def quantiles(ratios: list[float], lengths: list[int]) -> list[float]:
    """Token-weighted 5th, 50th and 95th percentiles of the per-token weight ratio."""
    pairs = sorted(zip(ratios, lengths))
    total, seen, out = sum(lengths), 0, []
    targets = iter((0.05, 0.5, 0.95))
    q = next(targets)
    for ratio, n in pairs:
        seen += n
        while q is not None and seen >= q * total:
            out.append(ratio)
            q = next(targets, None)
    return out


DISTRIBUTIONS = {
    "uniform 200-7,168": lambda rng: rng.randint(200, LIMIT),
    "40% truncated, rest uniform 500-7,168": lambda rng: LIMIT if rng.random() < 0.4 else rng.randint(500, LIMIT),
    "lognormal, median 2,500, truncated": lambda rng: min(LIMIT, max(20, int(rng.lognormvariate(math.log(2500), 0.6)))),
    "narrow: normal 3,000 +- 800": lambda rng: min(LIMIT, max(20, int(rng.gauss(3000, 800)))),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(f"{GPUS} GPUs x {PER_GPU} rollouts, micro-batches of <= {MAX_TOKENS:,} tokens balanced by workload, "
          f"prompts 60-400 tokens; {args.steps} steps each")
    print("| response lengths | micro-batches a GPU | weight ratio p5 / p50 / p95 | weight moved (TV) "
          "| truncated responses' weight: step-wide -> per micro-batch |")
    print("|---|---|---|---|---|")
    for name, draw in DISTRIBUTIONS.items():
        rng = random.Random(args.seed)
        tv, mbs, q, trunc = [], [], [], []
        for _ in range(args.steps):
            prompts = [[rng.randint(60, 400) for _ in range(PER_GPU)] for _ in range(GPUS)]
            responses = [[draw(rng) for _ in range(PER_GPU)] for _ in range(GPUS)]
            ratios, lengths = step_weights(prompts, responses)
            total = sum(lengths)
            tv.append(0.5 * sum(abs(r - 1) * n for r, n in zip(ratios, lengths)) / total)
            mbs.append(max(math.ceil(sum(p + r for p, r in zip(ps, rs)) / MAX_TOKENS)
                           for ps, rs in zip(prompts, responses)))
            q.append(quantiles(ratios, lengths))
            cut = [(r, n) for r, n in zip(ratios, lengths) if n == LIMIT]
            trunc.append((sum(n for _, n in cut) / total, sum(r * n for r, n in cut) / total))
        p5, p50, p95 = (statistics.median(x[i] for x in q) for i in range(3))
        before = statistics.mean(t[0] for t in trunc)
        after = statistics.mean(t[1] for t in trunc)
        print(f"| {name} | {statistics.median(mbs):.0f} | {p5:.3f} / {p50:.3f} / {p95:.3f} "
              f"| {100 * statistics.mean(tv):.1f}% (max {100 * max(tv):.1f}%) | {100 * before:.1f}% -> {100 * after:.1f}% |")


if __name__ == "__main__":
    main()
