"""One decode step of a Qwen2 or Qwen3 model, without transformers' per-call bookkeeping.

On small models a decode step through ``model(...)`` is mostly Python: the wrappers'
decorators, keyword plumbing, the cache object and the output classes, around a few dozen
small tensor operations; and the cache grows by concatenation, copying every past key at
every token. This step calls the model's own submodules (embedding, norms, projections,
rotary embedding, MLP, head) and transformers' own SDPA attention function in the order the
model's forward calls them, so its logits are the model's bit for bit (tested), with the
keys and values written into buffers allocated once for the whole rollout.

Only the forward methods above the submodules are bypassed (the causal LM's, the model's,
each decoder layer's and attention's); a model whose forward there is not transformers'
own (another architecture, another attention kernel, a sliding window, hooks such as
ZeRO-3's or offloading's) gets ``None`` and is decoded by ``model(...)`` as before.
"""

from __future__ import annotations

import torch

from ..packing import SDPA_ALIKE


def _families():
    from transformers.models.qwen2 import modeling_qwen2 as q2
    from transformers.models.qwen3 import modeling_qwen3 as q3

    return {
        "qwen2": (q2.Qwen2ForCausalLM, q2.Qwen2Model, q2.Qwen2DecoderLayer, q2.Qwen2Attention, q2.apply_rotary_pos_emb),
        "qwen3": (q3.Qwen3ForCausalLM, q3.Qwen3Model, q3.Qwen3DecoderLayer, q3.Qwen3Attention, q3.apply_rotary_pos_emb),
    }


def _own_forward(module, cls) -> bool:
    """Exactly ``cls``, running ``cls.forward``: no subclass, patched forward or hook."""
    return (type(module) is cls and "forward" not in vars(module)
            and not (module._forward_hooks or module._forward_pre_hooks))


def qwen_decoder(model, cache, capacity: int) -> QwenDecoder | None:
    """A decoder that continues from ``cache`` (the prompt's ``DynamicCache``, from the
    model's own prefill) for up to ``capacity`` positions in all, or ``None`` where the
    model is not one whose forward this step reproduces."""
    family = _families().get(getattr(model.config, "model_type", None))
    if family is None:
        return None
    lm_cls, model_cls, layer_cls, attn_cls, rope = family
    config = model.config
    if (config._attn_implementation not in SDPA_ALIKE or model.training
            or any(t != "full_attention" for t in getattr(config, "layer_types", None) or [])):
        return None
    inner = getattr(model, "model", None)
    if not (_own_forward(model, lm_cls) and _own_forward(inner, model_cls)
            and all(_own_forward(layer, layer_cls) and _own_forward(layer.self_attn, attn_cls)
                    for layer in inner.layers)):
        return None
    if len(getattr(cache, "layers", ())) != len(inner.layers):
        return None
    return QwenDecoder(model, cache, capacity, rope)


class QwenDecoder:
    """Keys and values in buffers of ``capacity`` positions; ``step`` appends one token per
    row and returns its next-token logits."""

    def __init__(self, model, cache, capacity: int, rope):
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        self.model, self.inner, self.rope, self.attend = model, model.model, rope, sdpa_attention_forward
        self.length = cache.layers[0].keys.shape[2]
        if capacity < self.length:
            raise ValueError(f"capacity {capacity} is shorter than the {self.length} cached positions")
        self.keys, self.values = [], []
        for layer in cache.layers:
            for store, x in ((self.keys, layer.keys), (self.values, layer.values)):
                buffer = x.new_empty((*x.shape[:2], capacity, x.shape[3]))
                buffer[:, :, :self.length] = x
                store.append(buffer)

    def step(self, token: torch.Tensor, position_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits (rows, vocab) after ``token`` (rows, 1) at ``position_ids`` (rows, 1), with
        ``attention_mask`` in SDPA's boolean (rows, 1, 1, positions so far) form."""
        n0, n1 = self.length, self.length + token.shape[1]
        if n1 > self.keys[0].shape[2]:
            raise ValueError(f"decoding past the {self.keys[0].shape[2]} positions the buffers hold")
        hidden = self.inner.embed_tokens(token)
        cos_sin = self.inner.rotary_emb(hidden, position_ids)
        for i, layer in enumerate(self.inner.layers):
            hidden = hidden + self._attention(layer.self_attn, layer.input_layernorm(hidden), cos_sin,
                                              attention_mask, i, n0, n1)
            hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
        self.length = n1
        return self.model.lm_head(self.inner.norm(hidden)[:, -1, :])

    def _attention(self, attn, hidden, cos_sin, mask, i, n0, n1):
        shape = (*hidden.shape[:-1], -1, attn.head_dim)
        q, k = attn.q_proj(hidden).view(shape), attn.k_proj(hidden).view(shape)
        if hasattr(attn, "q_norm"):  # Qwen3 normalises each head's query and key
            q, k = attn.q_norm(q), attn.k_norm(k)
        v = attn.v_proj(hidden).view(shape).transpose(1, 2)
        q, k = self.rope(q.transpose(1, 2), k.transpose(1, 2), *cos_sin)
        self.keys[i][:, :, n0:n1], self.values[i][:, :, n0:n1] = k, v
        out, _ = self.attend(attn, q, self.keys[i][:, :, :n1], self.values[i][:, :, :n1], mask,
                             dropout=0.0, scaling=attn.scaling)
        return attn.o_proj(out.reshape(*shape[:-2], -1).contiguous())
