"""Tiny models of the paper's real architectures, for rehearsing its configs on a CPU.

Qwen3 with tied embeddings (the Qwen3-1.7B/4B students and teachers) and Qwen2 with an
untied head and attention biases (the DeepSeek-R1-Distill-Qwen models), around the real
Qwen tokenizers (``opd.qwen_tokenizers``), with the embedding padded past the tokenizer
as the released checkpoints pad it (151,936 rows; 152,064 for the Qwen2.5-based 7B/14B).
Only width and depth are toy-sized. ``steps`` > 0 trains the model briefly on the toy
world's worked solutions, so that it ends its answers with a stop token and a
``\\boxed{}`` (what the cold start's filter and the verifier look for).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, GenerationConfig, Qwen2Config, Qwen3Config

from .chat import DEFAULT, ChatFormat
from .qwen_tokenizers import config_bos_id, stop_token_ids
from .toy.pretrain import ToyRecipe, pretrain

ARCHITECTURES = ("qwen3", "qwen2")


@dataclass(frozen=True)
class TinyRecipe:
    architecture: str = "qwen3"
    tokenizer: str = "qwen3"  # a flavour of opd.qwen_tokenizers
    vocab_rows: int = 151936
    tie_word_embeddings: bool = True
    layers: int = 1
    hidden: int = 64
    heads: int = 2
    kv_heads: int = 1
    max_positions: int = 4096
    steps: int = 0
    batch_size: int = 16
    lr: float = 3e-3
    warmup: int = 5
    max_digits: int = 2
    prompt_template: str = "{problem}"
    seed: int = 0


def tiny_config(recipe: TinyRecipe, tokenizer):
    if recipe.architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {recipe.architecture!r}; expected one of {ARCHITECTURES}")
    if recipe.vocab_rows < len(tokenizer):
        raise ValueError(f"vocab_rows {recipe.vocab_rows} is smaller than the tokenizer ({len(tokenizer)} tokens)")
    if recipe.hidden % recipe.heads or recipe.heads % recipe.kv_heads:
        raise ValueError(f"hidden {recipe.hidden}, heads {recipe.heads}, kv_heads {recipe.kv_heads} do not divide")
    common = dict(
        vocab_size=recipe.vocab_rows, hidden_size=recipe.hidden, intermediate_size=3 * recipe.hidden,
        num_hidden_layers=recipe.layers, num_attention_heads=recipe.heads, num_key_value_heads=recipe.kv_heads,
        max_position_embeddings=recipe.max_positions, tie_word_embeddings=recipe.tie_word_embeddings,
        bos_token_id=config_bos_id(tokenizer, recipe.tokenizer),
        eos_token_id=tokenizer.eos_token_id, rms_norm_eps=1e-6,
    )
    if recipe.architecture == "qwen3":
        return Qwen3Config(head_dim=recipe.hidden // recipe.heads, rope_theta=1_000_000.0, **common)
    return Qwen2Config(rope_theta=10_000.0, use_sliding_window=False, **common)


def build_tiny_model(recipe: TinyRecipe, tokenizer, out_dir: str | Path, show_progress: bool = True,
                     chat: ChatFormat = DEFAULT) -> dict:
    """Random weights of the recipe's architecture, trained for ``steps`` if asked (on prompts
    rendered as ``chat`` says); saved with the tokenizer and a generation_config.json whose
    stop tokens are the flavour's."""
    torch.manual_seed(recipe.seed)
    config = tiny_config(recipe, tokenizer)
    data = ToyRecipe(max_digits=recipe.max_digits, steps=recipe.steps, batch_size=recipe.batch_size,
                     lr=recipe.lr, warmup=recipe.warmup, seed=recipe.seed,
                     prompt_template=recipe.prompt_template)
    generation = GenerationConfig(eos_token_id=stop_token_ids(tokenizer, recipe.tokenizer),
                                  pad_token_id=tokenizer.pad_token_id, bos_token_id=config.bos_token_id)
    if recipe.steps:
        summary = pretrain(tokenizer, data, out_dir, show_progress, model_config=config, generation_config=generation,
                           chat=chat)
    else:
        from .models import save_model

        model = AutoModelForCausalLM.from_config(config)
        model.generation_config = generation
        save_model(model, tokenizer, out_dir)
        summary = {"parameters": sum(p.numel() for p in model.parameters()), "final_loss": None, "seconds": 0.0}
    return summary
