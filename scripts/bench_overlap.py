#!/usr/bin/env python
"""Time of the benchmark-overlap check (opd.overlap.find_overlap) on a synthetic case the
size of the paper's largest prompt set: --prompts math-like prompts of Zipf-distributed
words and numbers, --problems benchmark problems of the same words, --planted of them
written into prompts inside a template. Prints the seconds and checks every planted one
is found (and nothing else, which random 40-word problems are not)."""
import argparse
import itertools
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from opd.overlap import find_overlap  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--prompts", type=int, default=200_000)
    ap.add_argument("--problems", type=int, default=100)
    ap.add_argument("--planted", type=int, default=50)
    ap.add_argument("--words", type=int, default=60, help="words of a prompt")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    vocab = [f"w{i}" for i in range(20_000)] + [str(i) for i in range(1000)] + list("+-=*/^()$,.?")
    cum_weights = list(itertools.accumulate(1 / (rank + 1) for rank in range(len(vocab))))

    def text(n):
        return " ".join(rng.choices(vocab, cum_weights=cum_weights, k=n))

    t0 = time.perf_counter()
    prompts = [text(args.words) for _ in range(args.prompts)]
    problems = {"bench": [{"id": f"b{j}", "problem": text(40)} for j in range(args.problems)]}
    planted = rng.sample(range(args.prompts), args.planted)
    for k, i in enumerate(planted):
        prompts[i] = f"Solve:\n{problems['bench'][k]['problem'].upper()}\nAnswer:"
    t1 = time.perf_counter()
    found = find_overlap(prompts, problems, ["{problem}\n\nPlease reason step by step."])
    t2 = time.perf_counter()
    hits = sorted(found.get("bench", []))
    assert hits == sorted((i, f"b{k}") for k, i in enumerate(planted)), hits[:5]
    print(json.dumps({"prompts": args.prompts, "problems": args.problems, "planted_found": len(hits),
                      "data_s": round(t1 - t0, 2), "check_s": round(t2 - t1, 2)}))


if __name__ == "__main__":
    main()
