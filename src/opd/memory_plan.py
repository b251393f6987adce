"""Peak memory per GPU of a training or sampling job, from the models' ``config.json`` and
the job's settings, so that a job that cannot fit is refused before it waits in a queue.

It plans the device, not torch: a colocated vLLM engine maps its weights and KV cache
outside torch's caching allocator, so the figure that decides an out-of-memory error is
the device's used memory, phase by phase (the training log records it, ``opd.device_memory``):
- the capacity is what CUDA reports (``cudaMemGetInfo``'s total: about 99% of the card's
  nominal memory, 79.2 GiB of an 80 GB card), and vLLM's ``gpu_memory_utilization`` is a
  share of that;
- start-up: the student as loaded (in bf16 under DeepSpeed's bf16, not fp32 first) and the
  whole teacher (DeepSpeed moves a model to the GPU before ZeRO-3 partitions it);
- sampling: what training keeps between steps (weights, optimizer partitions, the
  teacher or its shard, and the cache torch cannot return: blocks still partly in use,
  a share of the update's transient memory) plus vLLM's share;
- the update: gradients (reduced in fp32 under bf16, as the paper), saved activations
  (the residual stream in the weights' dtype, matmul inputs in the training precision,
  SDPA's padding mask in both the student's and the teacher's forward), the chunked loss
  and the teacher's forward (or, sharded, its gathered layers and head), with vLLM asleep;
- the optimizer step.
Attention is counted as a memory-efficient kernel's (no tokens x tokens scores). Plain
Python (no torch): the DAG is planned where only Snakemake is installed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

GiB = 2**30
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
PROMPT_TOKENS = 1024  # a sampling job's prompt allowance (prompts are not read when the DAG is planned)
USABLE_FRACTION = 0.99  # cudaMemGetInfo's total over the nominal size (79.2 of 80 GiB; 139 of 140.4 on an H200)
RUNTIME_GIB = 1.0  # CUDA context, cuBLAS workspace and NCCL buffers per GPU
RETAINED_FRACTION = 0.05  # of the update's transient memory, kept by torch in partly used blocks at wake-up
VLLM_ASLEEP_GIB = 1.0  # what a sleeping vLLM engine keeps (level 2: buffers and communicators)
VLLM_GRAPHS_GIB = 1.0  # vLLM's CUDA graphs (estimated by vLLM 0.32 and taken from its share)
OPD_CHUNK_TENSORS = 10  # (chunk x vocabulary) fp32 tensors alive in one chunk of opd_loss (measured: 9.2-9.7)
NLL_CHUNK_TENSORS = 5  # chunked_nll: the logits, their fp32 copy and log-softmax, and two gradients
SAMPLER_TENSORS = 3  # (sequences x vocabulary) fp32 tensors of vLLM's sampler: logits, probabilities, noise
# vLLM 0.32's offline defaults on GPUs of 70 GB or more (its arg_utils): what an evaluation engine profiles
VLLM_DEFAULT_BATCHED_TOKENS, VLLM_DEFAULT_SEQS = 16384, 1024


@dataclass(frozen=True)
class Shape:
    """A decoder-only transformer's sizes, as ``config.json`` gives them."""

    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    tied: bool
    qkv_bias: bool = False
    qk_norm: bool = False
    max_positions: int = 32768

    @classmethod
    def from_config(cls, cfg: dict) -> Shape:
        cfg = cfg.get("text_config", cfg)
        heads = cfg["num_attention_heads"]
        return cls(
            vocab=cfg["vocab_size"], hidden=cfg["hidden_size"], layers=cfg["num_hidden_layers"], heads=heads,
            kv_heads=cfg.get("num_key_value_heads") or heads,
            head_dim=cfg.get("head_dim") or cfg["hidden_size"] // heads,
            intermediate=cfg["intermediate_size"],
            # transformers' default is tied; Qwen2/Qwen3 configs always say
            tied=cfg.get("tie_word_embeddings", True),
            qkv_bias=cfg.get("attention_bias", cfg.get("model_type") == "qwen2"),
            qk_norm=cfg.get("model_type") == "qwen3",
            max_positions=cfg.get("max_position_embeddings", 32768),
        )

    @property
    def layer_parameters(self) -> int:
        d, q, kv = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim
        attention = d * q + 2 * d * kv + q * d + (q + 2 * kv if self.qkv_bias else 0)
        return attention + 3 * d * self.intermediate + 2 * d + (2 * self.head_dim if self.qk_norm else 0)

    @property
    def parameters(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied else 2) + self.layers * self.layer_parameters + self.hidden

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * dtype_bytes


