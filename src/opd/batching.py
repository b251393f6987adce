"""Batches of (prompt, response) token sequences and the seeded order examples are seen in."""

from __future__ import annotations

import random

import torch

IGNORE = -100


def pad_pairs(prompts: list[list[int]], responses: list[list[int]], pad_id: int):
    """Right-padded prompt + response rows, their attention mask, and labels holding each
    response token at its own position (``IGNORE`` elsewhere), as HF causal LMs take them."""
    width = max(len(p) + len(r) for p, r in zip(prompts, responses))
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    labels = torch.full_like(ids, IGNORE)
    mask = torch.zeros_like(ids)
    for b, (p, r) in enumerate(zip(prompts, responses)):
        ids[b, : len(p) + len(r)] = torch.tensor(p + r)
        labels[b, len(p): len(p) + len(r)] = torch.tensor(r)
        mask[b, : len(p) + len(r)] = 1
    return ids, mask, labels


def prediction_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat (row-major) indices of the positions that predict each response token, one
    before it, and those tokens."""
    pos = (labels.flatten() != IGNORE).nonzero()[:, 0]
    return pos - 1, labels.flatten()[pos]


def pack(prompts: list[list[int]], responses: list[list[int]], pad_id: int):
    """Right-padded ids, mask, the flat indices of the positions that predict each response
    token, and those tokens."""
    ids, mask, labels = pad_pairs(prompts, responses, pad_id)
    return (ids, mask, *prediction_positions(labels))


def epoch_permutation(num: int, epoch: int, seed: int) -> list[int]:
    """The order of ``num`` examples in one epoch: a permutation seeded by (seed, epoch)."""
    perm = list(range(num))
    random.Random(seed * 1_000_003 + epoch).shuffle(perm)
    return perm


def micro_batches(lengths: list[int], size: int, max_tokens: int | None = None,
                  packed: bool = False) -> list[list[int]]:
    """Indices of the sequences in each micro-batch. Without a token budget: ``size`` at a
    time, in order. With ``max_tokens``: sorted by length and filled while the padded batch
    (count x longest; for ``packed`` rows, the sum of the lengths) stays within the budget, so
    long and short sequences are not padded to each other (a sequence longer than the budget
    goes alone). The step's loss does not depend on the grouping: every position's weight is
    a whole-step quantity."""
    order = list(range(len(lengths)))
    if not max_tokens:
        return [order[i:i + size] for i in range(0, len(order), size)]
    order.sort(key=lambda i: lengths[i])
    batches, current = [], []
    for i in order:  # ascending: the newest is the longest
        tokens = sum(lengths[j] for j in current) + lengths[i] if packed else (len(current) + 1) * lengths[i]
        if current and tokens > max_tokens:
            batches.append(current)
            current = []
        current.append(i)
    return batches + ([current] if current else [])


def split_to(batches: list[list[int]], count: int) -> list[list[int]]:
    """The micro-batches split (largest first, in halves) until there are ``count`` of them,
    or every one holds a single sequence. DeepSpeed ZeRO-2 reduces gradients in every
    backward, so every rank must run as many micro-batches as the others."""
    batches = [list(b) for b in batches]
    while len(batches) < count:
        largest = max(range(len(batches)), key=lambda i: len(batches[i]))
        b = batches[largest]
        if len(b) < 2:
            break
        batches[largest:largest + 1] = [b[:len(b) // 2], b[len(b) // 2:]]
    return batches
