#!/usr/bin/env python
"""Seconds per whole OPD step (sampling, teacher and student passes, loss, optimizer step),
this project's (opd.train.opd.train_step, HF rollouts) against TRL 1.16's on-policy
``DistillationTrainer`` (reverse KL: beta 1), side by side in one run: the same tiny Qwen3
student and teacher, the same prompts per step, one rollout each of exactly the same length
(no stop token in ours, EOS suppressed in TRL's), fp32 on the CPU with the same thread count, no gradient
checkpointing, no logging or checkpoints. TRL comes from the ``bench`` extra. The two take
turns for ``--rounds`` rounds, so that a slow spell of a shared machine falls on both.

    python scripts/bench_opd_step.py [--threads 2 --prompts 8 --max-new-tokens 64 --steps 10 --rounds 3]
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch
from transformers import AutoModelForCausalLM

from opd.data import render_prompt
from opd.models import hidden_and_head, toy_config
from opd.toy.task import sample_problems
from opd.toy.tokenizer import build_tokenizer

TEMPLATE = "{problem}"


def models(tok, args):
    """Student and teacher: random tiny Qwen3s whose EOS logit is pushed down, so that every
    rollout runs to max_new_tokens in both trainers."""
    out = []
    for seed, layers in ((1, args.layers), (2, args.layers + 1)):
        torch.manual_seed(seed)
        m = AutoModelForCausalLM.from_config(toy_config(tok, layers, args.hidden, args.heads))
        with torch.no_grad():
            m.get_output_embeddings().weight[tok.eos_token_id] = 0  # tied: also the input embedding row
        m.generation_config.eos_token_id = tok.eos_token_id
        m.generation_config.pad_token_id = tok.pad_token_id
        m.generation_config.suppress_tokens = [tok.eos_token_id]
        out.append(m)
    return out


def prompts(tok, args):
    problems = sample_problems(0, args.prompts * (args.steps + 2), 2, 3)
    return [{"id": f"p{i}", "problem": p.question, "answer": str(p.a + p.b)} for i, p in enumerate(problems)]


def ours(tok, args) -> list[float]:
    from opd.distributed import Dist
    from opd.grading import Grader
    from opd.losses import Objective
    from opd.rollout.hf import HFBackend
    from opd.train.opd import OPDSettings, train_step
    from opd.train.updater import Updater

    student, teacher = models(tok, args)
    teacher.eval().requires_grad_(False)
    rows = prompts(tok, args)
    ids = [tok(render_prompt(tok, p["problem"], TEMPLATE, True), add_special_tokens=False)["input_ids"]
           for p in rows]
    settings = OPDSettings(steps=args.steps, prompts_per_step=args.prompts, n=1, max_new_tokens=args.max_new_tokens,
                           micro_batch_size=args.prompts, rollout_batch_size=args.prompts, lr=1e-6)
    updater = Updater(student, torch.optim.AdamW(student.parameters(), lr=1e-6), 1.0, Dist())
    backend = HFBackend(student, tok, batch_size=args.prompts, progress=False)
    backend.stop_ids = set()  # every rollout runs to max_new_tokens (ours ignores suppress_tokens)
    times, parts = [], []
    with Grader() as grader:
        for step in range(1, args.steps + 1):
            t0 = time.perf_counter()
            record = train_step(step, rows, ids, settings, Objective(kind=args.objective), student,
                                *hidden_and_head(student), *hidden_and_head(teacher), updater, backend, tok, grader)
            times.append(time.perf_counter() - t0)
            parts.append({k: record[k] for k in ("time_rollout", "time_teacher", "time_update", "time_grading")})
            assert record["response_length"] == args.max_new_tokens, record["response_length"]
    mid = parts[len(parts) // 2]
    print("ours, one step: " + ", ".join(f"{k[5:]} {v:.3f} s" for k, v in mid.items()), flush=True)
    return times


def trl(tok, args) -> list[float]:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DistillationConfig, DistillationTrainer

    student, teacher = models(tok, args)
    rows = prompts(tok, args)
    data = Dataset.from_list([{"prompt": render_prompt(tok, p["problem"], TEMPLATE, True)} for p in rows])
    times = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            times.append(time.perf_counter() - self.t0)

    with tempfile.TemporaryDirectory() as out:
        config = DistillationConfig(
            output_dir=out, per_device_train_batch_size=args.prompts, max_steps=args.steps,
            max_completion_length=args.max_new_tokens, temperature=1.0, top_p=1.0, beta=1.0, learning_rate=1e-6,
            gradient_checkpointing=False, bf16=False, use_cpu=True, logging_steps=10**6, report_to=[],
            save_strategy="no", dataloader_num_workers=0, seed=0,
            generation_kwargs={"suppress_tokens": [tok.eos_token_id], "min_new_tokens": args.max_new_tokens})
        trainer = DistillationTrainer(model=student, teacher_model=teacher, args=config, train_dataset=data,
                                      processing_class=tok, callbacks=[Clock()])
        trainer.train()
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10, help="the first two are warm-up and not counted")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--objective", default="full", choices=["full", "topk", "sampled"],
                    help="ours; full is TRL's objective (the exact reverse KL)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tok = build_tokenizer()
    rounds = []
    for _ in range(args.rounds):
        per = {}
        for name, run in (("ours", ours), ("trl", trl)):
            steps = run(tok, args)[2:]
            per[name] = sorted(steps)[len(steps) // 2]
        rounds.append(per)
    print(f"{args.prompts} prompts x 1 rollout of {args.max_new_tokens} tokens, Qwen3 {args.layers} layers x "
          f"{args.hidden}, vocab {len(tok)}, {args.threads} threads; ours: objective {args.objective}")
    for i, per in enumerate(rounds, 1):
        print(f"  round {i}: ours {per['ours']:.3f} s, TRL {per['trl']:.3f} s per step (medians of "
              f"{args.steps - 2}); ours / TRL steps per second {per['trl'] / per['ours']:.2f}x")
    ratios = sorted(per["trl"] / per["ours"] for per in rounds)
    print(f"  ours / TRL steps per second over {args.rounds} rounds: {ratios[0]:.2f}-{ratios[-1]:.2f}x, "
          f"median {ratios[len(ratios) // 2]:.2f}x")


if __name__ == "__main__":
    main()
