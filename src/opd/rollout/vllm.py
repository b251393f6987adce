"""Rollouts with vLLM's offline engine (GPU nodes only; imported lazily).

Prompts go in as token ids and responses come back as token ids with the sampled
token's log-probability (vLLM's default raw, untempered log-probs) without
detokenising. For OPD the engine shares the GPU with training: it is created with
sleep mode and a lowered ``gpu_memory_utilization`` (a fraction of the whole GPU), sleeps
during the update, and receives the student's new weights after each update through a
worker extension (``load_weights`` on every tensor-parallel worker).
"""

from __future__ import annotations

import os

from . import Rollout, SamplingParams

INSTALL_HINT = "the vllm backend needs vLLM on a GPU node: pip install 'opd-workflow[gpu]' (envs/rollout.yaml)"


def _vllm():
    try:
        import vllm
    except ImportError as e:
        raise ImportError(f"{INSTALL_HINT} ({e})") from None
    return vllm


class WeightSync:
    """vLLM worker extension: load a state dict into the worker's model in place."""

    def load_state(self, named_tensors) -> None:
        self.model_runner.model.load_weights(weights=named_tensors)


class VLLMBackend:
    def __init__(self, model_path: str, *, tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.9,
                 dtype: str = "bfloat16", max_model_len: int | None = None, colocated: bool = False,
                 trust_remote_code: bool = False, seed: int = 0):
        vllm = _vllm()
        # under srun/torchrun, forked workers hang; in-process engine core for colocation
        os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
        if colocated:
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        self.colocated = colocated
        self.llm = vllm.LLM(
            model=str(model_path), tokenizer=str(model_path), dtype=dtype, seed=seed,
            tensor_parallel_size=tensor_parallel_size, gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len, trust_remote_code=trust_remote_code, enable_sleep_mode=colocated,
            worker_extension_cls=f"{__name__}.WeightSync",
        )

    def generate(self, prompts: list[list[int]], sampling: SamplingParams, logprobs: bool = False) -> list[Rollout]:
        vllm = _vllm()
        params = vllm.SamplingParams(
            n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p,
            max_tokens=sampling.max_new_tokens, seed=sampling.seed, logprobs=0 if logprobs else None,
            detokenize=False,
        )
        outputs = self.llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
        return to_rollouts(outputs, logprobs)

    def load_weights(self, model) -> None:
        """The trained student's current weights into the engine (after an update)."""
        state = [(k, v.detach()) for k, v in model.state_dict().items()]
        self.llm.collective_rpc("load_state", args=(state,))

    def sleep(self) -> None:
        """Free the KV cache (and offload weights) while the trainer uses the GPU."""
        if self.colocated:
            self.llm.sleep(level=1)

    def wake_up(self) -> None:
        if self.colocated:
            self.llm.wake_up()


def to_rollouts(outputs, logprobs: bool) -> list[Rollout]:
    """vLLM request outputs (one per prompt, in prompt order) as Rollouts."""
    rollouts = []
    for i, out in enumerate(outputs):
        for j, c in enumerate(out.outputs):
            tokens = list(c.token_ids)
            lps = [step[t].logprob for step, t in zip(c.logprobs, tokens)] if logprobs else None
            rollouts.append(Rollout(i, j, tokens, "length" if c.finish_reason == "length" else "stop", lps))
    return rollouts
