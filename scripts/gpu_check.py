#!/usr/bin/env python
"""Checks one GPU node as it comes, in about 9 minutes: the parts of the paper's OPD jobs that
only a GPU shows, at the paper's real shapes with random weights (config/hub_configs.yaml;
nothing is downloaded), through the project's own code (opd.node_check). Each part runs in
its own process, in the order that catches the most:

  update        one rank of the 1.5B-student / 7B-teacher update on 32 rollouts of 7,168
                tokens: bf16, activation checkpointing, 32K-token packed rows (flash-attention's
                variable-length kernel), the 512-position loss chunks; device memory per phase
                beside the memory plan, update and teacher tokens/s, model FLOPs utilisation
  loss_chunks   the chunked loss at 64, 512 and 1,024 positions a chunk: seconds and peak
  vllm_study    (vLLM) a 7B colocated engine at a 0.4 share with the study's 8,192-token
                context: start-up, KV cache, rollout tokens/s, sleep, wake with the weight
                sync, and whether its decode steps (CUDA graphs) sample the synced weights
  vllm_model    (vLLM) the same engine without max_model_len (the model's 131,072 positions)
  ranks         (2+ GPUs) one process per GPU under torchrun: each rank's device and its
                collectives' device; with vLLM, each rank's colocated engine's device

It needs PyTorch, transformers and PyYAML; parts that need vLLM or several GPUs say why they
were skipped. `--scale tiny` runs the same parts on toy shapes (the CPU test of this script).

    python scripts/gpu_check.py [--budget-s 540] [--out gpu_check.json]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

STUDENT, TEACHER = "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"
# (rollouts, prompt, response, token budget, loss chunk, loss positions, loss chunk sizes, vLLM share)
SCALES = {
    "paper": dict(rollouts=32, prompt=256, response=7168, budget=32768, chunk=512, positions=16384,
                  chunks=[64, 512, 1024], share=0.4, study_len=8192),
    "tiny": dict(rollouts=4, prompt=16, response=48, budget=128, chunk=16, positions=256, chunks=[8, 64],
                 share=0.3, study_len=256),
}
# estimated seconds of each part at the paper's scale on an H100/H200: a part starts only
# when the budget left holds it
PARTS = {"update": 150, "loss_chunks": 60, "vllm_study": 200, "vllm_model": 100, "ranks": 120}


def configs(scale: str):
    from opd.node_check import published, shrunk

    student, teacher = published(STUDENT), published(TEACHER)
    return (shrunk(student), shrunk(teacher)) if scale == "tiny" else (student, teacher)


def run_part(part: str, scale: str, device: str) -> dict:
    """One part, in this process."""
    import torch

    from opd import node_check

    s = SCALES[scale]
    student, teacher = configs(scale)
    if part == "update":
        settings = {"max_new_tokens": s["response"], "precision": "bf16", "gradient_checkpointing": True,
                    "max_tokens_per_micro_batch": s["budget"], "pack_sequences": True, "chunk_size": s["chunk"],
                    "micro_batch_size": 8,
                    "prompts_per_step": s["rollouts"], "n": 1, "max_prompt_tokens": s["prompt"]}
        return node_check.update_check(student, teacher, settings, rollouts=s["rollouts"], prompt=s["prompt"],
                                       device=device)
    if part == "loss_chunks":
        return node_check.loss_chunk_check(student["vocab_size"], student["hidden_size"], teacher["hidden_size"],
                                           s["positions"], s["chunks"], device)
    if part in ("vllm_study", "vllm_model"):
        with tempfile.TemporaryDirectory() as work:
            return node_check.vllm_check(teacher, Path(work), utilization=s["share"],
                                         max_model_len=s["study_len"] if part == "vllm_study" else None,
                                         rollouts=s["rollouts"], response=s["response"], device=device,
                                         full=part == "vllm_study")
    if part == "rank":  # one of the ranks of the "ranks" part, under torchrun
        from opd import distributed

        dist = distributed.init(5)
        out = {"rank": dist.rank, "device": dist.device(device),
               "current_device": torch.cuda.current_device() if torch.cuda.is_available() else None}
        out["sum"] = dist.sum([float(dist.rank)])[0]
        out["comm_device"] = dist.comm_device
        if vllm_installed():
            with tempfile.TemporaryDirectory() as work:
                from opd.rollout.vllm import VLLMBackend

                path = node_check.model_dir(student, Path(work) / "model")
                engine = VLLMBackend(str(path), dtype="bfloat16", colocated=True, gpu_memory_utilization=0.3,
                                     max_model_len=s["study_len"], max_num_seqs=8, load_format="dummy",
                                     skip_tokenizer_init=True)
                out["engine_device"] = str(engine.llm.llm_engine.vllm_config.device_config.device)
                out["engine_backend"] = engine.kwargs.get("distributed_executor_backend")
                out["used_gib_per_gpu"] = [round(node_check.used_gib(f"cuda:{i}"), 2)
                                           for i in range(torch.cuda.device_count())]
                out["gathered"] = dist.gather([out["used_gib_per_gpu"]])
                engine.close()
        else:
            distributed.shutdown()
        return out
    raise ValueError(part)


def vllm_installed() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("vllm") is not None
    except ImportError:
        return False


def gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def why_skipped(part: str, scale: str) -> str | None:
    if part.startswith("vllm") and not vllm_installed():
        return "vLLM is not installed"
    if part == "ranks" and gpus() < 2:
        return f"{gpus()} GPU(s): needs 2 or more"
    return None


def subprocess_part(part: str, scale: str, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--part", part, "--scale", scale]
    if part == "ranks":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={min(gpus(), 8)}",
               __file__, "--part", "rank", "--scale", scale]
    t = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    except subprocess.TimeoutExpired:
        return {"status": "timed out", "seconds": time.perf_counter() - t}
    results = [json.loads(line[len("RESULT "):]) for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not results:
        return {"status": "failed", "seconds": time.perf_counter() - t,
                "error": (done.stderr or done.stdout).strip().splitlines()[-12:]}
    return {"status": "ran", "seconds": time.perf_counter() - t, "result": results if part == "ranks" else results[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=SCALES, default="paper")
    ap.add_argument("--budget-s", type=float, default=540, help="seconds for all parts together")
    ap.add_argument("--parts", default=",".join(PARTS), help="comma-separated, from: " + ", ".join(PARTS))
    ap.add_argument("--out", default="gpu_check.json")
    ap.add_argument("--part", help=argparse.SUPPRESS)  # (internal) run one part in this process
    args = ap.parse_args()
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.part:
        local = os.environ.get("LOCAL_RANK")
        print("RESULT " + json.dumps(run_part(args.part, args.scale, f"cuda:{local}" if local and device == "cuda"
                                              else device), default=str), flush=True)
        return
    import transformers

    start = time.perf_counter()
    report = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu", "gpus": gpus(),
              "torch": torch.__version__, "transformers": transformers.__version__, "vllm": vllm_installed(),
              "scale": args.scale, "parts": {}}
    print(f"{report['device']} x{max(1, report['gpus'])}, torch {report['torch']}, transformers "
          f"{report['transformers']}, vLLM {'yes' if report['vllm'] else 'no'}", flush=True)
    for part in args.parts.split(","):
        left = args.budget_s - (time.perf_counter() - start)
        reason = why_skipped(part, args.scale)
        if reason is None and args.scale == "paper" and left < PARTS[part]:
            reason = f"{left:.0f} s of the budget left, about {PARTS[part]} s needed"
        if reason:
            report["parts"][part] = {"status": "skipped", "why": reason}
        else:
            report["parts"][part] = subprocess_part(part, args.scale, max(30.0, left))
        print(f"{part}: " + json.dumps(report["parts"][part], default=str), flush=True)
    Path(args.out).write_text(json.dumps(report, indent=1, default=str))
    print(f"wrote {args.out} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
