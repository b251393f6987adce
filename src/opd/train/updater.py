"""The optimizer step of a training recipe, behind one interface so the recipes' loops do
not change: plain data parallelism (every rank holds the AdamW state; gradients summed
over ranks, clipped, applied) or DeepSpeed ZeRO-1/2 (AdamW state, and with stage 2 the
gradients, partitioned over ranks; fp32 master weights as in the paper). Under DeepSpeed,
bf16 precision keeps the weights themselves in bf16 and the fp32 master copy partitioned:
a 7B student's weights take 2 bytes a parameter on each GPU instead of 4.

Losses are normalised by the whole step's token count over all ranks, so gradients are
*summed*: DeepSpeed averages over ranks, hence its loss is multiplied by the world size.
Gradient accumulation is ours (several ``backward`` calls, then one ``step``): DeepSpeed
runs with ``managed_gradient_accumulation`` off.

ZeRO-3 is refused: the chunked OPD loss reads the LM head's weight outside the module's
forward, where ZeRO-3 holds only a shard of it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..batching import micro_batches, split_to
from ..distributed import Dist, export_single_process_env
from ..launch import builtin_deepspeed_configs, deepspeed_path


# DeepSpeed's own bucket sizes where a config leaves them out
DEEPSPEED_BUCKETS = {"reduce_bucket_size": 500_000_000, "allgather_bucket_size": 500_000_000}


def deepspeed_config(name: str, grad_clip: float, precision: str = "fp32", parameters: int | None = None) -> dict:
    """``zero1``/``zero2`` (config/deepspeed/<name>.json) or a JSON file, with the fields
    this loop owns filled in. bf16 is DeepSpeed's own mixed precision: bf16 weights on
    every rank, the fp32 master weights in each rank's optimizer partition. ``parameters``
    (the trained ones) caps ZeRO's buckets: a bucket never holds more than the whole model,
    yet DeepSpeed allocates all of it (on a CPU, 2e8 elements cost a tiny model's two ranks
    millions of page faults a run); a 1.5B model keeps the file's 2e8."""
    path = deepspeed_path(name)
    if not path.exists():
        raise FileNotFoundError(f"DeepSpeed config {name!r}: no file {path} (built in: {builtin_deepspeed_configs()})")
    cfg = json.loads(path.read_text())
    stage = cfg.get("zero_optimization", {}).get("stage", 0)
    if stage not in (0, 1, 2):
        raise ValueError(f"{path}: ZeRO stage {stage} is not supported (the chunked OPD loss reads the LM head "
                         "weight directly, which ZeRO-3 partitions); use stage 1 or 2")
    for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps",
                "gradient_clipping", "optimizer", "scheduler"):
        if key in cfg:
            raise ValueError(f"{path}: {key!r} is set by the training settings; remove it from the DeepSpeed config")
    zero = cfg.get("zero_optimization")
    if parameters and zero and stage >= 1:
        for key, default in DEEPSPEED_BUCKETS.items():
            zero[key] = min(int(zero.get(key, default)), parameters)
    if precision == "bf16":
        cfg["bf16"] = {"enabled": True}
        # as the paper: gradients summed over micro-batches and reduce-scattered over ranks in
        # fp32 (DeepSpeed's default under bf16 is the model's dtype for both); a file may say otherwise
        cfg.setdefault("data_types", {}).setdefault("grad_accum_dtype", "fp32")
        cfg.setdefault("communication_data_type", "fp32")
    return {**cfg, "train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1,
            "managed_gradient_accumulation": False, "gradient_clipping": grad_clip, "steps_per_print": 2**31 - 1}


PRECISIONS = ("fp32", "bf16")


def master_dtype(precision: str, deepspeed: str | None) -> str:
    """The dtype a trained model is loaded in. Under DeepSpeed's bf16 the weights on the GPU
    are bf16 and the fp32 master copy is made from them, partitioned: loading in fp32 first
    would only add a transient of 4 bytes a parameter (28 GiB for a 7B student) before
    DeepSpeed casts it. Otherwise fp32 master weights."""
    return "bfloat16" if precision == "bf16" and deepspeed else "float32"


