"""What ``scripts/gpu_check.py`` measures on one GPU node as it comes: the parts of an OPD
job that only a GPU shows, at the paper's real shapes, with random weights (no downloads)
and the project's own code paths (``opd.train.opd.accumulate_gradients``, ``opd.losses``,
``opd.memory_plan``, ``opd.rollout.vllm``).

It needs only PyTorch, transformers and PyYAML: vLLM and DeepSpeed, when present, add
parts; when absent, the parts that need them are reported as skipped, with the reason.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import yaml

from .device_memory import PhaseMemory, used_gib  # noqa: F401 (the ranks part reads it)
from .memory_plan import GiB, Shape, training_plan

ROOT = Path(__file__).resolve().parents[2]
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "A800": 312.0, "H800": 989.0}  # dense, no sparsity


def published(repo: str) -> dict:
    return yaml.safe_load((ROOT / "config/hub_configs.yaml").read_text())[repo]


def shrunk(cfg: dict) -> dict:
    """A published config at toy size, for the CPU test of the same code (head size 32, which
    vLLM's CPU attention supports)."""
    return {**cfg, "vocab_size": 1024, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32, "max_position_embeddings": 4096}


def hf_config(cfg: dict):
    from transformers import Qwen2Config, Qwen3Config

    cls = Qwen3Config if cfg["model_type"] == "qwen3" else Qwen2Config
    return cls(**{k: v for k, v in cfg.items() if k != "model_type"}, use_cache=False)


def random_model(cfg: dict, dtype: torch.dtype, device: str):
    """A model of this config with random weights, built on ``device`` (no host copy)."""
    from transformers import AutoModelForCausalLM

    with torch.device(device):
        model = AutoModelForCausalLM.from_config(hf_config(cfg), dtype=dtype, attn_implementation="sdpa")
    return model


def peak_tflops(device: str) -> float | None:
    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name(torch.device(device))
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def model_flops(student: Shape, teacher: Shape, tokens: int, seq: int) -> float:
    """Model FLOPs of one OPD update (PaLM's accounting, no recomputation): the student's
    forward and backward (6 per parameter and token), the teacher's forward (2), and causal
    attention's score and value matmuls at ``seq`` tokens a sequence."""
    def attention(s: Shape) -> float:
        return 2 * s.layers * seq * s.heads * s.head_dim  # per token, forward, halved for causality

    return tokens * (6 * student.parameters + 3 * attention(student) + 2 * teacher.parameters + attention(teacher))


def synthetic_rollouts(n: int, prompt: int, response: int, vocab: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(3, vocab, (prompt,), generator=g).tolist() for _ in range(n)]
    responses = [torch.randint(3, vocab, (response,), generator=g).tolist() for _ in range(n)]
    return prompts, responses


def update_check(student_cfg: dict, teacher_cfg: dict, settings: dict, *, rollouts: int, prompt: int,
                 device: str, steps: int = 2) -> dict:
    """One rank's OPD updates over synthetic rollouts of real length, through the recipe's own
    ``accumulate_gradients`` and optimizer step: device memory at each phase beside the plan,
    update and teacher tokens/s, MFU."""
    from .distributed import Dist
    from .losses import Objective
    from .models import hidden_and_head
    from .packing import use_packing
    from .train.opd import OPDSettings, accumulate_gradients
    from .train.teacher import Teacher
    from .train.updater import Updater, enable_checkpointing, peak_gpu_memory_gb

    memory = PhaseMemory(device)
    t0 = time.perf_counter()
    student = random_model(student_cfg, torch.float32, device)  # fp32 master weights (no DeepSpeed here)
    teacher_model = random_model(teacher_cfg, torch.bfloat16, device)
    s = OPDSettings(**settings)
    if s.pack_sequences:
        use_packing(student)
        use_packing(teacher_model)
    teacher = Teacher(teacher_model)
    enable_checkpointing(student, s.gradient_checkpointing)
    student.train()
    updater = Updater(student, torch.optim.AdamW(student.parameters(), lr=1e-6), 1.0, Dist(), None, s.precision)
    memory.mark("after_startup")
    startup = time.perf_counter() - t0
    prompts, responses = synthetic_rollouts(rollouts, prompt, s.max_new_tokens, student_cfg["vocab_size"])
    tokens = rollouts * s.max_new_tokens
    counts = (tokens, rollouts, rollouts)
    steps_out = []
    for _ in range(steps):
        _sync(device)
        t = time.perf_counter()
        _, _, _, teacher_s = accumulate_gradients(prompts, responses, s, Objective(), *hidden_and_head(student),
                                                  teacher, updater, 0, counts)
        updater.step()
        _sync(device)
        memory.mark("after_update")
        steps_out.append({"seconds": time.perf_counter() - t, "teacher_s": teacher_s, **memory.take()})
    timed = steps_out[-1]
    shapes = Shape.from_config(student_cfg), Shape.from_config(teacher_cfg)
    seq = prompt + s.max_new_tokens
    flops = model_flops(*shapes, rollouts * seq, seq)
    peak = peak_tflops(device)
    plan = training_plan("update", shapes[0], {**settings, "rollout_backend": "hf"}, teacher=shapes[1],
                         teacher_dtype="bfloat16", gpu_bytes=capacity(device), sampling=False, prompt_tokens=prompt)
    return {
        "startup_s": startup,
        "step_s": timed["seconds"],
        "update_tokens_per_s": tokens / timed["seconds"],
        "teacher_tokens_per_s": rollouts * seq / timed["teacher_s"] if timed["teacher_s"] else None,
        "mfu": flops / timed["seconds"] / (peak * 1e12) if peak else None,
        "memory_gib": {**steps_out[0]["memory_gib"], **timed["memory_gib"]},
        "memory_source": memory.source,
        **peak_gpu_memory_gb(),
        "plan_gib": {phase: sum(parts.values()) / GiB for phase, parts in plan.phases.items()},
    }


def loss_chunk_check(vocab: int, hidden: int, teacher_hidden: int, positions: int, chunks: list[int],
                     device: str, repeats: int = 2) -> dict:
    """The chunked OPD loss (forward with its analytic gradient, and the backward) at several
    chunk sizes: seconds and the peak memory above what was allocated before."""
    from .losses import Objective, opd_loss

    g = torch.Generator(device=device).manual_seed(0)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    h_s = (torch.randn(positions, hidden, generator=g, device=device) * 0.5).to(dtype).requires_grad_()
    w_s = (torch.randn(vocab, hidden, generator=g, device=device) * 0.02).requires_grad_()
    h_t = (torch.randn(positions, teacher_hidden, generator=g, device=device) * 0.5).to(dtype)
    w_t = (torch.randn(vocab, teacher_hidden, generator=g, device=device) * 0.02).to(dtype)
    tokens = torch.randint(0, vocab, (positions,), generator=g, device=device)
    out = {}
    for chunk in chunks:
        times = []
        for _ in range(repeats):
            h_s.grad = w_s.grad = None
            _sync(device)
            base = _allocated(device)
            _reset_peak(device)
            t = time.perf_counter()
            opd_loss(h_s, w_s, h_t, w_t, tokens, Objective(), 1.0 / positions, chunk).loss.backward()
            _sync(device)
            times.append(time.perf_counter() - t)
        out[chunk] = {"seconds": min(times), "peak_gib": (_peak(device) - base) / GiB if device.startswith("cuda")
                      else None}
    return out


def capacity(device: str) -> float | None:
    """The usable capacity, as CUDA reports it (what the plan's ``usable_bytes`` estimates)."""
    return torch.cuda.mem_get_info(torch.device(device))[1] if device.startswith("cuda") else None


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))


