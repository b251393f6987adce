"""One interface for sampling responses: ``backend.generate(prompts, sampling)``.

The HF-transformers backend runs anywhere (CPU in tests and in the toy world); a vLLM
backend plugs in behind the same interface for GPU clusters.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SamplingParams:
    n: int = 16
    temperature: float = 0.7
    top_p: float = 0.95
    max_new_tokens: int = 31744
    seed: int = 0


@dataclass
class Rollout:
    prompt_index: int
    sample_index: int
    token_ids: list[int]  # the response, ending with EOS when finish_reason == "stop"
    finish_reason: str  # "stop" or "length"
    logprobs: list[float] | None = None  # log p(token) under the untempered model


BACKENDS = ("hf",)


def make_backend(name: str, model, tokenizer, **options):
    if name == "hf":
        from .hf import HFBackend

        return HFBackend(model, tokenizer, **options)
    raise ValueError(f"unknown rollout backend {name!r}; expected one of {BACKENDS}")
