"""Supervised fine-tuning on (prompt, response) pairs: the off-policy cold start.

The loss is on response tokens only, normalised by the response tokens of the whole
optimizer step (not per micro-batch). Cosine schedule with linear warmup
(``transformers.get_cosine_schedule_with_warmup``); resumable like OPD.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import get_cosine_schedule_with_warmup

from .. import distributed
from ..batching import epoch_permutation
from ..device_memory import PhaseMemory
from ..losses import chunked_nll
from ..models import hidden_and_head, load_model, load_tokenizer
from ..packing import micro_batch_inputs, use_packing
from .checkpoint import RunDir, StopFlag, content_hash, fingerprinted, source_fingerprint
from .updater import Updater, enable_checkpointing, master_dtype, peak_gpu_memory_gb, precision_context


@dataclass(frozen=True)
class SFTSettings:
    epochs: int = 1
    lr: float = 1e-5
    warmup_ratio: float = 0.05
    batch_size: int = 32
    micro_batch_size: int = 4
    max_tokens_per_micro_batch: int | None = None
    pack_sequences: bool = False
    precision: str = "fp32"
    gradient_checkpointing: bool = False
    max_length: int = 14336
    chunk_size: int = 1024  # positions per chunk of the loss's logits
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    checkpoint_every: int = 50
    keep_checkpoints: int = 1
    keep_final_checkpoint: bool = False
    seed: int = 0
    deepspeed: str | None = None
    collective_timeout_min: float = 60


def synthetic_pairs(tok, count: int, length: int, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    """``count`` (prompt, response) pairs of random ordinary tokens, ``length`` in all (a tenth
    of it prompt): a job's real lengths without its data, for the canary."""
    g = torch.Generator().manual_seed(seed)
    ordinary = len(tok) - len(tok.all_special_ids)
    prompt = max(1, length // 10)
    pairs = []
    for _ in range(count):
        ids = torch.randint(0, ordinary, (length,), generator=g).tolist()
        pairs.append((ids[:prompt], ids[prompt:]))
    return pairs


def tokenize_pairs(tok, rows: list, max_length: int) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, response ids + EOS), response cut so the pair fits ``max_length``; rows that
    are pairs of ids already (:func:`synthetic_pairs`) pass as they are."""
    if rows and isinstance(rows[0], tuple):
        return rows
    out = []
    for row in rows:
        p = tok(row["prompt"], add_special_tokens=False)["input_ids"]
        r = tok(row["response"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        out.append((p, r[: max(0, max_length - len(p))]))
    return [(p, r) for p, r in out if r]


def batch_indices(num: int, step: int, batch_size: int, seed: int) -> list[int]:
    """Examples of a step (1-based); each epoch is a seeded permutation, its last partial
    batch dropped."""
    steps_per_epoch = max(1, num // batch_size)
    epoch, k = divmod(step - 1, steps_per_epoch)
    return epoch_permutation(num, epoch, seed)[k * batch_size:(k + 1) * batch_size]


def train(model_path: str, rows: list[dict], settings: SFTSettings, run_dir: str | Path, device: str = "cpu",
          trust_remote_code: bool = False):
    """Returns (model, tokenizer, run dir); checkpoints and exits EXIT_REQUEUE on a signal."""
    stop = StopFlag()
    t_start = time.perf_counter()
    dist = distributed.init(settings.collective_timeout_min)
    if settings.batch_size < dist.world:
        raise ValueError(f"sft train.batch_size ({settings.batch_size}) is below the {dist.world} ranks: "
                         "every rank needs an example")
    device = dist.device(device)
    tok = load_tokenizer(model_path, trust_remote_code)
    model = load_model(model_path, master_dtype(settings.precision, settings.deepspeed), device, trust_remote_code)
    if settings.pack_sequences:
        use_packing(model)
    enable_checkpointing(model, settings.gradient_checkpointing)
    trunk, head = hidden_and_head(model)
    pairs = tokenize_pairs(tok, rows, settings.max_length)
    if len(pairs) < settings.batch_size:
        raise ValueError(f"{len(pairs)} SFT examples are fewer than one batch of {settings.batch_size}")
    total = settings.epochs * (len(pairs) // settings.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    updater = Updater(model, opt, settings.grad_clip, dist, settings.deepspeed, settings.precision)
    sched = get_cosine_schedule_with_warmup(opt, math.ceil(settings.warmup_ratio * total), total)
    run = RunDir(run_dir, {"model": source_fingerprint(model_path), "settings": fingerprinted(settings),
                           "examples": content_hash(pairs)}, dist=dist, keep=settings.keep_checkpoints)
    start, _ = run.load(model, updater, sched)
    run.truncate_log(start)
    run.note_start(start)
    model.train()
    memory = PhaseMemory(device)
    memory.mark("after_startup")
    startup_s = time.perf_counter() - t_start
    with run.open_log() as log:
        for step in range(start + 1, total + 1):
            t0 = time.perf_counter()
            # each rank takes every world-th example; the loss is normalised by all ranks' tokens
            indices = batch_indices(len(pairs), step, settings.batch_size, settings.seed)[dist.rank::dist.world]
            batch = [pairs[i] for i in indices]
            n_tokens = int(dist.sum([sum(len(r) for _, r in batch)])[0])
            loss_total = 0.0
            for mb in updater.micro_batches([len(p) + len(r) for p, r in batch], settings.micro_batch_size,
                                            settings.max_tokens_per_micro_batch, settings.pack_sequences):
                filler = not mb  # another rank's extra micro-batch: the same collectives, at weight 0
                micro = [batch[i] for i in mb or [0]]
                ids, model_kwargs, flat, targets = micro_batch_inputs(
                    [p for p, _ in micro], [r for _, r in micro], tok.pad_token_id, settings.pack_sequences, device)
                with precision_context(settings.precision, device):
                    h = trunk(input_ids=ids, use_cache=False, **model_kwargs).last_hidden_state
                nll = chunked_nll(h.reshape(-1, h.shape[-1])[flat], head, targets, settings.chunk_size)
                loss = nll / max(1, n_tokens) * (0 if filler else 1)
                updater.backward(loss)
                loss_total += loss.item()
            (loss_total,) = dist.sum([loss_total])
            grad_norm = updater.step()
            sched.step()
            memory.mark("after_update")
            log.write(json.dumps({"step": step, "loss": loss_total, "grad_norm": float(grad_norm),
                                  "lr": sched.get_last_lr()[0], "tokens": n_tokens,
                                  "seconds": time.perf_counter() - t0, **peak_gpu_memory_gb(),
                                  **memory.take(), **({"time_startup": startup_s} if step == start + 1 else {})})
                      + "\n")
            log.flush()
            run.end_step(step, total, settings.checkpoint_every, stop, model, updater, sched)
    model.eval()
    return model, tok, run