def _allocated(device: str) -> int:
    return torch.cuda.memory_allocated(torch.device(device)) if device.startswith("cuda") else 0


def _reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(torch.device(device))


def _peak(device: str) -> int:
    return torch.cuda.max_memory_allocated(torch.device(device)) if device.startswith("cuda") else 0


def model_dir(cfg: dict, path: Path) -> Path:
    """A model directory holding only ``config.json`` (vLLM builds random weights for it)."""
    arch = "Qwen3ForCausalLM" if cfg["model_type"] == "qwen3" else "Qwen2ForCausalLM"
    hf_config(cfg).save_pretrained(path)
    import json

    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "architectures": [arch], "torch_dtype": "bfloat16"}))
    return path


def vllm_check(cfg: dict, work: Path, *, utilization: float, max_model_len: int | None, rollouts: int,
               response: int, device: str, full: bool) -> dict:
    """A colocated engine as the OPD job builds it (``opd.rollout.vllm``), with random weights:
    its start-up and KV cache at this share, with or without the study's ``max_model_len``;
    with ``full``, also its rollout tokens/s, the weight sync, sleep and wake, and whether the
    decode steps (CUDA graphs on a GPU) sample from the synced weights."""
    from .rollout import SamplingParams
    from .rollout.vllm import VLLMBackend

    path = model_dir(cfg, work / "model")
    memory = PhaseMemory(device)
    t = time.perf_counter()
    backend = VLLMBackend(str(path), dtype="bfloat16", colocated=True, gpu_memory_utilization=utilization,
                          max_model_len=max_model_len, max_num_seqs=rollouts, load_format="dummy",
                          skip_tokenizer_init=True)
    out = {"startup_s": time.perf_counter() - t, "context": backend.context_length,
           "kv_cache_tokens": _kv_tokens(backend.llm), "engine_kwargs": {k: v for k, v in backend.kwargs.items()
                                                                       if k not in ("model", "tokenizer")}}
    memory.mark("after_startup")
    if not full:
        backend.close()
        return {**out, **memory.take()}
    prompts = [[5 + i % 7, 11, 13 + i] for i in range(rollouts)]
    sampling = SamplingParams(n=1, temperature=1.0, top_p=1.0, max_new_tokens=response, seed=1)
    t = time.perf_counter()
    done = backend.generate(prompts, sampling)
    seconds = time.perf_counter() - t
    out["rollout_tokens_per_s"] = sum(len(r.token_ids) for r in done) / seconds
    memory.mark("after_sampling")
    student = random_model(cfg, torch.bfloat16, device)
    greedy = SamplingParams(n=1, temperature=0.0, top_p=1.0, max_new_tokens=16, seed=0)
    probe = [[7, 8, 9, 10]]
    before = backend.generate(probe, greedy, logprobs=True)[0]
    t = time.perf_counter()
    backend.sleep()
    out["sleep_s"] = time.perf_counter() - t
    memory.mark("after_sleep")
    t = time.perf_counter()
    backend.wake_up(weights_from=student)  # the student's (random) weights replace the engine's
    out["wake_and_sync_s"] = time.perf_counter() - t
    memory.mark("after_wake")
    after = backend.generate(probe, greedy, logprobs=True)[0]
    from .rollout.hf import response_logprobs

    reference = response_logprobs(student, probe, [after.token_ids], 0)[0]
    out["synced_logprob_gap"] = max(abs(a - b) for a, b in zip(after.logprobs, reference))
    out["logprobs_changed"] = before.token_ids != after.token_ids or any(
        abs(a - b) > 1e-3 for a, b in zip(before.logprobs, after.logprobs))
    backend.close()
    return {**out, **memory.take()}


def _kv_tokens(llm) -> int | None:
    cache = llm.llm_engine.vllm_config.cache_config
    blocks = getattr(cache, "num_gpu_blocks", None)
    return blocks * cache.block_size if blocks else None
