#!/usr/bin/env python
"""The teacher answers a prompt set once per prompt; truncated, repetitive and no-\\boxed
answers are dropped (counts per reason go to --report). Output rows: {id, problem, response}.

The prompts are sampled in chunks journalled under --work-dir as they complete (a killed
job's rerun samples only what is missing), by --workers processes, one per GPU, each with
its own engine (data parallel), or by one engine tensor parallel over the GPUs."""
import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from opd.chat import add_chat_option  # noqa: E402
from opd.data import prompt_token_ids, read_problems  # noqa: E402
from opd.filtering import reject_reason  # noqa: E402
from opd.device_memory import memory_source, used_gib  # noqa: E402
from opd.io import write_json, write_jsonl  # noqa: E402
from opd.models import load_tokenizer  # noqa: E402
from opd.rollout import SamplingParams, open_backend  # noqa: E402
from opd.rollout.journal import Journal, collected, sample_in_chunks  # noqa: E402
from opd.train.checkpoint import content_hash, source_fingerprint  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--prompts", required=True)
    ap.add_argument("--sampling", default="{}", help="temperature, top_p, max_new_tokens, seed (n is 1)")
    ap.add_argument("--filter", default="{}", help="repetition thresholds as JSON")
    ap.add_argument("--template", default="{problem}")
    add_chat_option(ap, whose="the teacher")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--trust-remote-code", action="store_true")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--backend", default="hf", choices=("hf", "vllm"))
    ap.add_argument("--tensor-parallel-size", type=int, default=1, help="vllm: GPUs per model")
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.9, help="vllm: fraction of each GPU")
    ap.add_argument("--max-model-len", type=int, help="vllm: the engine's context (prompt allowance + response)")
    ap.add_argument("--max-prompts", type=int, help="only the first N (the canary)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work-dir", required=True, help="the chunk journals, kept across reruns")
    ap.add_argument("--chunk-size", type=int, default=512, help="prompts per journalled chunk")
    ap.add_argument("--workers", type=int, default=1, help="processes, one per GPU, each with its own engine")
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # set for the workers themselves
    ap.add_argument("--out")
    ap.add_argument("--report")
    args = ap.parse_args()
    if args.worker is None and not (args.out and args.report):
        ap.error("--out and --report are required")
    torch.set_num_threads(args.threads)
    rules = {"max_repeated_line_fraction": 0.5, "repeat_ngram": 20, "max_ngram_repeats": 8,
             **json.loads(args.filter)}
    problems = read_problems(args.prompts)[:args.max_prompts]
    tok = load_tokenizer(args.teacher, args.trust_remote_code)
    sampling = SamplingParams(n=1, **json.loads(args.sampling))
    ids = prompt_token_ids(tok, problems, args.template, args.chat)
    # what decides the rollouts (not how many workers shared them)
    fingerprint = {"teacher": source_fingerprint(args.teacher), "prompts": content_hash(ids),
                   "sampling": json.loads(args.sampling), "chunk_size": args.chunk_size,
                   "dtype": args.dtype, "backend": args.backend}
    start = time.perf_counter()
    if args.workers > 1 and args.worker is None:
        run_workers(args)
        memory = {"memory_gib": None, "memory_source": "workers"}
    else:
        backend = open_backend(args.backend, args.teacher, tok, dtype=args.dtype, device=args.device,
                               trust_remote_code=args.trust_remote_code, batch_size=args.batch_size,
                               tensor_parallel_size=args.tensor_parallel_size,
                               gpu_memory_utilization=args.gpu_memory_utilization, seed=sampling.seed,
                               max_model_len=args.max_model_len)
        journal = Journal(args.work_dir, fingerprint, rank=args.worker or 0)
        sample_in_chunks(backend, ids, sampling, journal, args.chunk_size, args.worker or 0, args.workers)
        memory = {"memory_gib": used_gib(args.device), "memory_source": memory_source(args.device)}
        backend.close()
        if args.worker is not None:
            return
    seconds = time.perf_counter() - start
    rollouts = collected(args.work_dir, fingerprint, len(ids), args.chunk_size)
    kept, reasons = [], Counter()
    for r in rollouts:
        text = tok.decode(r.token_ids, skip_special_tokens=True)
        reason = reject_reason(text, r.finish_reason, rules)
        if reason:
            reasons[reason] += 1
        else:
            kept.append({"id": problems[r.prompt_index]["id"], "problem": problems[r.prompt_index]["problem"],
                         "response": text})
    write_jsonl(args.out, kept)
    tokens = sum(len(r.token_ids) for r in rollouts)
    write_json(args.report, {"generated": len(rollouts), "kept": len(kept), "dropped": dict(reasons),
                             "seconds": seconds, "samples_per_second": len(rollouts) / seconds if seconds else None,
                             "problems": len(problems), "samples_per_problem": 1,
                             "mean_response_tokens": tokens / max(1, len(rollouts)), **memory})
    print(f"kept {len(kept)} of {len(rollouts)} teacher answers; dropped {dict(reasons)}")


def run_workers(args) -> None:
    """One process per GPU (each sees only its own), all sampling their share of the chunks;
    a failed worker fails the job, its journal kept for the rerun."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES") or ",".join(map(str, range(torch.cuda.device_count())))
    visible = visible.split(",")
    procs = []
    for rank in range(args.workers):
        env = dict(os.environ)
        if args.device.startswith("cuda"):
            env["CUDA_VISIBLE_DEVICES"] = visible[rank]
        procs.append(subprocess.Popen([sys.executable, *sys.argv, "--worker", str(rank)], env=env))
    failed = [rank for rank, p in enumerate(procs) if p.wait() != 0]
    if failed:
        raise SystemExit(f"teacher rollout workers {failed} failed (see above); their finished chunks are kept")


if __name__ == "__main__":
    main()
