#!/usr/bin/env python
"""The vLLM backend against the HF backend on one model (a GPU node, or vLLM's CPU build
with --device cpu). Prints how many
greedy responses are token-identical and the largest difference of the sampled tokens'
log-probabilities (vLLM's scored by the HF model on vLLM's own tokens)."""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from opd.chat import DEFAULT  # noqa: E402
from opd.data import read_problems, render_prompt  # noqa: E402
from opd.models import load_model, load_tokenizer  # noqa: E402
from opd.rollout import SamplingParams, make_backend  # noqa: E402
from opd.rollout.hf import response_logprobs  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True)
    ap.add_argument("--problems", required=True, help="problems JSONL")
    ap.add_argument("--template", default="{problem}")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--device", default=None, help="where the HF reference runs: cuda (default when present) or cpu")
    args = ap.parse_args()
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    tok = load_tokenizer(args.model)
    prompts = [tok(render_prompt(tok, p["problem"], args.template, DEFAULT), add_special_tokens=False)["input_ids"]
               for p in read_problems(args.problems)]
    model = load_model(args.model, args.dtype, device)
    greedy = SamplingParams(n=1, temperature=0.0, top_p=1.0, max_new_tokens=args.max_new_tokens)
    hf = make_backend("hf", model, tok).generate(prompts, greedy)
    vllm = make_backend("vllm", args.model, dtype=args.dtype, gpu_memory_utilization=0.5)
    vl = vllm.generate(prompts, greedy)
    same = sum(a.token_ids == b.token_ids for a, b in zip(hf, vl))
    sampled = vllm.generate(prompts, SamplingParams(n=2, temperature=1.0, top_p=1.0,
                                                    max_new_tokens=args.max_new_tokens, seed=1), logprobs=True)
    ref = response_logprobs(model, [prompts[r.prompt_index] for r in sampled], [r.token_ids for r in sampled],
                            tok.pad_token_id)
    diff = max(abs(a - b) for r, lp in zip(sampled, ref) for a, b in zip(r.logprobs, lp))
    vllm.close()
    print(f"greedy token-identical: {same}/{len(prompts)}; max |logprob vLLM - HF| on sampled tokens: {diff:.2e}")


if __name__ == "__main__":
    main()
