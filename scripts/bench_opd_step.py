#!/usr/bin/env python
"""Seconds per whole OPD step (sampling, teacher and student passes, loss, optimizer step),
this project's (opd.train.opd.train_step, HF rollouts) against TRL 1.16's on-policy
``DistillationTrainer`` (reverse KL: beta 1), side by side in one run: the same tiny Qwen3
student and teacher, the same prompts per step, one rollout each of exactly the same length
(no stop token in ours, EOS suppressed in TRL's), fp32 on the CPU with the same thread count, no gradient
checkpointing, no logging or checkpoints. TRL comes from the ``bench`` extra.

The two take turns step by step: after each of TRL's steps (a trainer callback) comes one of
ours, and each pair's ratio is taken. On a shared machine whose speed drifts by a factor of
two within a minute, two steps a fraction of a second apart see the same machine; two runs
of ten steps one after the other need not.

    python scripts/bench_opd_step.py [--threads 2 --prompts 8 --max-new-tokens 64 --steps 40 --tokenizer toy]
"""
import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch
from transformers import AutoModelForCausalLM

from opd.chat import DEFAULT
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


class Ours:
    """This project's trainer state; ``step()`` runs and times one whole step."""

    def __init__(self, tok, args):
        from opd.distributed import Dist
        from opd.grading import Grader
        from opd.rollout.hf import HFBackend
        from opd.train.opd import OPDSettings
        from opd.train.teacher import Teacher
        from opd.train.updater import Updater

        self.tok, self.args = tok, args
        self.student, teacher = models(tok, args)
        teacher.eval().requires_grad_(False)
        self.trunks = (*hidden_and_head(self.student), Teacher(teacher))
        self.rows = prompts(tok, args)
        self.ids = [tok(render_prompt(tok, p["problem"], TEMPLATE, DEFAULT), add_special_tokens=False)["input_ids"]
                    for p in self.rows]
        self.settings = OPDSettings(steps=args.steps, prompts_per_step=args.prompts, n=1,
                                    max_new_tokens=args.max_new_tokens, micro_batch_size=args.prompts,
                                    rollout_batch_size=args.prompts, lr=1e-6)
        self.updater = Updater(self.student, torch.optim.AdamW(self.student.parameters(), lr=1e-6), 1.0, Dist())
        self.backend = HFBackend(self.student, tok, batch_size=args.prompts, progress=False)
        self.backend.stop_ids = set()  # every rollout runs to max_new_tokens (ours ignores suppress_tokens)
        self.grader = Grader()
        self.times, self.parts = [], []

    def step(self) -> None:
        from opd.losses import Objective
        from opd.train.opd import train_step

        t0 = time.perf_counter()
        record = train_step(len(self.times) + 1, self.rows, self.ids, self.settings,
                            Objective(kind=self.args.objective), self.student, *self.trunks, self.updater,
                            self.backend, self.tok, self.grader)
        self.times.append(time.perf_counter() - t0)
        self.parts.append({k: record[k] for k in ("time_rollout", "time_teacher", "time_update", "time_grading")})
        assert record["response_length"] == self.args.max_new_tokens, record["response_length"]


def run_in_turns(tok, args) -> tuple[list[float], Ours]:
    """TRL's trainer, with one of our steps after each of its steps; TRL's step times."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DistillationConfig, DistillationTrainer

    ours = Ours(tok, args)
    student, teacher = models(tok, args)
    rows = prompts(tok, args)
    data = Dataset.from_list([{"prompt": render_prompt(tok, p["problem"], TEMPLATE, DEFAULT)} for p in rows])
    times = []

    class Turns(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            times.append(time.perf_counter() - self.t0)
            ours.step()

    with tempfile.TemporaryDirectory() as out, ours.grader:
        config = DistillationConfig(
            output_dir=out, per_device_train_batch_size=args.prompts, max_steps=args.steps,
            max_completion_length=args.max_new_tokens, temperature=1.0, top_p=1.0, beta=1.0, learning_rate=1e-6,
            gradient_checkpointing=False, bf16=False, use_cpu=True, logging_steps=10**6, report_to=[],
            save_strategy="no", dataloader_num_workers=0, seed=0, disable_tqdm=True,
            generation_kwargs={"suppress_tokens": [tok.eos_token_id], "min_new_tokens": args.max_new_tokens})
        trainer = DistillationTrainer(model=student, teacher_model=teacher, args=config, train_dataset=data,
                                      processing_class=tok, callbacks=[Turns()])
        trainer.train()
    return times, ours


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--steps", type=int, default=40, help="of each; the first two are warm-up and not counted")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--tokenizer", default="toy", choices=["toy", "qwen3"],
                    help="the toy world's (100 tokens) or Qwen3's real one (151,669: the paper's vocabulary)")
    ap.add_argument("--objective", default="full", choices=["full", "topk", "sampled"],
                    help="ours; full is TRL's objective (the exact reverse KL)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.tokenizer == "qwen3":
        from opd.qwen_tokenizers import build_qwen_tokenizer
        tok = build_qwen_tokenizer("qwen3")  # pads with <|endoftext|>, on the left
    else:
        tok = build_tokenizer()
    trl_times, ours = run_in_turns(tok, args)
    warm = 2  # the first steps of each are warm-up
    trl_times, our_times = trl_times[warm:], ours.times[warm:]
    ratios = [t / o for t, o in zip(trl_times, our_times)]
    mid = ours.parts[warm + len(our_times) // 2]
    print(f"{args.prompts} prompts x 1 rollout of {args.max_new_tokens} tokens, Qwen3 {args.layers} layers x "
          f"{args.hidden}, vocab {len(tok)}, {args.threads} threads; ours: objective {args.objective}")
    print("  ours, one step: " + ", ".join(f"{k[5:]} {v:.3f} s" for k, v in mid.items()))
    for name, ts in (("ours", our_times), ("TRL", trl_times)):
        q1, q2, q3 = statistics.quantiles(ts, n=4, method="inclusive")
        print(f"  {name}: {q2:.3f} s per step (median of {len(ts)}; quartiles {q1:.3f}-{q3:.3f}, "
              f"range {min(ts):.3f}-{max(ts):.3f})")
    q1, q2, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    print(f"  ours / TRL steps per second, step by step: median {q2:.2f}x, quartiles {q1:.2f}-{q3:.2f}x, "
          f"range {min(ratios):.2f}-{max(ratios):.2f}x, {sum(r >= 1.5 for r in ratios)} of {len(ratios)} pairs "
          f"at 1.5x or more")


if __name__ == "__main__":
    main()
