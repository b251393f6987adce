"""The real Qwen tokenizers rebuilt offline: the released vocabulary sizes, special-token
ids, chat templates and stop tokens; tiny models of the real architectures around them."""

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from opd.config import TOKENIZER_SIZES
from opd.qwen_tokenizers import build_qwen_tokenizer, stop_token_ids
from opd.tiny import TinyRecipe, build_tiny_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Both flavours, saved and loaded back with AutoTokenizer (as every job loads them)."""
    out = {}
    for flavour in ("qwen3", "r1_distill"):
        path = tmp_path_factory.mktemp(flavour)
        build_qwen_tokenizer(flavour).save_pretrained(str(path))
        out[flavour] = path
    return out


def test_vocabulary_sizes_and_special_ids_are_the_released_ones(saved):
    q3 = AutoTokenizer.from_pretrained(saved["qwen3"])
    assert len(q3) == TOKENIZER_SIZES["qwen3"] == 151669
    assert q3.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]) == [
        151643, 151644, 151645, 151667, 151668]
    assert (q3.eos_token, q3.pad_token) == ("<|im_end|>", "<|endoftext|>")
    r1 = AutoTokenizer.from_pretrained(saved["r1_distill"])
    assert len(r1) == TOKENIZER_SIZES["r1_distill"] == 151665
    assert (r1.eos_token_id, r1.bos_token_id, r1.pad_token_id) == (151643, 151646, 151643)
    assert r1.convert_tokens_to_ids(["<｜User｜>", "<｜Assistant｜>", "<think>"]) == [151644, 151645, 151648]
    assert q3.convert_ids_to_tokens(list(range(0, 151643, 15000))) == r1.convert_ids_to_tokens(
        list(range(0, 151643, 15000)))  # one BPE under both


def test_qwen_pretokenizer_splits_digits_and_round_trips(saved):
    tok = AutoTokenizer.from_pretrained(saved["qwen3"])
    ids = tok("Compute 12345 + 6, café, \\boxed{x}", add_special_tokens=False)["input_ids"]
    assert [tok.decode([i]) for i in ids[1:7]] == [" ", "1", "2", "3", "4", "5"]
    assert tok.decode(ids) == "Compute 12345 + 6, café, \\boxed{x}"


def test_chat_templates_render_as_the_released_models(saved):
    q3 = AutoTokenizer.from_pretrained(saved["qwen3"])
    msgs = [{"role": "user", "content": "1+1?"}]
    assert q3.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False) == (
        "<|im_start|>user\n1+1?<|im_end|>\n<|im_start|>assistant\n")
    assert q3.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False, enable_thinking=False).endswith(
        "<|im_start|>assistant\n<think>\n\n</think>\n\n")
    r1 = AutoTokenizer.from_pretrained(saved["r1_distill"])
    assert r1.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False) == (
        "<｜begin▁of▁sentence｜><｜User｜>1+1?<｜Assistant｜><think>\n")
    assert stop_token_ids(q3, "qwen3") == [151645, 151643] and stop_token_ids(r1, "r1_distill") == [151643]


@pytest.mark.parametrize("recipe", [
    TinyRecipe(architecture="qwen3", tokenizer="qwen3", vocab_rows=151936, tie_word_embeddings=True),
    TinyRecipe(architecture="qwen2", tokenizer="r1_distill", vocab_rows=152064, tie_word_embeddings=False),
], ids=["qwen3_tied_151936", "qwen2_untied_152064"])
def test_tiny_models_have_the_real_architecture_and_padded_head(recipe, saved, tmp_path):
    from opd.models import load_tokenizer

    tok = load_tokenizer(saved[recipe.tokenizer])
    build_tiny_model(recipe, tok, tmp_path, show_progress=False)
    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert type(model).__name__ == {"qwen3": "Qwen3ForCausalLM", "qwen2": "Qwen2ForCausalLM"}[recipe.architecture]
    assert model.get_output_embeddings().weight.shape[0] == recipe.vocab_rows > len(tok)
    tied = model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    assert tied == recipe.tie_word_embeddings
    assert model.generation_config.eos_token_id == stop_token_ids(tok, recipe.tokenizer)


def test_hf_backend_stops_at_the_models_own_stop_tokens(saved, tmp_path):
    """Qwen3 chat models stop at <|im_end|> and at <|endoftext|> (generation_config.json),
    as vLLM does: the HF backend must too."""
    from opd.models import load_model, load_tokenizer
    from opd.rollout import make_backend

    tok = load_tokenizer(saved["qwen3"])
    build_tiny_model(TinyRecipe(), tok, tmp_path, show_progress=False)
    backend = make_backend("hf", load_model(tmp_path), tok)
    assert backend.stop_ids == {151645, 151643}


def test_qwen3_chat_modes_render_as_the_released_template(qwen3_tokenizer):
    """Written from the released Qwen3 template (tokenizer_config.json): a user turn is
    ``<|im_start|>user\\n{content}<|im_end|>\\n``, the generation prompt ``<|im_start|>assistant\\n``,
    and only ``enable_thinking is defined and enable_thinking is false`` appends the empty
    think block; thinking (True, or unset) appends nothing: the model opens <think> itself."""
    from opd.chat import ChatFormat
    from opd.data import prompt_token_ids, render_prompt

    template = "{problem}\n\nPlease reason step by step, and put your final answer within \\boxed{}."
    content = "What is 2+3?\n\nPlease reason step by step, and put your final answer within \\boxed{}."
    chat = f"<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n"
    expected = {"bare": content, "chat": chat, "thinking": chat, "non-thinking": chat + "<think>\n\n</think>\n\n"}
    for mode, text in expected.items():
        assert render_prompt(qwen3_tokenizer, "What is 2+3?", template, ChatFormat.parse(mode)) == text, mode
    problem = [{"problem": "What is 2+3?"}]
    thinking, non_thinking = (prompt_token_ids(qwen3_tokenizer, problem, template, ChatFormat.parse(m))[0]
                              for m in ("thinking", "non-thinking"))
    # the same prompt, then the block as the released model reads it: its special think tokens
    assert non_thinking[:len(thinking)] == thinking
    assert qwen3_tokenizer.convert_ids_to_tokens(non_thinking[len(thinking):]) == ["<think>", "ĊĊ", "</think>", "ĊĊ"]
    assert non_thinking[len(thinking)] == 151667 and non_thinking[-2] == 151668


def test_the_config_knows_which_tokenizers_have_a_thinking_switch():
    """The config check refuses enable_thinking on a tiny model whose tokenizer's template
    lacks the switch: it must agree with the templates themselves."""
    from opd.chat import THINKING_SWITCH
    from opd.qwen_tokenizers import FLAVOURS
    from opd.toy.tokenizer import CHAT_TEMPLATE

    assert {f for f, spec in FLAVOURS.items() if "enable_thinking" in spec["chat_template"]} == set(THINKING_SWITCH)
    assert "enable_thinking" not in CHAT_TEMPLATE


def test_a_tiny_model_trains_on_the_prompts_its_mode_renders(qwen3_tokenizer):
    """A tiny non-thinking Qwen3 is trained on prompts with the empty think block, as every
    job will prompt it."""
    import random

    from opd.chat import ChatFormat
    from opd.toy.pretrain import ToyRecipe, make_batch

    think = qwen3_tokenizer.convert_tokens_to_ids("<think>")
    for chat, blocks in ((ChatFormat(), 0), (ChatFormat(enable_thinking=False), 3)):
        ids, _, labels = make_batch(qwen3_tokenizer, ToyRecipe(batch_size=3), random.Random(0), chat)
        prompt_tokens = ids.masked_fill(labels != -100, -1)  # the prompts' positions (and padding)
        assert int((prompt_tokens == think).sum()) == blocks


@pytest.mark.parametrize("architecture, tied", [("qwen3", True), ("qwen2", False)])
def test_the_response_only_head_gives_the_causal_lm_loss_and_gradients(qwen3_tokenizer, architecture, tied):
    """A tiny model trains with the head at the labelled positions only: the same loss and
    gradients as the model's own causal-LM loss over every position."""
    import random

    import torch

    from opd.tiny import tiny_config
    from opd.toy.pretrain import ToyRecipe, make_batch, response_loss

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config(
        TinyRecipe(architecture=architecture, tie_word_embeddings=tied), qwen3_tokenizer))
    ids, mask, labels = make_batch(qwen3_tokenizer, ToyRecipe(batch_size=4), random.Random(0))
    assert (labels == -100).float().mean() > 0.3  # prompts and padding: positions the head skips
    losses, grads = [], []
    for loss_of in (lambda: model(input_ids=ids, attention_mask=mask, labels=labels).loss,
                    lambda: response_loss(model, ids, mask, labels)):
        model.zero_grad()
        loss = loss_of()
        loss.backward()
        losses.append(loss.detach())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-4, atol=1e-7, msg=name)
