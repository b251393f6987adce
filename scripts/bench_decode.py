#!/usr/bin/env python
"""Milliseconds per decoded token of the HF backend's rollouts, with the Qwen decode step
(``opd.rollout.qwen_decode``) and without it (each step through ``model(...)``), taking
turns in one run on the same random tiny Qwen3 (or Qwen2) model, batch and seed; checks
that both sample the same tokens.

    python scripts/bench_decode.py [--family qwen3 --layers 2 --hidden 64 --rows 8 --tokens 64 --rounds 20]
"""
import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch
from transformers import AutoModelForCausalLM, Qwen2Config, Qwen3Config

from opd.rollout import SamplingParams
from opd.rollout.hf import sample


def model(args):
    torch.manual_seed(0)
    shape = dict(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=4 * args.hidden,
                 num_hidden_layers=args.layers, num_attention_heads=args.heads,
                 num_key_value_heads=args.kv_heads or args.heads, max_position_embeddings=4096)
    if args.family == "qwen3":
        config = Qwen3Config(**shape, head_dim=args.hidden // args.heads, tie_word_embeddings=True)
    else:
        config = Qwen2Config(**shape, tie_word_embeddings=False)
    return AutoModelForCausalLM.from_config(config).eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", default="qwen3", choices=["qwen3", "qwen2"])
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=0, help="0: as many as heads")
    ap.add_argument("--vocab", type=int, default=100)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--prompt", type=int, default=26, help="the longest prompt; the others are shorter")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    m = model(args)
    torch.manual_seed(1)
    ids = torch.randint(2, args.vocab, (args.rows, args.prompt))
    mask = torch.ones_like(ids)
    for row in range(args.rows):  # left padding, as the backend batches prompts
        mask[row, : row % 4] = 0
    sampling = SamplingParams(n=1, temperature=1.0, top_p=1.0, max_new_tokens=args.tokens, seed=0)

    def run(with_decoder: bool):
        with contextlib.nullcontext() if with_decoder else mock.patch("opd.rollout.hf.qwen_decoder", lambda *a: None):
            torch.manual_seed(0)
            t0 = time.perf_counter()
            tokens = sample(m, ids, mask, sampling, set(), 0)
            return time.perf_counter() - t0, tokens

    run(True), run(False)  # warm-up
    ours, theirs, ratios = [], [], []
    for _ in range(args.rounds):
        (a, tokens_a), (b, tokens_b) = run(True), run(False)
        assert tokens_a == tokens_b, "the two paths sampled different tokens"
        ours.append(a), theirs.append(b), ratios.append(b / a)
    per_token = 1e3 / args.tokens
    print(f"{args.family}, {args.layers} layers x {args.hidden} ({args.heads} heads, {args.kv_heads or args.heads} "
          f"key/value heads), vocab {args.vocab}, {args.rows} rows x {args.tokens} tokens, {args.threads} threads, "
          f"{args.rounds} rounds; the same tokens in every round")
    print(f"  model(...) each step: {statistics.median(theirs) * per_token:.3f} ms a token (median)")
    print(f"  Qwen decode step:     {statistics.median(ours) * per_token:.3f} ms a token (median)")
    q1, q2, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    print(f"  speed-up, round by round: median {q2:.2f}x, quartiles {q1:.2f}-{q3:.2f}x, "
          f"range {min(ratios):.2f}-{max(ratios):.2f}x")


if __name__ == "__main__":
    main()
