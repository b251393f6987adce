#!/usr/bin/env python
"""Sample n responses per benchmark problem, grade them with math-verify, write avg@n,
pass@k, lengths, truncation and throughput (JSON) plus every graded sample (JSONL)."""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from opd.chat import add_chat_option  # noqa: E402
from opd.data import read_problems  # noqa: E402
from opd.evaluation import evaluate  # noqa: E402
from opd.grading import Grader  # noqa: E402
from opd.device_memory import memory_source, used_gib  # noqa: E402
from opd.io import write_json, write_jsonl  # noqa: E402
from opd.models import load_tokenizer  # noqa: E402
from opd.rollout import SamplingParams, open_backend  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True, help="model directory or hub id")
    ap.add_argument("--benchmark", required=True, help="benchmark JSONL")
    ap.add_argument("--sampling", required=True, help='JSON, e.g. {"n": 16, "temperature": 0.7}')
    ap.add_argument("--template", default="{problem}", help="prompt template with {problem}")
    add_chat_option(ap)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--trust-remote-code", action="store_true")
    ap.add_argument("--backend", default="hf", choices=("hf", "vllm"))
    ap.add_argument("--tensor-parallel-size", type=int, default=1, help="vllm: GPUs per model")
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.9, help="vllm: fraction of each GPU")
    ap.add_argument("--max-model-len", type=int, help="vllm: the engine's context (prompt allowance + response)")
    ap.add_argument("--max-problems", type=int, help="only the first N (the canary)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--grading", default="{}", help='JSON: {"timeout_s": 5, "max_answer_chars": 1000}')
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True, help="metrics JSON")
    ap.add_argument("--samples", required=True, help="per-sample JSONL")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    problems = read_problems(args.benchmark)[:args.max_problems]
    sampling = SamplingParams(**json.loads(args.sampling))
    tokenizer = load_tokenizer(args.model, trust_remote_code=args.trust_remote_code)
    backend = open_backend(args.backend, args.model, tokenizer, dtype=args.dtype, device=args.device,
                           trust_remote_code=args.trust_remote_code, batch_size=args.batch_size,
                           tensor_parallel_size=args.tensor_parallel_size,
                           gpu_memory_utilization=args.gpu_memory_utilization, seed=sampling.seed,
                           max_model_len=args.max_model_len)
    with Grader(**json.loads(args.grading)) as grader:
        metrics, samples = evaluate(backend, tokenizer, problems, sampling, args.template,
                                    chat=args.chat, grader=grader)
    metrics.update(memory_gib=used_gib(args.device), memory_source=memory_source(args.device))  # engine still up
    backend.close()
    metrics = {"model": args.model, "benchmark": args.benchmark, **metrics}
    write_jsonl(args.samples, samples)
    write_json(args.out, metrics)
    n = sampling.n
    print(f"{args.model} on {args.benchmark}: avg@{n} {metrics[f'avg@{n}']:.3f}, "
          f"{metrics['samples_per_second']:.1f} samples/s")


if __name__ == "__main__":
    main()
