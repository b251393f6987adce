"""Pretrain a toy model from scratch on worked solutions of one format and digit range.

The loss is on response tokens only, so the model learns to answer the chat-formatted
prompt. Problems are drawn fresh each step from a seeded generator: no data files needed.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from ..batching import pad_pairs
from ..chat import DEFAULT, ChatFormat
from ..data import render_prompt
from ..models import hidden_and_head, save_model, toy_config
from ..progress import progress
from .task import sample_problem, solution


@dataclass(frozen=True)
class ToyRecipe:
    format: str = "cot"
    tokenizer: str = "characters"  # which toy tokenizer the workflow builds the model around
    min_digits: int = 1
    max_digits: int = 3
    max_digit: int = 9
    layers: int = 2
    hidden: int = 128
    heads: int = 4
    steps: int = 300
    batch_size: int = 64
    lr: float = 2e-3
    warmup: int = 30
    seed: int = 0
    # one template, or several: each example then draws one, so the model answers under all
    prompt_template: str | list[str] = "{problem}"


def make_batch(tokenizer, recipe: ToyRecipe, rng: random.Random, chat: ChatFormat = DEFAULT):
    """Right-padded input ids, attention mask and response-only labels; the prompts rendered
    as the model will be prompted (``chat``)."""
    templates = [recipe.prompt_template] if isinstance(recipe.prompt_template, str) else recipe.prompt_template
    prompts, responses = [], []
    for _ in range(recipe.batch_size):
        p = sample_problem(rng, recipe.min_digits, recipe.max_digits, recipe.max_digit)
        # a single template draws nothing: models of one template are as they were
        template = templates[0] if len(templates) == 1 else rng.choice(templates)
        prompt = render_prompt(tokenizer, p.question, template, chat)
        prompts.append(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        responses.append(tokenizer(solution(p, recipe.format, rng), add_special_tokens=False)["input_ids"]
                         + [tokenizer.eos_token_id])
    return pad_pairs(prompts, responses, tokenizer.pad_token_id)


def response_loss(model, ids, mask, labels):
    """The causal-LM loss (mean cross-entropy over the labelled tokens) with the LM head
    applied at the labelled positions only: over a real Qwen vocabulary (152K rows) the head
    at every prompt position is most of a tiny model's step."""
    trunk, head = hidden_and_head(model)
    hidden = trunk(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != -100
    logits = hidden[:, :-1][keep] @ head.T
    return torch.nn.functional.cross_entropy(logits.float(), targets[keep])


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warmup, then cosine decay to zero."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def pretrain(tokenizer, recipe: ToyRecipe, out_dir: str | Path, show_progress: bool = True,
             model_config=None, generation_config=None, chat: ChatFormat = DEFAULT) -> dict:
    """Train a fresh model by ``recipe``, save it to ``out_dir``; returns a summary.
    ``model_config`` replaces the toy Qwen3 (``recipe``'s size fields then go unused)."""
    torch.manual_seed(recipe.seed)
    rng = random.Random(recipe.seed)
    model = AutoModelForCausalLM.from_config(
        model_config or toy_config(tokenizer, recipe.layers, recipe.hidden, recipe.heads)
    )
    if generation_config is not None:
        model.generation_config = generation_config
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, recipe.warmup, recipe.steps))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(out_dir / "train_log.jsonl", "w") as log:
        for step in progress(range(recipe.steps), desc="pretrain", disable=not show_progress):
            ids, mask, labels = make_batch(tokenizer, recipe, rng, chat)
            # the toy models (no model_config) keep the forward their recorded figures came from
            loss = (response_loss(model, ids, mask, labels) if model_config is not None
                    else model(input_ids=ids, attention_mask=mask, labels=labels).loss)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            log.write(json.dumps({"step": step + 1, "loss": loss.item(), "grad_norm": grad_norm.item(),
                                  "lr": sched.get_last_lr()[0]}) + "\n")
    model.eval()
    save_model(model, tokenizer, out_dir)
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "final_loss": loss.item(),
        "seconds": time.perf_counter() - start,
    }
