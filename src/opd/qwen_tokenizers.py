"""The real Qwen tokenizers, rebuilt offline for rehearsals of the paper's configs.

Qwen2/2.5/3 and the DeepSeek-R1-Distill-Qwen models share one byte-level BPE vocabulary
of 151,643 tokens; they differ in the special tokens appended after it and in their chat
templates. The vocabulary comes from ``qwen.tiktoken`` as shipped by the ``qwen-agent``
package (Apache-2.0, published by the Qwen team, on PyPI), converted with transformers'
tiktoken converter; the pre-tokenizer is Qwen's (single digits, NFC normalisation). The
special tokens and the chat templates are the released models' (for the messages this
workflow sends: system, user, assistant; no tools), so prompts, stop tokens and
vocabulary sizes are those a cluster run meets.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tokenizers import AddedToken, normalizers
from transformers import PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import TikTokenConverter

BPE_SIZE = 151_643
QWEN_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# Qwen2.5's added tokens (ids 151643-151664); Qwen3 appends four more (to 151668).
_QWEN_COMMON = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>",
                "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
                "<|repo_name|>", "<|file_sep|>"]
# DeepSeek-R1-Distill-Qwen's added tokens (ids 151643-151664).
_R1 = ["<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "<｜begin▁of▁sentence｜>", "<|EOT|>", "<think>",
       "</think>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
       "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>",
       "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"]
# added tokens that are ordinary text to the released tokenizers (not skipped when decoding)
_NOT_SPECIAL = {"<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>",
                "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>",
                "<|file_sep|>", "<｜User｜>", "<｜Assistant｜>"}

QWEN3_CHAT_TEMPLATE = (
    "{%- if messages[0].role == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'user' or (message.role == 'system' and not loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- elif message.role == 'assistant' %}"
    "{%- set content = message.content %}"
    "{%- if '</think>' in content %}"
    "{%- set content = content.split('</think>')[-1].lstrip('\\n') %}"
    "{%- endif %}"
    "{{- '<|im_start|>assistant\\n' + content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{%- endif %}"
)

R1_DISTILL_CHAT_TEMPLATE = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
    "{% set ns = namespace(system_prompt='') %}"
    "{%- for message in messages %}{%- if message['role'] == 'system' %}"
    "{% set ns.system_prompt = message['content'] %}{%- endif %}{%- endfor %}"
    "{{ bos_token }}{{ ns.system_prompt }}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'user' %}{{ '<｜User｜>' + message['content'] }}"
    "{%- elif message['role'] == 'assistant' %}"
    "{% set content = message['content'] %}"
    "{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}"
    "{{ '<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{% if add_generation_prompt %}{{ '<｜Assistant｜><think>\\n' }}{% endif %}"
)

# flavour -> added tokens, roles, chat template, the stop tokens of generation_config.json, and
# the bos token of the models' config.json (Qwen3's names <|endoftext|> though its tokenizer has no bos)
FLAVOURS = {
    "qwen3": {
        "added": _QWEN_COMMON + ["<tool_response>", "</tool_response>", "<think>", "</think>"],
        "roles": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
        "chat_template": QWEN3_CHAT_TEMPLATE,
        "stop": ["<|im_end|>", "<|endoftext|>"],
        "config_bos": "<|endoftext|>",
    },
    "r1_distill": {
        "added": _R1,
        "roles": {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>",
                  "pad_token": "<｜end▁of▁sentence｜>"},
        "chat_template": R1_DISTILL_CHAT_TEMPLATE,
        "stop": ["<｜end▁of▁sentence｜>"],
        "config_bos": "<｜begin▁of▁sentence｜>",
    },
}


def qwen_tiktoken_file() -> Path:
    """``qwen.tiktoken`` inside the installed ``qwen-agent`` package (located, not imported)."""
    spec = importlib.util.find_spec("qwen_agent")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("Qwen's vocabulary comes from the qwen-agent package: "
                                "pip install 'opd-workflow[rehearsal]'")
    path = Path(next(iter(spec.submodule_search_locations))) / "utils" / "qwen.tiktoken"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found in the installed qwen-agent")
    return path


def build_qwen_tokenizer(flavour: str, vocab_file: str | Path | None = None) -> PreTrainedTokenizerFast:
    """The tokenizer of a flavour (``qwen3`` or ``r1_distill``): Qwen's BPE plus its added tokens."""
    if flavour not in FLAVOURS:
        raise ValueError(f"unknown tokenizer flavour {flavour!r}; expected one of {sorted(FLAVOURS)}")
    spec = FLAVOURS[flavour]
    core = TikTokenConverter(vocab_file=str(vocab_file or qwen_tiktoken_file()), pattern=QWEN_PATTERN).converted()
    if core.get_vocab_size() != BPE_SIZE:
        raise ValueError(f"{vocab_file}: {core.get_vocab_size()} BPE tokens, expected {BPE_SIZE}")
    core.normalizer = normalizers.NFC()
    # appended in the released order, so that every id is the real model's
    core.add_tokens([AddedToken(t, special=t not in _NOT_SPECIAL, normalized=False) for t in spec["added"]])
    tok = PreTrainedTokenizerFast(tokenizer_object=core, model_max_length=131072, padding_side="left",
                                  clean_up_tokenization_spaces=False, **spec["roles"])
    specials = [t for t in spec["added"] if t not in _NOT_SPECIAL and t not in spec["roles"].values()]
    tok.add_special_tokens({"additional_special_tokens": specials}, replace_extra_special_tokens=False)
    if len(tok) != BPE_SIZE + len(spec["added"]):
        raise AssertionError(f"{flavour}: {len(tok)} tokens after adding {len(spec['added'])} to the BPE")
    tok.chat_template = spec["chat_template"]
    return tok


def stop_token_ids(tokenizer: PreTrainedTokenizerFast, flavour: str) -> list[int]:
    """The ``eos_token_id`` list the flavour's models put in their generation_config.json."""
    return tokenizer.convert_tokens_to_ids(FLAVOURS[flavour]["stop"])


def config_bos_id(tokenizer: PreTrainedTokenizerFast, flavour: str) -> int:
    """The ``bos_token_id`` the flavour's models put in their config.json."""
    return tokenizer.convert_tokens_to_ids(FLAVOURS[flavour]["config_bos"])
