"""On-policy distillation: the student samples, the teacher scores the student's tokens.

One step: sample ``n`` rollouts for each of ``prompts_per_step`` prompts from the student;
run the teacher and the student over prompt + response; the loss (``opd.losses``) is taken
at every response position; one optimizer update per rollout batch (the paper's default,
so the PPO ratio stays 1). The verifier's accuracy on the rollouts is logged, never
trained on. Checkpoints go to a run directory and a killed run resumes from the last one.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .. import distributed
from ..batching import epoch_permutation, pad_pairs, prediction_positions
from ..data import render_prompt
from ..distributed import Dist
from ..evaluation import evaluate
from ..grading import Grader
from ..losses import SUMS, Objective, metric_means, opd_loss, position_weights
from ..models import hidden_and_head, load_model, load_tokenizer, same_tokenizer
from ..rollout import SamplingParams, check_prompt_lengths, make_backend
from ..rollout.hf import HFBackend
from .checkpoint import RunDir, StopFlag, content_hash, source_fingerprint
from .updater import Updater, enable_checkpointing, peak_gpu_memory_gb, precision_context


@dataclass(frozen=True)
class OPDSettings:
    steps: int = 280
    prompts_per_step: int = 64
    n: int = 4
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 7168
    lr: float = 1e-6
    warmup_steps: int = 0
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    micro_batch_size: int = 8
    max_tokens_per_micro_batch: int | None = None
    precision: str = "fp32"
    gradient_checkpointing: bool = False
    rollout_batch_size: int = 64
    chunk_size: int = 64
    rollout_backend: str = "hf"
    vllm_gpu_memory_utilization: float = 0.4
    deepspeed: str | None = None
    eval_every: int = 20
    eval_n: int = 4
    eval_temperature: float = 0.7
    eval_top_p: float = 0.95
    checkpoint_every: int = 20
    seed: int = 0


@contextmanager
def awake(backend, student):
    """A separate rollout engine (vLLM) wakes with the student's current weights and sleeps
    again before the update; the HF backend samples from the student itself."""
    if isinstance(backend, HFBackend):
        yield
        return
    backend.wake_up()
    backend.load_weights(student)
    try:
        yield
    finally:
        backend.sleep()


class TokenizerMismatch(ValueError):
    pass


def prompt_order(num_prompts: int, step: int, per_step: int, seed: int) -> list[int]:
    """Prompt indices of a step (1-based): epochs are seeded permutations, back to back."""
    first_epoch, last_epoch = (step - 1) * per_step // num_prompts, (step * per_step - 1) // num_prompts
    order = [i for e in range(first_epoch, last_epoch + 1) for i in epoch_permutation(num_prompts, e, seed)]
    start = (step - 1) * per_step - first_epoch * num_prompts
    return order[start:start + per_step]


def pack(prompts: list[list[int]], responses: list[list[int]], pad_id: int):
    """Right-padded ids, mask, the flat indices of the positions that predict each response
    token, and those tokens."""
    ids, mask, labels = pad_pairs(prompts, responses, pad_id)
    return (ids, mask, *prediction_positions(labels))


def check_tokenizers(student_tok, teacher_tok, student: str, teacher: str) -> None:
    if not same_tokenizer(student_tok, teacher_tok):
        raise TokenizerMismatch(
            f"student {student} and teacher {teacher} have different tokenizers (vocabulary or "
            "special tokens differ): the teacher cannot score the student's tokens"
        )


def train(student_path: str, teacher_path: str, prompts: list[dict], benchmarks: dict[str, list[dict]],
          settings: OPDSettings, objective: Objective, run_dir: str | Path, *, template: str, chat: bool,
          grading: dict, device: str = "cpu", teacher_dtype: str = "float32", student_dtype: str = "float32",
          trust_remote_code: bool = False, teacher_trust_remote_code: bool = False):
    """Train; returns (student, tokenizer, run dir) for the caller to save. On SIGTERM or
    SIGUSR2 it checkpoints and exits with EXIT_REQUEUE. ``student_dtype`` is the model's own
    dtype, which a vLLM rollout engine samples in (training keeps fp32 master weights). Each
    model runs remote code only if its own ``*trust_remote_code`` says so."""
    stop = StopFlag()
    dist = distributed.init()
    device = dist.device(device)
    tok = load_tokenizer(student_path, trust_remote_code)
    check_tokenizers(tok, load_tokenizer(teacher_path, teacher_trust_remote_code), student_path, teacher_path)
    student = load_model(student_path, "float32", device, trust_remote_code)  # fp32 master weights
    teacher = load_model(teacher_path, teacher_dtype, device, teacher_trust_remote_code).requires_grad_(False)
    enable_checkpointing(student, settings.gradient_checkpointing)
    s_trunk, s_head = hidden_and_head(student)
    t_trunk, t_head = hidden_and_head(teacher)
    opt = torch.optim.AdamW(student.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    updater = Updater(student, opt, settings.grad_clip, dist, settings.deepspeed, settings.precision)
    # constant after an optional linear warmup (the paper: constant 1e-6, no warmup)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, settings.warmup_steps)))
    run = RunDir(run_dir, {"student": source_fingerprint(student_path), "teacher": source_fingerprint(teacher_path),
                           "settings": asdict(settings), "objective": asdict(objective),
                           "template": template, "prompts": content_hash(prompts)}, dist=dist)
    start, _ = run.load(student, updater, sched)
    run.truncate_log(start)
    if start and dist.main:
        print(f"resumed from step {start}")
    if settings.rollout_backend == "vllm":
        backend = make_backend("vllm", student_path, colocated=True, seed=settings.seed + dist.rank,
                               dtype=student_dtype, gpu_memory_utilization=settings.vllm_gpu_memory_utilization,
                               trust_remote_code=trust_remote_code)
    else:
        backend = HFBackend(student, tok, batch_size=settings.rollout_batch_size, progress=False)
    prompt_ids = [tok(render_prompt(tok, p["problem"], template, chat), add_special_tokens=False)["input_ids"]
                  for p in prompts]
    check_prompt_lengths(prompt_ids, student.config.max_position_embeddings, [p["id"] for p in prompts])
    eval_sampling = SamplingParams(settings.eval_n, settings.eval_temperature, settings.eval_top_p,
                                   settings.max_new_tokens, settings.seed)

    def validate() -> dict | None:
        """On the main rank (the others wait at the step's end)."""
        if not dist.main:
            return None
        student.eval()
        with awake(backend, student):
            key = f"avg@{settings.eval_n}"
            return {name: evaluate(backend, tok, probs, eval_sampling, template, chat, grader)[0][key]
                    for name, probs in benchmarks.items()}

    try:
        with Grader(**grading) as grader, run.open_log() as log:
            if start == 0 and benchmarks:
                log.write(json.dumps({"step": 0, "val": validate()}) + "\n")
            for step in range(start + 1, settings.steps + 1):
                record = train_step(step, prompts, prompt_ids, settings, objective, student, s_trunk, s_head,
                                    t_trunk, t_head, updater, backend, tok, grader, dist)
                sched.step()
                if benchmarks and (step % settings.eval_every == 0 or step == settings.steps):
                    record["val"] = validate()
                log.write(json.dumps(record) + "\n")
                log.flush()
                if dist.main:
                    print(f"step {step}: loss {record['loss']:.4f} overlap {record['overlap_ratio']:.3f} "
                          f"acc {record['accuracy']:.3f} {record.get('val', '')}", flush=True)
                run.end_step(step, settings.steps, settings.checkpoint_every, stop, student, updater, sched,
                             {"data_position": step * settings.prompts_per_step})
    finally:
        backend.close()  # vLLM's engine (and, in-process, the default process group): after the last collective
    return student, tok, run


def accumulate_gradients(prompts: list[list[int]], responses: list[list[int]], settings, objective, s_trunk, s_head,
                         t_trunk, t_head, updater, pad_id: int, step_counts: tuple[int, int, int]):
    """Forward and backward over these sequences in micro-batches (``micro_batch_size`` each,
    or length-grouped under ``max_tokens_per_micro_batch``), the student's forward in the
    training precision. ``step_counts``: the whole step's tokens, non-empty sequences and
    sequences over all ranks, which weigh every position. Returns the loss, the metric sums,
    each sequence's token rewards (in the given order) and the teacher's seconds."""
    n_tokens, n_sequences, n_all = step_counts
    sums = dict.fromkeys(SUMS, 0.0)
    loss_total, teacher_s = 0.0, 0.0
    rewards: list = [None] * len(responses)
    dev = s_head.device
    for mb in updater.micro_batches([len(p) + len(r) for p, r in zip(prompts, responses)],
                                    settings.micro_batch_size, settings.max_tokens_per_micro_batch):
        ids, mask, flat, targets = (t.to(dev) for t in pack([prompts[i] for i in mb], [responses[i] for i in mb],
                                                            pad_id))
        tt = time.perf_counter()
        with torch.no_grad():
            h_t = t_trunk(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
            h_t = h_t.reshape(-1, h_t.shape[-1])[flat]
        teacher_s += time.perf_counter() - tt
        with precision_context(settings.precision, dev):
            h_s = s_trunk(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
        h_s = h_s.reshape(-1, h_s.shape[-1])[flat]
        weight = position_weights([len(responses[i]) for i in mb], objective.loss_agg_mode, n_tokens, n_sequences,
                                  n_all, settings.max_new_tokens)
        out = opd_loss(h_s, s_head, h_t, t_head, targets, objective, weight, settings.chunk_size)
        updater.backward(out.loss)
        loss_total += out.loss.item()
        for k, v in out.metric_sums.items():
            sums[k] += v
        for i, r in zip(mb, out.token_reward.split([len(responses[i]) for i in mb])):
            rewards[i] = r
    return loss_total, sums, rewards, teacher_s


def train_step(step, prompts, prompt_ids, settings, objective, student, s_trunk, s_head, t_trunk, t_head,
               updater, backend, tok, grader, dist=Dist()) -> dict:
    """One update; with several ranks each samples and scores its share of the prompts and
    the record holds the sums over all ranks."""
    t0 = time.perf_counter()
    batch = prompt_order(len(prompts), step, settings.prompts_per_step, settings.seed)[dist.rank::dist.world]
    student.eval()
    with awake(backend, student):
        rollouts = backend.generate(
            [prompt_ids[i] for i in batch],
            SamplingParams(settings.n, settings.temperature, settings.top_p, settings.max_new_tokens,
                           seed=settings.seed * 1_000_003 + step + 7919 * dist.rank),
        )
    t1 = time.perf_counter()
    student.train()
    lengths = [len(r.token_ids) for r in rollouts]
    n_tokens, n_sequences, n_all = (int(x) for x in dist.sum([sum(lengths), sum(n > 0 for n in lengths),
                                                              len(lengths)]))
    loss_total, sums, rewards, teacher_s = accumulate_gradients(
        [prompt_ids[batch[r.prompt_index]] for r in rollouts], [r.token_ids for r in rollouts], settings, objective,
        s_trunk, s_head, t_trunk, t_head, updater, tok.pad_token_id, (n_tokens, n_sequences, n_all))
    grad_norm = updater.step()
    t2 = time.perf_counter()
    correct = [grader.grade(tok.decode(r.token_ids, skip_special_tokens=True),
                            prompts[batch[r.prompt_index]]["answer"]).correct for r in rollouts]
    t3 = time.perf_counter()
    scored = [(float(r.mean()), c, len(r)) for r, c in zip(rewards, correct) if len(r)]  # an empty response has none
    good = [m for m, c, _ in scored if c]
    bad = [m for m, c, _ in scored if not c]
    keys = sorted(sums)
    totals = dist.sum([loss_total, *(sums[k] for k in keys), sum(correct), len(rollouts),
                       sum(r.finish_reason == "length" for r in rollouts), sum(good), len(good), sum(bad), len(bad)])
    loss_total, sums = totals[0], dict(zip(keys, totals[1:1 + len(keys)]))
    n_correct, n_rollouts, n_truncated, good_sum, n_good, bad_sum, n_bad = totals[1 + len(keys):]
    record = {"step": step, "loss": loss_total, **metric_means(sums)}
    record.update({
        "accuracy": n_correct / n_rollouts,
        "rollout_reward_correct": good_sum / n_good if n_good else None,
        "rollout_reward_wrong": bad_sum / n_bad if n_bad else None,
        "response_length": n_tokens / n_rollouts,
        "truncation_rate": n_truncated / n_rollouts,
        "grad_norm": float(grad_norm),
        "lr": updater.optimizer.param_groups[0]["lr"],
        "tokens_per_s": n_tokens / (t2 - t0),
        "rollout_tokens_per_s": n_tokens / max(t1 - t0, 1e-9),
        **peak_gpu_memory_gb(),
        "time_rollout": t1 - t0,
        "time_teacher": teacher_s,
        "time_update": t2 - t1 - teacher_s,
        "time_grading": t3 - t2,
        # per rollout: [mean token reward log q - log p, verifier-correct, length], for the AUROC analysis
        "rollouts": dist.gather([[round(m, 6), int(c), n] for m, c, n in scored]),
    })
    return record