def usable_bytes(gpu_bytes: float | None) -> float | None:
    """What CUDA lets a process use of a GPU of ``gpu_bytes`` nominal memory."""
    return gpu_bytes * USABLE_FRACTION if gpu_bytes else None


def layer_activation_bytes(s: Shape, tokens: int, act: int, res: int = 4) -> int:
    """What one decoder layer saves for its backward, for ``tokens`` tokens: the two RMSNorms'
    fp32 upcast and normalised output (in the residual stream's dtype ``res``), the matmul
    inputs autocast casts to bf16 (``act`` 2, when the residual stream is fp32), Qwen3's q/k
    norms, the attention kernel's q, k, v (k and v repeated to every head) and output, the
    output projection's input, and the SwiGLU's gate, up, silu(gate) and product."""
    q, kv = s.heads * s.head_dim, s.kv_heads * s.head_dim
    casts = 5 * act * s.hidden if act < res else 0
    qk_norm = (4 + act) * (q + kv) if s.qk_norm else 0
    return tokens * (2 * (4 + res) * s.hidden + casts + qk_norm + 5 * act * q + 4 * act * s.intermediate)


def trunk_activation_bytes(s: Shape, tokens: int, act: int, checkpointing: bool, res: int = 4) -> int:
    """Saved activations of the whole trunk, plus the backward's working set (the gradients
    of one layer's residual and MLP activations). Checkpointed: every layer's input (in the
    residual stream's dtype) and one layer recomputed at a time."""
    working = tokens * (2 * res * s.hidden + 2 * act * s.intermediate)
    final_norm = tokens * (4 + res) * s.hidden
    if checkpointing:
        return s.layers * tokens * res * s.hidden + layer_activation_bytes(s, tokens, act, res) + working + final_norm
    return s.layers * layer_activation_bytes(s, tokens, act, res) + working + final_norm


def padding_mask_bytes(tokens: int, seq_len: int, act: int) -> int:
    """SDPA's 4D mask of a padded micro-batch (tokens / seq_len rows of seq_len^2), boolean
    and as the additive mask the kernel takes in the activations' dtype."""
    return tokens * seq_len * (1 + act)


def inference_bytes(s: Shape, tokens: int, dtype_bytes: int) -> int:
    """A no-grad forward's largest transient (one layer's MLP and attention tensors) plus
    its final hidden states."""
    q = s.heads * s.head_dim
    return tokens * dtype_bytes * (3 * s.intermediate + 6 * s.hidden + 4 * q)


def vllm_overhead_bytes(s: Shape, dtype_bytes: int, batched_tokens: int, seqs: int, tensor_parallel: int = 1) -> int:
    """What vLLM takes from its share besides weights and KV cache: the profile run's
    activations at ``batched_tokens``, its sampler's fp32 (sequences x vocabulary) tensors
    at ``seqs``, and its CUDA graphs."""
    return (inference_bytes(s, batched_tokens, dtype_bytes) // tensor_parallel
            + seqs * s.vocab * 4 * SAMPLER_TENSORS + VLLM_GRAPHS_GIB * GiB)


@dataclass(frozen=True)
class Plan:
    """The peak per GPU of one job and its parts (bytes), and the phase the peak is in.
    ``gpu_bytes`` is the usable capacity (:func:`usable_bytes`)."""

    job: str
    parts: dict
    peak_phase: str
    gpu_bytes: float | None = None
    note: str = ""
    refusal: str = ""  # why it cannot run even within the GPU's memory
    phases: dict = field(default_factory=dict)  # a training job's phases, each with its parts

    @property
    def peak(self) -> float:
        return sum(self.parts.values())

    def fits(self) -> bool:
        return not self.refusal and (self.gpu_bytes is None or self.peak <= self.gpu_bytes)

    @property
    def floor(self) -> float:
        """What no setting of the job itself can lower: its smallest phase (training), or the
        CUDA runtime and the weights (sampling). A GPU below it is too small, whatever the
        batch sizes or vLLM's share."""
        if self.phases:
            return min(sum(p.values()) for p in self.phases.values())
        return self.parts.get("runtime", 0) + self.parts.get("weights", 0)

    def line(self) -> str:
        parts = ", ".join(f"{k} {v / GiB:.1f}" for k, v in self.parts.items() if v >= 0.05 * GiB)
        of = f" of {gib_text(self.gpu_bytes)}" if self.gpu_bytes else ""
        note = "".join(f"; {t}" for t in (self.note, self.refusal) if t)
        return f"{self.job}: {self.peak / GiB:.1f}{of} GiB per GPU at {self.peak_phase} ({parts}){note}"


