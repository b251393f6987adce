"""On-policy distillation: the student samples, the teacher scores the student's tokens.

One step: sample ``n`` rollouts for each of ``prompts_per_step`` prompts from the student;
run the teacher and the student over prompt + response; the loss (``opd.losses``) is taken
at every response position; one optimizer update per rollout batch (the paper's default,
so the PPO ratio stays 1). The verifier's accuracy on the rollouts is logged, never
trained on. Checkpoints go to a run directory and a killed run resumes from the last one.

Each model reads a prompt as its own chat settings render it (``opd.chat``): a teacher
whose rendering differs from the student's (a non-thinking Qwen3 teacher's empty think
block, another chat template) scores the student's response tokens after its own prompt,
as the released code's ``input_tokenizer`` does; the two must share one vocabulary.

With several ranks every rank samples, scores and validates its share; with vLLM each
rank's engine sleeps through the update (``opd.rollout.vllm``). The step log records the
memory in use at each phase boundary as the device counts it (``opd.device_memory``).
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from .. import distributed
from ..batching import epoch_permutation
from ..chat import ChatFormat
from ..data import prompt_token_ids
from ..device_memory import PhaseMemory
from ..distributed import Dist
from ..evaluation import evaluate_over_ranks
from ..grading import Grader
from ..losses import opd_loss
from ..objective import SUMS, Objective, metric_means, position_weights
from ..models import hidden_and_head, load_model, load_tokenizer, same_tokenizer
from ..packing import micro_batch_inputs, use_packing
from ..rollout import SamplingParams, check_prompt_lengths, make_backend
from ..rollout.hf import HFBackend
from .checkpoint import RunDir, StopFlag, content_hash, fingerprinted, source_fingerprint
from .teacher import Teacher
from .updater import Updater, enable_checkpointing, master_dtype, peak_gpu_memory_gb, precision_context


@dataclass(frozen=True)
class OPDSettings:
    steps: int = 280
    prompts_per_step: int = 64
    n: int = 4
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 7168
    max_prompt_tokens: int = 1024
    lr: float = 1e-6
    warmup_steps: int = 0
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    micro_batch_size: int = 8
    max_tokens_per_micro_batch: int | None = None
    pack_sequences: bool = False
    precision: str = "fp32"
    gradient_checkpointing: bool = False
    rollout_batch_size: int = 64
    chunk_size: int = 64
    rollout_backend: str = "hf"
    vllm_gpu_memory_utilization: float = 0.4
    deepspeed: str | None = None
    teacher_sharding: str = "replicated"
    collective_timeout_min: float = 60
    eval_every: int = 20
    eval_n: int = 4
    eval_max_new_tokens: int | None = None  # None: max_new_tokens
    eval_temperature: float = 0.7
    eval_top_p: float = 0.95
    checkpoint_every: int = 20
    keep_checkpoints: int = 1
    keep_final_checkpoint: bool = False
    seed: int = 0


@contextmanager
def awake(backend, student, memory: PhaseMemory, times: dict):
    """A separate rollout engine (vLLM) wakes with the student's current weights and sleeps
    again before the update; the HF backend samples from the student itself. Marks the
    memory in use at each boundary and times the wake-up (the weight sync included, and
    also apart) and the sleep."""
    if isinstance(backend, HFBackend):
        yield
        return
    memory.mark("before_wake")
    t0 = time.perf_counter()
    backend.wake_up(weights_from=student)
    times["time_wake"] = times.get("time_wake", 0.0) + time.perf_counter() - t0
    times["time_weight_sync"] = times.get("time_weight_sync", 0.0) + backend.sync_s  # part of the wake
    memory.mark("after_wake")
    try:
        yield
    finally:
        memory.mark("after_sampling")
        t0 = time.perf_counter()
        backend.sleep()
        times["time_sleep"] = times.get("time_sleep", 0.0) + time.perf_counter() - t0
        memory.mark("after_sleep")


def validation_tokens(settings: OPDSettings) -> int:
    """The validation responses' limit: the paper validated at 31,744 tokens, far beyond its
    7,168-token rollouts."""
    return settings.eval_max_new_tokens or settings.max_new_tokens


def longest_response(settings: OPDSettings) -> int:
    """The longest response the rollout engine must hold: a rollout's or a validation's."""
    return max(settings.max_new_tokens, validation_tokens(settings))


class TokenizerMismatch(ValueError):
    pass


def prompt_order(num_prompts: int, step: int, per_step: int, seed: int) -> list[int]:
    """Prompt indices of a step (1-based): epochs are seeded permutations, back to back."""
    first_epoch, last_epoch = (step - 1) * per_step // num_prompts, (step * per_step - 1) // num_prompts
    order = [i for e in range(first_epoch, last_epoch + 1) for i in epoch_permutation(num_prompts, e, seed)]
    start = (step - 1) * per_step - first_epoch * num_prompts
    return order[start:start + per_step]


def check_prompt_budget(prompt_ids: list[list[int]], ids: list, limit: int, what: str) -> None:
    """Every prompt within ``max_prompt_tokens``: the rollout engine's context and the memory
    plan are sized for it (a longer one would fail mid-run, on a GPU)."""
    for i, p in zip(ids, prompt_ids):
        if len(p) > limit:
            raise ValueError(f"{what} problem {i!r} is {len(p)} tokens long, over train.max_prompt_tokens "
                             f"({limit}): raise it or drop the problem")


def own_prompts(student_ids: list[list[int]], teacher_ids: list[list[int]]) -> list[list[int]] | None:
    """The teacher's own prompt ids where its rendering differs from the student's; None where
    they are the same (the teacher then reads the student's micro-batches: no extra work)."""
    return None if teacher_ids == student_ids else teacher_ids


def chat_fingerprint(chat: ChatFormat, teacher_chat: ChatFormat, teacher_prompt_ids) -> dict:
    """What the run directory records of the chat settings: nothing at the defaults with one
    rendering for both models (so runs from before the setting resume), else the modes and
    the teacher's prompts."""
    out = {}
    if chat.mode != "chat" or teacher_chat.mode != "chat":
        out["chat"] = {"student": chat.mode, "teacher": teacher_chat.mode}
    if teacher_prompt_ids is not None:
        out["teacher_prompts"] = content_hash(teacher_prompt_ids)
    return out


def check_tokenizers(student_tok, teacher_tok, student: str, teacher: str) -> None:
    if not same_tokenizer(student_tok, teacher_tok):
        raise TokenizerMismatch(
            f"student {student} and teacher {teacher} have different tokenizers (vocabulary or "
            "special tokens differ): the teacher cannot score the student's tokens"
        )


def train(student_path: str, teacher_path: str, prompts: list[dict], benchmarks: dict[str, list[dict]],
          settings: OPDSettings, objective: Objective, run_dir: str | Path, *, template: str, chat: ChatFormat,
          teacher_chat: ChatFormat, grading: dict, device: str = "cpu", teacher_dtype: str = "float32",
          student_dtype: str = "float32", trust_remote_code: bool = False, teacher_trust_remote_code: bool = False,
          prompts_source: str = "prompts"):
    """Train; returns (student, tokenizer, run dir) for the caller to save. On SIGTERM or
    SIGUSR2 it checkpoints and exits with EXIT_REQUEUE. ``student_dtype`` is the model's own
    dtype, which a vLLM rollout engine samples in. Each model renders prompts with its own
    tokenizer's chat template and its own ``*chat`` settings, and runs remote code only if
    its own ``*trust_remote_code`` says so. ``prompts_source`` names the prompts in errors."""
    stop = StopFlag()
    t_start = time.perf_counter()
    # the loss scores the distribution the rollouts were sampled from, as the released code
    # does; greedy rollouts (temperature 0, tests only: the schema refuses it) at 1
    objective = replace(objective, student_temperature=settings.temperature or 1.0)
    dist = distributed.init(settings.collective_timeout_min)
    if settings.prompts_per_step < dist.world:
        raise ValueError(f"train.prompts_per_step ({settings.prompts_per_step}) is below the {dist.world} ranks: "
                         "every rank needs a prompt")
    if len(prompts) < settings.prompts_per_step:
        raise ValueError(f"{prompts_source}: {len(prompts)} prompts, fewer than train.prompts_per_step "
                         f"({settings.prompts_per_step}): each step would train on some prompts several times; "
                         "lower prompts_per_step or give the set more prompts")
    device = dist.device(device)
    tok = load_tokenizer(student_path, trust_remote_code)
    teacher_tok = load_tokenizer(teacher_path, teacher_trust_remote_code)
    check_tokenizers(tok, teacher_tok, student_path, teacher_path)
    prompt_ids = prompt_token_ids(tok, prompts, template, chat)
    teacher_prompt_ids = own_prompts(prompt_ids, prompt_token_ids(teacher_tok, prompts, template, teacher_chat))
    check_prompt_budget(prompt_ids, [p["id"] for p in prompts], settings.max_prompt_tokens, "prompt")
    if teacher_prompt_ids:
        check_prompt_budget(teacher_prompt_ids, [p["id"] for p in prompts], settings.max_prompt_tokens,
                            "the teacher's rendering of prompt")
    for name, problems in benchmarks.items():  # before any model is loaded
        check_prompt_budget(prompt_token_ids(tok, problems, template, chat), [p["id"] for p in problems],
                            settings.max_prompt_tokens, f"benchmark {name}")
    student = load_model(student_path, master_dtype(settings.precision, settings.deepspeed), device,
                         trust_remote_code)
    teacher_model = load_model(teacher_path, teacher_dtype, device, teacher_trust_remote_code)
    if settings.pack_sequences:
        use_packing(student)
        use_packing(teacher_model)
    teacher = Teacher(teacher_model, settings.teacher_sharding, dist)
    enable_checkpointing(student, settings.gradient_checkpointing)
    s_trunk, s_head = hidden_and_head(student)
    opt = torch.optim.AdamW(student.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    updater = Updater(student, opt, settings.grad_clip, dist, settings.deepspeed, settings.precision,
                      equal_micro_batches=teacher.sharded)
    # constant after an optional linear warmup (the paper: constant 1e-6, no warmup)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, settings.warmup_steps)))
    run = RunDir(run_dir, {"student": source_fingerprint(student_path), "teacher": source_fingerprint(teacher_path),
                           "settings": fingerprinted(settings), "objective": asdict(objective),
                           "template": template, "prompts": content_hash(prompts),
                           **chat_fingerprint(chat, teacher_chat, teacher_prompt_ids)}, dist=dist,
                 keep=settings.keep_checkpoints)
    start, _ = run.load(student, updater, sched)
    run.truncate_log(start)
    run.note_start(start)
    check_prompt_lengths(prompt_ids, student.config.max_position_embeddings, [p["id"] for p in prompts])
    if teacher_prompt_ids:
        check_prompt_lengths(teacher_prompt_ids, teacher_model.config.max_position_embeddings,
                             [p["id"] for p in prompts])
    memory = PhaseMemory(device)
    memory.mark("after_startup")  # models loaded, optimizer and any ZeRO partitions built
    if settings.rollout_backend == "vllm":
        # the engine's limits are the study's: its prompt + response, a rank's rollouts or validation samples
        per_rank = -(-settings.prompts_per_step // dist.world) * settings.n
        val_per_rank = max((-(-len(b) // dist.world) * settings.eval_n for b in benchmarks.values()), default=0)
        backend = make_backend("vllm", student_path, colocated=True, seed=dist.seed(settings.seed),
                               dtype=student_dtype, gpu_memory_utilization=settings.vllm_gpu_memory_utilization,
                               max_model_len=settings.max_prompt_tokens + longest_response(settings),
                               max_num_seqs=max(per_rank, val_per_rank), trust_remote_code=trust_remote_code)
    else:
        backend = HFBackend(student, tok, batch_size=settings.rollout_batch_size, progress=False)
    eval_sampling = SamplingParams(settings.eval_n, settings.eval_temperature, settings.eval_top_p,
                                   validation_tokens(settings), settings.seed)
    startup_s = time.perf_counter() - t_start

    def validate() -> dict:
        """Every rank validates its share of each benchmark; all get the whole result."""
        student.eval()
        t0 = time.perf_counter()
        with awake(backend, student, PhaseMemory(device), {}):
            results = {name: evaluate_over_ranks(backend, tok, probs, eval_sampling, template, chat, grader, dist)[0]
                       for name, probs in benchmarks.items()}
        return {"val": {name: m[f"avg@{settings.eval_n}"] for name, m in results.items()},
                "val_problems_per_rank": {name: m["problems_per_rank"] for name, m in results.items()},
                "time_validation": time.perf_counter() - t0}

    try:
        with Grader(**grading) as grader, run.open_log() as log:
            if start == 0 and benchmarks:
                log.write(json.dumps({"step": 0, **validate()}) + "\n")
            for step in range(start + 1, settings.steps + 1):
                record = train_step(step, prompts, prompt_ids, settings, objective, student, s_trunk, s_head,
                                    teacher, updater, backend, tok, grader, dist, memory, teacher_prompt_ids)
                if step == start + 1:
                    record["time_startup"] = startup_s  # loading, partitioning, the engine's start
                sched.step()
                if benchmarks and (step % settings.eval_every == 0 or step == settings.steps):
                    record.update(validate())
                log.write(json.dumps(record) + "\n")
                log.flush()
                if dist.main:
                    print(f"step {step}: loss {record['loss']:.4f} overlap {record['overlap_ratio']:.3f} "
                          f"acc {record['accuracy']:.3f} {record.get('val', '')}", flush=True)
                t0 = time.perf_counter()
                run.end_step(step, settings.steps, settings.checkpoint_every, stop, student, updater, sched,
                             {"data_position": step * settings.prompts_per_step})
                if dist.main and step % settings.checkpoint_every == 0:
                    print(f"checkpoint at step {step}: {time.perf_counter() - t0:.1f} s", flush=True)
    finally:
        backend.close()  # vLLM's engine (and, in-process, the default process group): after the last collective
    return student, tok, run


def accumulate_gradients(prompts: list[list[int]], responses: list[list[int]], settings, objective, s_trunk, s_head,
                         teacher: Teacher, updater, pad_id: int, step_counts: tuple[int, int, int],
                         teacher_prompts: list[list[int]] | None = None):
    """Forward and backward over these sequences in micro-batches (``micro_batch_size`` each,
    or length-grouped under ``max_tokens_per_micro_batch``), the student's forward in the
    training precision. ``step_counts``: the whole step's tokens, non-empty sequences and
    sequences over all ranks, which weigh every position. A rank with fewer micro-batches
    than the others runs the missing ones on its first sequence at weight 0 (the same
    collectives, no contribution). ``teacher_prompts``: the teacher's own rendering of each
    sequence's prompt, where it differs from the student's; the teacher then reads its own
    micro-batch of those prompts and the same responses, and each model's loss positions
    are the response positions of its own input. Returns the loss, the metric sums, each
    sequence's token rewards (in the given order) and the teacher's seconds."""
    n_tokens, n_sequences, n_all = step_counts
    sums = dict.fromkeys(SUMS, 0.0)
    loss_total, teacher_s = 0.0, 0.0
    rewards: list = [None] * len(responses)
    dev = s_head.device
    longest_prompts = prompts if teacher_prompts is None else [max(p, t, key=len)
                                                               for p, t in zip(prompts, teacher_prompts)]
    for mb in updater.micro_batches([len(p) + len(r) for p, r in zip(longest_prompts, responses)],
                                    settings.micro_batch_size, settings.max_tokens_per_micro_batch,
                                    settings.pack_sequences):
        filler = not mb
        mb = mb or [0]
        mb_responses = [responses[i] for i in mb]
        ids, model_kwargs, flat, targets = micro_batch_inputs([prompts[i] for i in mb], mb_responses, pad_id,
                                                              settings.pack_sequences, dev)
        t_ids, t_kwargs, t_flat = ids, model_kwargs, flat
        if teacher_prompts is not None:  # the same response tokens, in the same order, after the teacher's prompts
            t_ids, t_kwargs, t_flat, _ = micro_batch_inputs([teacher_prompts[i] for i in mb], mb_responses, pad_id,
                                                            settings.pack_sequences, dev)
        tt = time.perf_counter()
        h_t = teacher.hidden(t_ids, **t_kwargs)
        h_t = h_t.reshape(-1, h_t.shape[-1])[t_flat]
        teacher_s += time.perf_counter() - tt
        with precision_context(settings.precision, dev):
            h_s = s_trunk(input_ids=ids, use_cache=False, **model_kwargs).last_hidden_state
        h_s = h_s.reshape(-1, h_s.shape[-1])[flat]
        weight = position_weights([len(responses[i]) for i in mb], objective.loss_agg_mode, n_tokens, n_sequences,
                                  n_all, settings.max_new_tokens)
        with teacher.head() as t_head:
            out = opd_loss(h_s, s_head, h_t, t_head, targets, objective, weight * (0 if filler else 1),
                           settings.chunk_size)
        updater.backward(out.loss)
        if filler:
            continue
        loss_total += out.loss.item()
        for k, v in out.metric_sums.items():
            sums[k] += v
        for i, r in zip(mb, out.token_reward.split([len(responses[i]) for i in mb])):
            rewards[i] = r
    return loss_total, sums, rewards, teacher_s


def train_step(step, prompts, prompt_ids, settings, objective, student, s_trunk, s_head, teacher: Teacher,
               updater, backend, tok, grader, dist=Dist(), memory: PhaseMemory | None = None,
               teacher_prompt_ids: list[list[int]] | None = None) -> dict:
    """One update; with several ranks each samples and scores its share of the prompts and
    the record holds the sums over all ranks. ``teacher_prompt_ids``: the teacher's own
    rendering of every prompt, where it differs from the student's (:func:`own_prompts`)."""
    memory = memory or PhaseMemory(str(s_head.device))
    times: dict = {}
    t0 = time.perf_counter()
    batch = prompt_order(len(prompts), step, settings.prompts_per_step, settings.seed)[dist.rank::dist.world]
    student.eval()
    with awake(backend, student, memory, times):
        rollouts = backend.generate(
            [prompt_ids[i] for i in batch],
            SamplingParams(settings.n, settings.temperature, settings.top_p, settings.max_new_tokens,
                           seed=dist.seed(settings.seed * 1_000_003 + step)),
        )
    t1 = time.perf_counter()
    student.train()
    lengths = [len(r.token_ids) for r in rollouts]
    # the first collective after sampling, whose length differs between ranks: on the default group
    n_tokens, n_sequences, n_all = (int(x) for x in dist.sum([sum(lengths), sum(n > 0 for n in lengths),
                                                              len(lengths)]))
    t_wait = time.perf_counter()
    loss_total, sums, rewards, teacher_s = accumulate_gradients(
        [prompt_ids[batch[r.prompt_index]] for r in rollouts], [r.token_ids for r in rollouts], settings, objective,
        s_trunk, s_head, teacher, updater, tok.pad_token_id, (n_tokens, n_sequences, n_all),
        None if teacher_prompt_ids is None else [teacher_prompt_ids[batch[r.prompt_index]] for r in rollouts])
    grad_norm = updater.step()
    t2 = time.perf_counter()
    memory.mark("after_update")
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
        "update_tokens_per_s": n_tokens / max(t2 - t_wait, 1e-9),
        **peak_gpu_memory_gb(),
        **memory.take(),
        "time_rollout": t1 - t0,
        "time_wait": t_wait - t1,
        "time_teacher": teacher_s,
        "time_update": t2 - t_wait - teacher_s,
        "time_grading": t3 - t2,
        **times,
        # per rollout: [mean token reward log q - log p, verifier-correct, length], for the AUROC analysis
        "rollouts": dist.gather([[round(m, 6), int(c), n] for m, c, n in scored]),
    })
    return record
