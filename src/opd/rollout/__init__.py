"""One interface for sampling responses: ``backend.generate(prompts, sampling)``.

The HF-transformers backend runs anywhere (CPU in tests and in the toy world); the vLLM
backend (``rollout.vllm``) serves GPU clusters behind the same interface.
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


BACKENDS = ("hf", "vllm")


def check_prompt_lengths(prompts: list[list[int]], context: int | None, names: list | None = None) -> None:
    """Refuse a prompt that leaves no room in the model's context for a response, before
    any compute (a 10 MB problem would otherwise try to allocate its attention)."""
    if not context:
        return
    for i, p in enumerate(prompts):
        if len(p) >= context:
            who = f"problem {names[i]!r}" if names else f"prompt {i}"
            raise ValueError(f"{who} is {len(p)} tokens long, which leaves no room for a response in the "
                             f"model's context of {context} tokens: shorten it or drop it from the data")


def make_backend(name: str, model, tokenizer=None, **options):
    """``model`` is a loaded HF model for "hf" and a model path for "vllm" (which loads
    its own copy; vLLM is imported only here)."""
    if name == "hf":
        from .hf import HFBackend

        return HFBackend(model, tokenizer, **options)
    if name == "vllm":
        from .vllm import VLLMBackend

        return VLLMBackend(model, **options)
    raise ValueError(f"unknown rollout backend {name!r}; expected one of {BACKENDS}")


def open_backend(name: str, model_path: str, tokenizer, *, dtype: str, device: str, trust_remote_code: bool = False,
                 batch_size: int = 64, tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.9,
                 seed: int = 0, max_model_len: int | None = None):
    """A sampling job's backend for the model at ``model_path`` (HF loads it here, vLLM in
    its own engine, whose context is ``max_model_len`` when given); ``close()`` it when done."""
    if name == "vllm":
        return make_backend("vllm", model_path, dtype=dtype, trust_remote_code=trust_remote_code,
                            tensor_parallel_size=tensor_parallel_size, max_model_len=max_model_len,
                            gpu_memory_utilization=gpu_memory_utilization, seed=seed)
    from ..models import load_model

    model = load_model(model_path, dtype, device, trust_remote_code=trust_remote_code)
    return make_backend(name, model, tokenizer, batch_size=batch_size)