def gib_text(size: float) -> str:
    """Bytes in GiB: one decimal, two significant digits below 1 GiB (not "0.0")."""
    return f"{size / GiB:.1f}" if size >= 0.95 * GiB else f"{size / GiB:.2g}"


def micro_batch_tokens(seq_len: int, micro_batch_size: int, max_tokens: int | None) -> int:
    """Padded tokens of the largest micro-batch: the budget (a sequence above it runs
    alone), or ``micro_batch_size`` full-length sequences."""
    return max(max_tokens, seq_len) if max_tokens else micro_batch_size * seq_len


def state_bytes(params: int, world: int, zero_stage: int, bucket_elems: int, bf16_weights: bool = False) -> dict:
    """Weights, gradients and AdamW state on one rank: fp32 weights and moments, and the
    optimizer step's foreach temporaries (one state-sized tensor). ZeRO keeps an fp32 copy of
    its partition besides the moments and ZeRO-2 reduces gradients through buckets; with
    ``bf16_weights`` (DeepSpeed's bf16) the weights and gradients are bf16, that fp32 copy is
    the master, and gradients are accumulated and reduced in fp32 (a partition in fp32, and
    each bucket's fp32 copy for the reduction). Plain data parallelism over several ranks
    sums gradients through one flat copy of them."""
    part = world if zero_stage >= 1 else 1
    w = 2 if bf16_weights else 4
    optimizer = 8 * params / part + (4 * params / world if zero_stage >= 1 else 0)
    if zero_stage >= 2:
        grads = (4 if bf16_weights else w) * params / world + bucket_elems * (2 * w + (4 if bf16_weights else 0))
    else:
        grads = w * params * (2 if world > 1 and zero_stage == 0 else 1)
    return {"weights": w * params, "optimizer": optimizer, "gradients": grads, "step": 4 * params / part}


def teacher_bytes(teacher: Shape, tb: int, world: int, sharded: bool) -> dict:
    """The teacher's resident weights, and what a ZeRO-3 teacher gathers: two layers (the
    one running and the one prefetched) and its embedding in the forward; its head for the
    loss."""
    if not sharded:
        return {"resident": teacher.parameters * tb, "forward": 0, "head": 0}
    table = teacher.vocab * teacher.hidden * tb
    return {"resident": teacher.parameters * tb / world, "forward": 2 * teacher.layer_parameters * tb + table,
            "head": table}


