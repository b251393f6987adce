"""The toy worlds' tokenizers, saved as real ``tokenizer.json`` files with a chat template.

``characters``: a byte-pair-encoding model with no merges, so every character is one token.
``subword``: byte-level BPE trained on the prose solutions, digits split one by one as
Qwen's pre-tokenizer does; a few thousand tokens, so a next-token distribution has a tail.
Both load with ``AutoTokenizer.from_pretrained`` like any hub tokenizer.
"""

from __future__ import annotations

import random
from pathlib import Path

from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
from tokenizers.models import BPE
from transformers import PreTrainedTokenizerFast

from .prose import prose_solution
from .task import sample_problem

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|unk|>"]
CHARACTERS = ["\n"] + [chr(c) for c in range(32, 127)]

# Qwen-style ChatML, so prompts look like the paper's chat models' prompts.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


KINDS = ("characters", "subword")
SUBWORD_VOCAB_SIZE = 4096  # an upper bound: the trainer stops when no pair is left to merge
SUBWORD_CORPUS_PROBLEMS = 20_000


def _subword_corpus():
    """Questions and prose solutions of 1-4 digit problems over every digit."""
    rng = random.Random(0)
    for _ in range(SUBWORD_CORPUS_PROBLEMS):
        p = sample_problem(rng, 1, 4, 9)
        yield p.question
        yield prose_solution(p, rng)


def _characters_core() -> Tokenizer:
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + CHARACTERS)}
    core = Tokenizer(BPE(vocab=vocab, merges=[], unk_token="<|unk|>"))
    core.add_special_tokens(SPECIAL_TOKENS)
    core.decoder = decoders.Fuse()
    return core


def _subword_core() -> Tokenizer:
    core = Tokenizer(BPE())
    core.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=SUBWORD_VOCAB_SIZE, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    core.train_from_iterator(_subword_corpus(), trainer=trainer)
    return core


def build_tokenizer(kind: str = "characters") -> PreTrainedTokenizerFast:
    if kind not in KINDS:
        raise ValueError(f"unknown toy tokenizer {kind!r}; expected one of {KINDS}")
    core = _characters_core() if kind == "characters" else _subword_core()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|unk|>",
        padding_side="left",
        model_max_length=4096,
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def save_tokenizer(out_dir: str | Path, kind: str = "characters") -> PreTrainedTokenizerFast:
    tok = build_tokenizer(kind)
    tok.save_pretrained(str(out_dir))
    return tok
