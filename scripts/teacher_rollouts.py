#!/usr/bin/env python
"""The teacher answers a prompt set once per prompt; truncated, repetitive and no-\\boxed
answers are dropped (counts per reason go to --report). Output rows: {id, problem, response}."""
import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from opd.data import read_problems, render_prompt  # noqa: E402
from opd.filtering import reject_reason  # noqa: E402
from opd.device_memory import memory_source, used_gib  # noqa: E402
from opd.io import write_json, write_jsonl  # noqa: E402
from opd.models import load_tokenizer  # noqa: E402
from opd.rollout import SamplingParams, open_backend  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--prompts", required=True)
    ap.add_argument("--sampling", default="{}", help="temperature, top_p, max_new_tokens, seed (n is 1)")
    ap.add_argument("--filter", default="{}", help="repetition thresholds as JSON")
    ap.add_argument("--template", default="{problem}")
    ap.add_argument("--no-chat", action="store_true")
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
    ap.add_argument("--out", required=True)
    ap.add_argument("--report", required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rules = {"max_repeated_line_fraction": 0.5, "repeat_ngram": 20, "max_ngram_repeats": 8,
             **json.loads(args.filter)}
    problems = read_problems(args.prompts)[:args.max_prompts]
    tok = load_tokenizer(args.teacher, args.trust_remote_code)
    sampling = SamplingParams(n=1, **json.loads(args.sampling))
    backend = open_backend(args.backend, args.teacher, tok, dtype=args.dtype, device=args.device,
                           trust_remote_code=args.trust_remote_code, batch_size=args.batch_size,
                           tensor_parallel_size=args.tensor_parallel_size,
                           gpu_memory_utilization=args.gpu_memory_utilization, seed=sampling.seed,
                           max_model_len=args.max_model_len)
    ids = [tok(render_prompt(tok, p["problem"], args.template, not args.no_chat), add_special_tokens=False)["input_ids"]
           for p in problems]
    start = time.perf_counter()
    rollouts = backend.generate(ids, sampling)
    seconds = time.perf_counter() - start
    memory = {"memory_gib": used_gib(args.device), "memory_source": memory_source(args.device)}
    backend.close()
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


if __name__ == "__main__":
    main()