def training_plan(job: str, student: Shape, settings: dict, *, world: int = 1, zero_stage: int = 0,
                  bucket_elems: int = 0, teacher: Shape | None = None, teacher_dtype: str = "bfloat16",
                  gpu_bytes: float | None = None, runtime_bytes: float = RUNTIME_GIB * GiB,
                  prompt_tokens: int | None = None, sampling: bool = True, student_dtype: str = "bfloat16",
                  padded: bool = True) -> Plan:
    """OPD (with ``teacher``) or SFT. ``settings`` are the job's ``train`` settings (schema
    defaults filled in); ``gpu_bytes`` the usable capacity. The peak is the largest of the
    phases (module docstring); ``sampling=False`` leaves sampling out, ``padded=False`` the
    padding masks (micro-batches of one length)."""
    padded = padded and not settings.get("pack_sequences")  # a packed row has no padding mask
    act = 2 if settings.get("precision") == "bf16" else 4
    bf16_weights = act == 2 and bool(settings.get("deepspeed"))
    res = 2 if bf16_weights else 4
    checkpointing = settings.get("gradient_checkpointing", False)
    state = state_bytes(student.parameters, world, zero_stage, bucket_elems, bf16_weights)
    resident = {"runtime": runtime_bytes, "student weights": state["weights"], "optimizer": state["optimizer"]}
    d, v = student.hidden, student.vocab
    prompt_tokens = prompt_tokens if prompt_tokens is not None else settings.get("max_prompt_tokens", PROMPT_TOKENS)
    shard = {"resident": 0, "forward": 0, "head": 0}
    if teacher is not None:
        tb = DTYPE_BYTES[teacher_dtype]
        shard = teacher_bytes(teacher, tb, world, settings.get("teacher_sharding") == "zero3")
        resident["teacher weights"] = shard["resident"]
        seq = prompt_tokens + settings["max_new_tokens"]
        tokens = micro_batch_tokens(seq, settings["micro_batch_size"], settings.get("max_tokens_per_micro_batch"))
        positions = tokens * settings["max_new_tokens"] // seq
        loss = (positions * (4 * d + tb * teacher.hidden)  # the gathered hidden states' gradient; the teacher's
                + 4 * v * d  # the head's fp32 gradient
                + settings["chunk_size"] * v * 4 * OPD_CHUNK_TENSORS + shard["head"])
        teacher_pass = (inference_bytes(teacher, tokens, tb) + positions * tb * teacher.hidden + shard["forward"]
                        + (padding_mask_bytes(tokens, seq, tb) if padded else 0))
    else:
        seq = settings["max_length"]
        tokens = micro_batch_tokens(seq, settings["micro_batch_size"], settings.get("max_tokens_per_micro_batch"))
        positions = tokens
        loss = positions * 4 * d + 4 * v * d + settings["chunk_size"] * v * 4 * NLL_CHUNK_TENSORS
        teacher_pass = 0
    mask = padding_mask_bytes(tokens, seq, act) if padded else 0
    casts = 2 * student.parameters if act == 2 and not (checkpointing or bf16_weights) else 0  # autocast's weights
    student_pass = trunk_activation_bytes(student, tokens, act, checkpointing, res) + mask + loss + casts
    colocated = settings.get("rollout_backend") == "vllm"
    asleep = {"vLLM asleep": VLLM_ASLEEP_GIB * GiB} if colocated else {}
    if student_pass >= teacher_pass:
        update = {"gradients": state["gradients"], "activations": student_pass - loss, "loss": loss, **asleep}
    else:
        update = {"gradients": state["gradients"], "teacher forward": teacher_pass, **asleep}
    retained = RETAINED_FRACTION * sum(update.values())
    # start-up, in the recipes' order: the teacher loaded whole (then, with ZeRO-3, partitioned)
    # beside the loaded student; then DeepSpeed builds the student's partitions (it flattens
    # the weights on the GPU only where a second copy fits, else on the host)
    whole_teacher = teacher.parameters * DTYPE_BYTES[teacher_dtype] if teacher else 0
    startup = max(({"runtime": runtime_bytes, "student weights": state["weights"], "teacher weights": whole_teacher},
                   {"runtime": runtime_bytes, "student weights": state["weights"],
                    "optimizer": state["optimizer"] if zero_stage else 0, "teacher weights": shard["resident"]}),
                  key=lambda p: sum(p.values()))
    phases = {"start-up": startup, "update": {**resident, **update},
              "optimizer step": {**resident, "gradients": state["gradients"], "step": state["step"], **asleep}}
    notes, refusal = [], ""
    if teacher is not None and sampling:
        kept = {**resident, "torch cache kept": retained}
        if colocated:
            share = settings["vllm_gpu_memory_utilization"] * gpu_bytes if gpu_bytes else 0
            phases["sampling"] = {**kept, "vLLM": share}
            if gpu_bytes:  # vLLM's share: the student in its own dtype, its overheads, then KV cache
                per_rank = -(-settings["prompts_per_step"] * settings["n"] // world)
                # its context holds the longest response it samples: a rollout's or a validation's
                longest = max(settings["max_new_tokens"], settings.get("eval_max_new_tokens") or 0)
                engine = sampling_plan(job, student, student_dtype, backend="vllm", batch=0,
                                       max_len=prompt_tokens + longest,
                                       gpu_memory_utilization=settings["vllm_gpu_memory_utilization"],
                                       gpu_bytes=gpu_bytes, runtime_bytes=0, max_num_seqs=per_rank,
                                       max_num_batched_tokens=VLLM_COLOCATED_BATCHED_TOKENS)
                notes.append(f"vLLM {engine.note}, for {per_rank} rollouts a rank" if engine.note else "")
                refusal = engine.refusal
        else:  # HF sampling from the student: the batch's KV cache and one step's logits
            batch = settings["rollout_batch_size"] * settings["n"]
            kv = student.kv_bytes_per_token(2 if bf16_weights else 4)
            phases["sampling"] = {**kept, "KV cache": batch * seq * kv, "logits": 2 * batch * v * 4}
    phases = {k: {n: b for n, b in p.items() if b} for k, p in phases.items()}
    phase = max(phases, key=lambda k: sum(phases[k].values()))
    others = ", ".join(f"{k} {sum(p.values()) / GiB:.1f}" for k, p in phases.items() if k != phase)
    note = "; ".join(n for n in [f"other phases: {others}", *notes] if n)
    return Plan(job, phases[phase], phase, gpu_bytes, note, refusal, phases)


VLLM_COLOCATED_BATCHED_TOKENS = 8192  # what opd.rollout.vllm gives a colocated engine


def sampling_plan(job: str, model: Shape, dtype: str, *, backend: str, batch: int, max_len: int,
                  tensor_parallel: int = 1, gpu_memory_utilization: float = 0.9,
                  gpu_bytes: float | None = None, runtime_bytes: float = RUNTIME_GIB * GiB,
                  max_num_seqs: int = VLLM_DEFAULT_SEQS,
                  max_num_batched_tokens: int = VLLM_DEFAULT_BATCHED_TOKENS) -> Plan:
    """Evaluation, teacher rollouts or a colocated engine's share. vLLM takes
    ``gpu_memory_utilization`` of the usable capacity ``gpu_bytes`` beside the CUDA context
    and fills what its weights, activations, sampler and CUDA graphs leave with KV cache,
    which must hold one full-length sequence; HF sampling holds the batch's KV cache."""
    b = DTYPE_BYTES[dtype]
    weights = model.parameters * b / tensor_parallel
    kv_token = model.kv_bytes_per_token(b) / tensor_parallel
    if backend != "vllm":
        return Plan(job, {"runtime": runtime_bytes, "weights": weights, "KV cache": batch * max_len * kv_token,
                          "logits": 2 * batch * model.vocab * 4}, "sampling", gpu_bytes)
    context = min(model.max_positions, max_len)
    overhead = vllm_overhead_bytes(model, b, max_num_batched_tokens, max_num_seqs, tensor_parallel)
    # the CUDA context exists before vLLM measures the free memory: outside its share
    parts = {"runtime": runtime_bytes, "weights": weights, "activations, sampler, graphs": overhead}
    kv = gpu_memory_utilization * gpu_bytes - weights - overhead if gpu_bytes else 0
    if kv < context * kv_token:  # not even one sequence: vLLM refuses to start
        refusal = f"vLLM's share {gpu_memory_utilization:g} holds no full {context}-token sequence" if gpu_bytes else ""
        return Plan(job, {**parts, "KV cache of one sequence": context * kv_token}, "sampling", gpu_bytes,
                    refusal=refusal)
    return Plan(job, {**parts, "KV cache": kv}, "sampling", gpu_bytes,
                f"KV cache for {kv / kv_token / 1e6:.2f}M tokens: {kv / kv_token / context:.0f} {context}-token sequences")


def hub_cache_config(repo: str, revision: str | None = None) -> Path | None:
    """``config.json`` of a hub model already in the local Hugging Face cache (the hub
    library's own lookup; ``HF_HUB_CACHE`` read at call time, not at its import)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, "config.json", cache_dir=os.environ.get("HF_HUB_CACHE"), revision=revision)
    return Path(found) if isinstance(found, str) else None


def load_shape(path: Path) -> Shape | None:
    """None for a config.json whose sizes are not a plain decoder's (no plan, no refusal)."""
    try:
        return Shape.from_config(json.loads(Path(path).read_text()))
    except (KeyError, TypeError, ValueError):
        return None


def tiny_shape(recipe: dict) -> Shape:
    """The shape ``opd.tiny`` builds from a ``tiny`` recipe (schema defaults filled in)."""
    hidden, heads = recipe["hidden"], recipe["heads"]
    qwen3 = recipe["architecture"] == "qwen3"
    return Shape(vocab=recipe["vocab_rows"], hidden=hidden, layers=recipe["layers"], heads=heads,
                 kv_heads=recipe["kv_heads"], head_dim=hidden // heads, intermediate=3 * hidden,
                 tied=recipe["tie_word_embeddings"], qkv_bias=not qwen3, qk_norm=qwen3,
                 max_positions=recipe["max_positions"])


def entry_shape(entry: dict, published: dict) -> Shape | None:
    """A model entry's shape: a ``tiny`` recipe's; a local directory's config.json; for a
    hub id, the Hugging Face cache's config.json, else the ``published`` one
    (config/hub_configs.yaml). None when unknown (a toy model: sized by the tokenizer the
    DAG builds; a hub model neither cached nor listed)."""
    if "tiny" in entry:
        return tiny_shape(entry["tiny"])
    if "path" in entry:
        path = Path(entry["path"]) / "config.json"
        return load_shape(path) if path.is_file() else None
    if "hub" in entry:
        path = hub_cache_config(entry["hub"], entry.get("revision"))
        if path is not None:
            return load_shape(path)
        return Shape.from_config(published[entry["hub"]]) if entry["hub"] in published else None
    return None
