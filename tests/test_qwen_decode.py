import functools

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config, Qwen3Config

from opd.rollout import SamplingParams, make_backend
from opd.rollout.qwen_decode import qwen_decoder

VOCAB = 50


def tiny(kind: str, **overrides):
    """Random tiny models of the paper's two families as released: Qwen3 with tied embeddings
    and per-head query/key norms, Qwen2 with an untied head and attention biases; both with
    grouped key/value heads."""
    torch.manual_seed(0)
    common = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    if kind == "qwen3":
        config = Qwen3Config(**common, head_dim=8, tie_word_embeddings=True, **overrides)
    elif kind == "qwen2":
        config = Qwen2Config(**common, tie_word_embeddings=False, **overrides)
    else:
        config = LlamaConfig(**common, **overrides)
    model = AutoModelForCausalLM.from_config(config).eval()
    if kind == "qwen2":  # nonzero biases, so that dropping one would show
        with torch.no_grad():
            for layer in model.model.layers:
                for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                    proj.bias.normal_()
    return model


def left_padded(lengths):
    width = max(lengths)
    ids = torch.randint(1, VOCAB, (len(lengths), width))
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        mask[row, width - n:] = 1
    return ids, mask


@pytest.mark.parametrize("kind", ["qwen3", "qwen2"])
@torch.inference_mode()
def test_the_decoder_gives_the_models_own_logits_bit_for_bit(kind):
    model = tiny(kind)
    torch.manual_seed(1)
    ids, mask = left_padded([3, 7, 5, 1])
    steps = 30
    forced = torch.randint(1, VOCAB, (ids.shape[0], steps))  # the same tokens fed to both
    full = torch.cat([mask, mask.new_ones(ids.shape[0], steps)], 1).bool()[:, None, None, :]
    position = (mask.cumsum(-1) - 1).clamp(min=0)
    prefill = dict(input_ids=ids, attention_mask=mask, position_ids=position, use_cache=True, logits_to_keep=1)
    model(**prefill)  # a first call may take other kernels than later ones
    theirs, ours = model(**prefill), model(**prefill)
    decoder = qwen_decoder(model, ours.past_key_values, ids.shape[1] + steps)
    assert decoder is not None
    width, pos = ids.shape[1], position[:, -1:]
    for t in range(steps):
        pos = pos + 1
        theirs = model(input_ids=forced[:, t:t + 1], attention_mask=full[..., :width + t + 1], position_ids=pos,
                       past_key_values=theirs.past_key_values, use_cache=True)
        logits = decoder.step(forced[:, t:t + 1], pos, full[..., :width + t + 1])
        assert torch.equal(logits, theirs.logits[:, -1, :]), t
    with pytest.raises(ValueError, match="past the"):
        decoder.step(forced[:, :1], pos + 1, full)


@pytest.mark.parametrize("kind", ["qwen3", "qwen2"])
def test_rollouts_choose_the_same_tokens_with_and_without_the_decoder(kind, monkeypatch):
    model = tiny(kind)
    backend = make_backend("hf", model, type("Tok", (), {"pad_token_id": 0, "eos_token_id": 1})(),
                           batch_size=16, progress=False)
    prompts = [[5, 6, 7], [8], [9, 10, 11, 12, 13], [2, 3]]
    sampling = SamplingParams(n=3, temperature=0.7, top_p=0.95, max_new_tokens=40, seed=4)
    with_decoder = backend.generate(prompts, sampling)
    monkeypatch.setattr("opd.rollout.hf.qwen_decoder", lambda *a: None)
    without = backend.generate(prompts, sampling)
    assert [r.token_ids for r in with_decoder] == [r.token_ids for r in without]
    assert {r.finish_reason for r in without} == {"stop", "length"}


def test_models_whose_forward_it_does_not_reproduce_decode_through_their_own():
    def decoder_for(model):
        ids, mask = left_padded([2, 4])
        with torch.inference_mode():
            out = model(input_ids=ids, attention_mask=mask, use_cache=True)
        return qwen_decoder(model, out.past_key_values, 16)

    assert decoder_for(tiny("qwen3")) is not None
    assert decoder_for(tiny("llama")) is None  # another architecture
    assert decoder_for(tiny("qwen3", attn_implementation="eager")) is None
    assert decoder_for(tiny("qwen2", use_sliding_window=True, sliding_window=4, max_window_layers=0)) is None
    hooked = tiny("qwen3")
    hooked.model.layers[1].register_forward_hook(lambda *a: None)  # as ZeRO-3 or offloading would
    assert decoder_for(hooked) is None
    patched = tiny("qwen3")
    attn = patched.model.layers[0].self_attn
    attn.forward = functools.partial(type(attn).forward, attn)  # as a wrapper around the forward would
    assert decoder_for(patched) is None
    assert decoder_for(tiny("qwen3").train()) is None
