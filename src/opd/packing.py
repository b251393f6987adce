"""Packed micro-batches: a micro-batch's sequences end to end in one row, positions
restarting at each, attention within each sequence only, as the paper's verl trains (its
``use_remove_padding``). No padding is computed and no (tokens x tokens) mask is built:
SDPA on right-padded rows needs a 4D mask, with which it cannot use its flash kernel.

The attention is ``varlen_attention``, registered with transformers as ``opd_varlen``: on
a GPU in bf16/fp16 it is flash-attention's variable-length kernel as PyTorch ships it
(``torch.nn.attention.varlen``, no extra package); elsewhere (the CPU, fp32) causal SDPA
sequence by sequence, the same attention. A call without sequence boundaries (sampling with
a KV cache) is ordinary SDPA, so a model loaded with it samples as before.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F

from .batching import IGNORE, pad_pairs, prediction_positions

ATTENTION = "opd_varlen"
SDPA_ALIKE = ("sdpa", ATTENTION)  # outside a packed row, opd_varlen is SDPA


def pack_row(prompts: list[list[int]], responses: list[list[int]]):
    """One row of prompt + response sequences: ids (1, T), position ids restarting at every
    sequence, the cumulative sequence lengths (int32, n + 1), the longest sequence, the flat
    indices of the positions that predict each response token, and those tokens."""
    ids, positions, labels, bounds = [], [], [], [0]
    for p, r in zip(prompts, responses):
        seq = p + r
        ids += seq
        positions += range(len(seq))
        labels += [IGNORE] * len(p) + r
        bounds.append(bounds[-1] + len(seq))
    labels = torch.tensor(labels)
    where = (labels != IGNORE).nonzero()[:, 0]
    lengths = [b - a for a, b in zip(bounds, bounds[1:])]
    return (torch.tensor([ids]), torch.tensor([positions]), torch.tensor(bounds, dtype=torch.int32),
            max(lengths), where - 1, labels[where])


def forward_kwargs(position_ids: torch.Tensor, bounds: torch.Tensor, longest: int) -> dict:
    """What a model's forward takes for a packed row: no mask to build (a prepared, empty
    mask mapping), the positions, and the sequence boundaries that reach the attention."""
    return {"attention_mask": {"full_attention": None}, "position_ids": position_ids,
            "cu_seq_lens_q": bounds, "cu_seq_lens_k": bounds, "max_length_q": longest, "max_length_k": longest}


def micro_batch_inputs(prompts: list[list[int]], responses: list[list[int]], pad_id: int, packed: bool, device):
    """A micro-batch as a model's forward takes it: right-padded rows and their mask, or one
    packed row; then the flat indices of the positions that predict each response token, and
    those tokens."""
    if packed:
        ids, positions, bounds, longest, flat, targets = pack_row(prompts, responses)
        return (ids.to(device), forward_kwargs(positions.to(device), bounds.to(device), longest), flat.to(device),
                targets.to(device))
    ids, mask, labels = pad_pairs(prompts, responses, pad_id)
    flat, targets = prediction_positions(labels)
    return ids.to(device), {"attention_mask": mask.to(device)}, flat.to(device), targets.to(device)


def varlen_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None,
                     cu_seq_lens_q: torch.Tensor | None = None, max_length_q: int | None = None, **kwargs):
    """transformers' attention interface: (B, H, T, D) in, (B, T, H, D) out."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if cu_seq_lens_q is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    if query.shape[0] != 1:
        raise ValueError("a packed micro-batch is one row")
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # (T, H, D)
    if query.is_cuda and query.dtype in (torch.bfloat16, torch.float16):
        out = _flash_varlen(q, k, v, cu_seq_lens_q.to(query.device), max_length_q, scaling)
    else:
        out = torch.cat([_causal(q[a:b], k[a:b], v[a:b], scaling)
                         for a, b in zip(cu_seq_lens_q.tolist(), cu_seq_lens_q[1:].tolist())])
    return out.unsqueeze(0), None


def _causal(q, k, v, scaling):
    """Causal attention within one sequence, (t, H, D) each; keys and values repeated to the
    query heads (grouped-query attention)."""
    groups = q.shape[1] // k.shape[1]
    k, v = (t.repeat_interleave(groups, dim=1) for t in (k, v))
    out = F.scaled_dot_product_attention(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), is_causal=True,
                                         scale=scaling)
    return out.transpose(0, 1)


def _flash_varlen(q, k, v, bounds, longest, scaling):
    from torch.nn.attention.varlen import varlen_attn

    params = inspect.signature(varlen_attn).parameters
    causal = {"window_size": (-1, 0)} if "window_size" in params else {"is_causal": True}  # torch 2.11+ / 2.10
    if "enable_gqa" in params:
        causal["enable_gqa"] = k.shape[1] != q.shape[1]
    else:
        groups = q.shape[1] // k.shape[1]
        k, v = (t.repeat_interleave(groups, dim=1) for t in (k, v))
    return varlen_attn(q, k, v, bounds, bounds, longest, longest, scale=scaling, **causal)


def register() -> str:
    """Make ``opd_varlen`` an attention implementation transformers models can load with."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(ATTENTION, varlen_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION, sdpa_mask)  # masks for the calls that are not packed
    return ATTENTION


def use_packing(model) -> None:
    """Switch a loaded model's attention to ``opd_varlen``; refused where a packed row would
    attend differently (sliding windows, attention chunks)."""
    cfg = model.config.get_text_config()
    if getattr(cfg, "use_sliding_window", False) or "sliding_attention" in (getattr(cfg, "layer_types", None) or []) \
            or getattr(cfg, "attention_chunk_size", None):
        raise ValueError(f"{cfg.model_type}: train.pack_sequences needs full attention in every layer")
    model.set_attn_implementation(register())