def peak_gpu_memory_gb() -> dict:
    """This rank's peak GPU memory since the job started (GB): what torch allocated, and what
    its caching allocator reserved (fragmentation included), to set beside the memory plan;
    None on the CPU."""
    if not torch.cuda.is_available():
        return {"peak_gpu_memory_gb": None, "peak_gpu_memory_reserved_gb": None}
    return {"peak_gpu_memory_gb": torch.cuda.max_memory_allocated() / 1e9,
            "peak_gpu_memory_reserved_gb": torch.cuda.max_memory_reserved() / 1e9}


def precision_context(precision: str, device):
    """bf16 mixed precision: the model's matmuls in bf16 under autocast; weights, gradients
    and optimizer state stay fp32, and the losses take their log-softmax in fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {PRECISIONS}")
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16")


def enable_checkpointing(model, enabled: bool) -> None:
    """Activation checkpointing: each decoder layer's activations are recomputed in the
    backward instead of kept (HF's non-reentrant variant; inactive in eval mode, so
    rollouts from the same model keep their KV cache)."""
    if enabled:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


class Updater:
    def __init__(self, model, optimizer: torch.optim.Optimizer, grad_clip: float, dist: Dist,
                 deepspeed: str | None = None, precision: str = "fp32", equal_micro_batches: bool = False):
        self.model, self.optimizer, self.grad_clip, self.dist = model, optimizer, grad_clip, dist
        self.equal_micro_batches = equal_micro_batches
        self.engine = None
        if deepspeed:
            import deepspeed as ds  # GPU clusters (and CPU tests); imported only when asked for

            if dist.world == 1:
                export_single_process_env()  # one GPU, started by `python`: no torchrun variables
            trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
            self.engine, *_ = ds.initialize(model=model, optimizer=optimizer,
                                            config=deepspeed_config(deepspeed, grad_clip, precision, trained))

    @property
    def sharded(self) -> bool:
        """Whether each rank holds only part of the optimizer state."""
        return self.engine is not None

    def micro_batches(self, lengths: list[int], size: int, max_tokens: int | None,
                      packed: bool = False) -> list[list[int]]:
        """This rank's micro-batches (:func:`opd.batching.micro_batches`). DeepSpeed ZeRO-2
        reduces gradients in every backward and a ZeRO-3 teacher gathers its layers in every
        forward, so there every rank runs as many as the others: split, and where a rank has
        too few sequences to split, padded with empty micro-batches (the caller runs those at
        weight 0)."""
        batches = micro_batches(lengths, size, max_tokens, packed)
        if self.sharded or self.equal_micro_batches:
            count = max(self.dist.gather([len(batches)]))
            batches = split_to(batches, count)
            batches += [[] for _ in range(count - len(batches))]
        return batches

    def backward(self, loss: torch.Tensor) -> None:
        if self.engine is None:
            loss.backward()
        else:
            self.engine.backward(loss * self.dist.world, scale_wrt_gas=False)

    def step(self) -> float:
        """Apply the accumulated gradients; returns the gradient norm before clipping."""
        if self.engine is None:
            self.dist.sync_grads(self.model.parameters())
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            return float(norm)
        self.engine.step()
        self.engine.zero_grad()
        return float(self.engine.get_global_grad_norm())

    def optimizer_state(self) -> dict | None:
        """The state to keep in the run's own checkpoint (None when sharded)."""
        return None if self.sharded else self.optimizer.state_dict()

    def load_optimizer_state(self, state: dict) -> None:
        self.optimizer.load_state_dict(state)

    def save_shards(self, directory: Path, tag: str) -> None:
        """Every rank writes its optimizer partition (DeepSpeed's own format)."""
        if self.sharded:
            self.engine.save_checkpoint(str(directory), tag=tag, save_latest=False)

    def load_shards(self, directory: Path, tag: str) -> None:
        # DeepSpeed unpickles these files: they are the ones this run wrote into its own run directory
        self.engine.load_checkpoint(str(directory), tag=tag, load_optimizer_states=True,
                                    load_lr_scheduler_states=False, load_module_strict=True)
