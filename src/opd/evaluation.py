"""Sample n responses per problem, grade them, and summarise as the paper does (avg@n)."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, replace

from .chat import ChatFormat
from .data import prompt_token_ids
from .distributed import Dist
from .grading import Grader
from .progress import progress
from .rollout import SamplingParams, check_prompt_lengths


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (Chen et al., 2021)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def ks_up_to(n: int) -> list[int]:
    ks, k = [], 1
    while k <= n:
        ks.append(k)
        k *= 2
    return ks if ks[-1] == n else ks + [n]


def summarise(samples: list[dict], n: int, seconds: float) -> dict:
    """Benchmark-level metrics from graded samples (``problem_id``, ``correct``, ...)."""
    by_problem: dict[str, list[bool]] = {}
    for s in samples:
        by_problem.setdefault(s["problem_id"], []).append(s["correct"])
    metrics = {
        "problems": len(by_problem),
        "samples_per_problem": n,
        f"avg@{n}": sum(s["correct"] for s in samples) / max(1, len(samples)),
    }
    for k in ks_up_to(n):
        metrics[f"pass@{k}"] = sum(pass_at_k(len(v), sum(v), k) for v in by_problem.values()) / max(1, len(by_problem))
    metrics.update({
        "mean_response_tokens": sum(s["response_tokens"] for s in samples) / max(1, len(samples)),
        "truncation_rate": sum(s["finish_reason"] == "length" for s in samples) / max(1, len(samples)),
        "grading_status": {st: sum(s["grade_status"] == st for s in samples)
                           for st in sorted({s["grade_status"] for s in samples})},
        "seconds": seconds,
        "samples_per_second": len(samples) / seconds if seconds > 0 else None,
    })
    return metrics


def evaluate(backend, tokenizer, problems: list[dict], sampling: SamplingParams, template: str,
             chat: ChatFormat, grader: Grader) -> tuple[dict, list[dict]]:
    """Metrics and per-sample records for ``problems`` under ``sampling``."""
    start = time.perf_counter()
    prompt_ids = prompt_token_ids(tokenizer, problems, template, chat)
    check_prompt_lengths(prompt_ids, getattr(backend, "context_length", None), [p["id"] for p in problems])
    rollouts = backend.generate(prompt_ids, sampling)
    samples = []
    for r in progress(rollouts, desc="grading", unit="answer", disable=not getattr(backend, "progress", False)):
        problem = problems[r.prompt_index]
        text = tokenizer.decode(r.token_ids, skip_special_tokens=True)
        grade = grader.grade(text, problem["answer"])
        samples.append({
            "problem_id": problem["id"],
            "sample": r.sample_index,
            "response": text,
            "answer": grade.answer,
            "gold": problem["answer"],
            "correct": grade.correct,
            "grade_status": grade.status,
            "response_tokens": len(r.token_ids),
            "finish_reason": r.finish_reason,
        })
    metrics = summarise(samples, sampling.n, time.perf_counter() - start)
    metrics["sampling"] = asdict(sampling)
    return metrics, samples


GATHERED = ("problem_id", "sample", "correct", "grade_status", "response_tokens", "finish_reason")


def evaluate_over_ranks(backend, tokenizer, problems: list[dict], sampling: SamplingParams, template: str,
                        chat: ChatFormat, grader: Grader, dist: Dist) -> tuple[dict, list[dict]]:
    """:func:`evaluate` with the problems shared out: each rank samples and grades every
    world-th problem at its own seed (:meth:`opd.distributed.Dist.seed`), and the grades
    (not the texts) are gathered on every rank, in problem order, and summarised as one
    evaluation. On one rank it is :func:`evaluate` itself."""
    start = time.perf_counter()
    share = problems[dist.rank::dist.world]
    _, samples = evaluate(backend, tokenizer, share, replace(sampling, seed=dist.seed(sampling.seed)), template,
                          chat, grader)
    order = {p["id"]: i for i, p in enumerate(problems)}
    records = sorted(dist.gather([{k: s[k] for k in GATHERED} for s in samples]),
                     key=lambda s: (order[s["problem_id"]], s["sample"]))
    metrics = summarise(records, sampling.n, time.perf_counter() - start)
    metrics["sampling"] = asdict(sampling)
    metrics["problems_per_rank"] = dist.gather([len(share)])
    return metrics, records
