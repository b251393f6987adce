#!/usr/bin/env python
"""Peak memory and time of the OPD loss plus token metrics (forward and backward):
chunked (opd.losses.opd_loss) vs naive full logits (opd.losses.naive_opd_loss), or, with
``--against trl``, vs TRL's losses (the ``bench`` extra: trl 1.16): the chunked
reverse-KL of its ``DistillationTrainer`` (beta 1) and its GKD loss on materialised logits.
TRL's losses are the exact reverse KL over the vocabulary: ``--objective full`` is the
same objective here, and ``topk`` (the default) the paper's.

Each measurement runs in a fresh subprocess; peak memory is the growth of the process's
peak resident set (CPU) or torch's peak allocation (CUDA) over the inputs. The naive run
gets a memory cap so that a size it cannot hold fails cleanly instead of swapping."""
import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(args) -> dict:
    import torch

    from opd.losses import naive_opd_loss, opd_loss
    from opd.objective import Objective, metric_means

    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    g = torch.Generator(device=dev).manual_seed(0)
    h_s = torch.randn(args.tokens, args.hidden, device=dev, generator=g, dtype=dtype).requires_grad_(True)
    w_s = (torch.randn(args.vocab, args.hidden, device=dev, generator=g, dtype=dtype) * 0.05).requires_grad_(True)
    h_t = torch.randn(args.tokens, args.hidden, device=dev, generator=g, dtype=dtype)
    w_t = torch.randn(args.vocab, args.hidden, device=dev, generator=g, dtype=dtype) * 0.05
    tokens = torch.randint(0, args.vocab, (args.tokens,), device=dev, generator=g)
    obj = Objective(kind=args.objective, k=args.k)
    times = []
    for _ in range(args.repeats):
        h_s.grad = w_s.grad = None
        if dev.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            base = rss_bytes()
        start = time.perf_counter()
        if args.impl == "chunked":
            out = opd_loss(h_s, w_s, h_t, w_t, tokens, obj, 1.0 / args.tokens, chunk_size=args.chunk)
        elif args.impl == "naive":
            out = naive_opd_loss(h_s @ w_s.T, h_t @ w_t.T, tokens, obj, 1.0 / args.tokens)
        else:
            out = trl_loss(args.impl, h_s, w_s, h_t, w_t)
        out.loss.backward()
        if dev.type == "cuda":
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() - base
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
        times.append(time.perf_counter() - start)
    overlap = metric_means(out.metric_sums)["overlap_ratio"] if out.metric_sums else float("nan")
    return {"impl": args.impl, "seconds": min(times), "peak_bytes": peak, "loss": out.loss.item(),
            "overlap_ratio": overlap}


def trl_loss(impl: str, h_s, w_s, h_t, w_t):
    """TRL's reverse KL (beta 1), mean over positions: chunked, or on full logits."""
    from types import SimpleNamespace

    import torch

    if impl == "trl_chunked":
        from trl.trainer.distillation_trainer import _chunked_divergence_loss

        mask = torch.ones(1, h_s.shape[0], device=h_s.device)
        loss = _chunked_divergence_loss(h_s[None], h_t[None], w_s, w_t, mask, beta=1.0)[0]
    else:
        from trl.experimental.gkd.gkd_trainer import GKDTrainer

        loss = GKDTrainer.generalized_jsd_loss((h_s @ w_s.T)[None], (h_t @ w_t.T)[None], beta=1.0,
                                               reduction="sum") / h_s.shape[0]
    return SimpleNamespace(loss=loss, metric_sums={})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tokens", type=int, default=8192)
    ap.add_argument("--vocab", type=int, default=151_936)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--objective", default="topk", choices=["topk", "sampled", "full"])
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--mem-cap-gb", type=float, default=20.0, help="address-space cap of each run (CPU)")
    ap.add_argument("--against", choices=["naive", "trl"], default="naive",
                    help="the baseline: our full-logits loss, or TRL's chunked and GKD losses")
    ap.add_argument("--impl", choices=["chunked", "naive", "trl_chunked", "trl_gkd"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.impl:
        print(json.dumps(measure(args)))
        return
    results = {}
    for impl in ("naive", "chunked") if args.against == "naive" else ("trl_gkd", "trl_chunked", "chunked"):
        cmd = [sys.executable, __file__, "--impl", impl] + sys.argv[1:]
        cap = int(args.mem_cap_gb * 2**30)

        def limit():
            if args.device == "cpu":
                resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

        run = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=limit)
        if run.returncode:
            print(f"{impl}: failed under a {args.mem_cap_gb:g} GB cap ({run.stderr.strip().splitlines()[-1]})")
            continue
        results[impl] = json.loads(run.stdout)
    print(f"tokens {args.tokens}, vocab {args.vocab}, hidden {args.hidden}, objective {args.objective} "
          f"(k={args.k}), chunk {args.chunk}, {args.dtype} on {args.device}")
    for impl, r in results.items():
        print(f"  {impl:8s} peak {r['peak_bytes'] / 2**30:7.2f} GiB  time {r['seconds']:7.2f} s  "
              f"loss {r['loss']:+.6f}  overlap {r['overlap_ratio']:.4f}")
    for base in ("naive", "trl_gkd", "trl_chunked"):
        if base in results and "chunked" in results:
            b, c = results[base], results["chunked"]
            print(f"  chunked / {base}: memory {c['peak_bytes'] / b['peak_bytes']:.3f}x, "
                  f"time {c['seconds'] / b['seconds']:.3f}x")


if __name__ == "__main__":
    main()
