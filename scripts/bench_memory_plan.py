#!/usr/bin/env python
"""The memory planner (opd.memory_plan) against measured peaks: one OPD update (student
forward and backward through the chunked loss, the teacher's forward, the AdamW step) on
random models of the paper's architectures, on the CPU in fp32.

Each case runs in a fresh subprocess. Measured: the growth of the process's peak resident
set (VmHWM) over its resident set before the models are built, with glibc's mmap threshold
fixed (MALLOC_MMAP_THRESHOLD_), so that a freed large tensor leaves the resident set as a
caching allocator would reuse it, instead of staying in the heap. Planned: the peak phase
without the GPU runtime, with the CPU's dtypes (fp32 throughout).

    python scripts/bench_memory_plan.py [--threads 2]
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

# (architecture, tied, vocab, hidden, layers, heads, kv heads, teacher hidden, teacher layers,
#  prompt, response, micro-batch size, token budget, checkpointing)
CASES = {
    "qwen3_tied": ("qwen3", True, 151936, 128, 2, 2, 1, 128, 1, 64, 192, 4, None, False),
    "qwen2_untied_ckpt": ("qwen2", False, 152064, 128, 4, 2, 1, 192, 1, 64, 448, 4, 1024, True),
    "qwen3_deep": ("qwen3", True, 32000, 384, 8, 6, 2, 256, 2, 128, 384, 2, None, False),
    "qwen2_budget": ("qwen2", False, 151936, 192, 3, 3, 1, 256, 2, 64, 320, 2, 1024, True),
}


def memory_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def config(arch: str, tied: bool, vocab: int, hidden: int, layers: int, heads: int, kv: int):
    from transformers import Qwen2Config, Qwen3Config

    common = {"vocab_size": vocab, "hidden_size": hidden, "intermediate_size": 3 * hidden,
              "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv,
              "tie_word_embeddings": tied, "max_position_embeddings": 4096}
    if arch == "qwen3":
        return Qwen3Config(head_dim=hidden // heads, **common)
    return Qwen2Config(use_sliding_window=False, **common)


def settings_of(case) -> dict:
    *_, response, mbs, budget, ckpt = case
    return {"max_new_tokens": response, "micro_batch_size": mbs, "max_tokens_per_micro_batch": budget,
            "gradient_checkpointing": ckpt, "precision": "fp32", "chunk_size": 64, "rollout_backend": "hf",
            "prompts_per_step": 4, "n": 2}


def run_case(name: str, threads: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from opd.distributed import Dist
    from opd.losses import Objective
    from opd.models import hidden_and_head
    from opd.train.opd import OPDSettings, accumulate_gradients
    from opd.train.teacher import Teacher
    from opd.train.updater import Updater, enable_checkpointing

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    case = CASES[name]
    arch, tied, vocab, hidden, layers, heads, kv, t_hidden, t_layers, prompt, response, *_, ckpt = case
    before = memory_kb("VmRSS")
    student = AutoModelForCausalLM.from_config(config(arch, tied, vocab, hidden, layers, heads, kv),
                                               attn_implementation="sdpa")
    teacher = AutoModelForCausalLM.from_config(config(arch, tied, vocab, t_hidden, t_layers, t_hidden // 64, 1),
                                               attn_implementation="sdpa").eval().requires_grad_(False)
    enable_checkpointing(student, ckpt)
    student.train()
    s = {k: v for k, v in settings_of(case).items() if k not in ("rollout_backend",)}
    settings = OPDSettings(**s)
    updater = Updater(student, torch.optim.AdamW(student.parameters(), lr=1e-5), 1.0, Dist())
    n_seq = settings.prompts_per_step * settings.n
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(0, vocab, (prompt,), generator=g).tolist() for _ in range(n_seq)]
    responses = [torch.randint(0, vocab, (response,), generator=g).tolist() for _ in range(n_seq)]
    counts = (n_seq * response, n_seq, n_seq)
    for _ in range(2):  # the second step holds the optimizer state from the first
        accumulate_gradients(prompts, responses, settings, Objective(), *hidden_and_head(student),
                             Teacher(teacher), updater, 0, counts)
        updater.step()
    return {"measured": (memory_kb("VmHWM") - before) * 1024}


def planned(name: str):
    from opd.memory_plan import Shape, training_plan

    arch, tied, vocab, hidden, layers, heads, kv, t_hidden, t_layers, prompt, *_ = CASES[name]

    def shape(hidden, layers, heads, kv):
        return Shape(vocab=vocab, hidden=hidden, layers=layers, heads=heads, kv_heads=kv, head_dim=hidden // heads,
                     intermediate=3 * hidden, tied=tied, qkv_bias=arch == "qwen2", qk_norm=arch == "qwen3")

    plan = training_plan(name, shape(hidden, layers, heads, kv), settings_of(CASES[name]),
                         teacher=shape(t_hidden, t_layers, t_hidden // 64, 1), teacher_dtype="float32",
                         runtime_bytes=0, prompt_tokens=prompt, sampling=False, padded=False)
    return plan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--case", choices=CASES, help="(internal) run one case in this process")
    args = ap.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.threads)))
        return
    print(f"{'case':<20} {'planned MiB':>12} {'measured MiB':>13} {'planned/measured':>17}  phase: largest parts")
    for name in CASES:
        out = subprocess.run([sys.executable, __file__, "--case", name, "--threads", str(args.threads)],
                             capture_output=True, text=True, check=True,
                             env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"})
        measured = json.loads(out.stdout.splitlines()[-1])["measured"]
        plan = planned(name)
        top = sorted(plan.parts.items(), key=lambda kv: -kv[1])[:3]
        print(f"{name:<20} {plan.peak / 2**20:>12.0f} {measured / 2**20:>13.0f} {plan.peak / measured:>17.2f}  "
              f"{plan.peak_phase}: " + ", ".join(f"{k} {v / 2**20:.0f}" for k, v in top), flush=True)


if __name__ == "__main__":
    main()
