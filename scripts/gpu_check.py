#!/usr/bin/env python
"""One-command check of a GPU node: the rehearsal (config/rehearsal.yaml) on this machine's
GPU with real vLLM, then its figures: evaluation samples/s, OPD rollout and training
tokens/s, and each training job's peak GPU memory (allocated and reserved by torch) beside
its memory plan (opd.memory_plan, as a dry run of the same DAG prints it).

    python scripts/gpu_check.py --workdir /tmp/opd-gpu-check

Every GPU job gets one GPU (training runs one rank); everything else is the rehearsal's.
On a machine without a GPU it runs the same jobs on the CPU (vLLM's CPU build)."""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
GPU_RULES = ("eval_model", "teacher_rollouts", "sft", "opd_train", "probe_teachers", "teacher_continuation")


def one_gpu_config(config: dict) -> dict:
    config = json.loads(json.dumps(config))
    rules = config["resources"]["rules"]
    for rule in GPU_RULES:
        rules[rule] = {**rules.get(rule, {}), "gpus": 1, "partition": None}
    config["resources"]["default"]["partition"] = None
    return config


def memory_plans(snakemake: list[str]) -> dict[str, str]:
    """Each GPU job's memory plan, by job ("opd_train <experiment>", "sft <name>", ...), from
    a dry run of the DAG before it runs."""
    dry = subprocess.run([*snakemake, "-n"], capture_output=True, text=True)
    plans = {}
    for line in dry.stderr.splitlines():
        if line.startswith("memory plan: "):
            job, _, plan = line.removeprefix("memory plan: ").partition(": ")
            plans[job] = plan
    return plans


def peaks(steps: list[dict], plan: str | None) -> str:
    allocated = [r["peak_gpu_memory_gb"] for r in steps if r.get("peak_gpu_memory_gb") is not None]
    reserved = [r["peak_gpu_memory_reserved_gb"] for r in steps if r.get("peak_gpu_memory_reserved_gb") is not None]
    measured = (f"{max(allocated) * 1e9 / 2**30:.2f} GiB allocated, {max(reserved) * 1e9 / 2**30:.2f} GiB reserved"
                if allocated and reserved else "n/a (CPU)")
    return f"peak GPU memory {measured}; planned {plan or 'n/a'}"


def figures(workdir: Path, plans: dict[str, str]) -> list[str]:
    lines = []
    for path in sorted((workdir / "results/eval").glob("*/*.json")):
        m = json.loads(path.read_text())
        lines.append(f"eval {path.parent.name}/{path.stem}: {m['samples_per_second']:.1f} samples/s, "
                     f"{m['seconds']:.1f} s")
    for log in sorted((workdir / "results/opd").glob("*/train_log.jsonl")):
        steps = [r for r in map(json.loads, log.read_text().splitlines()) if "tokens_per_s" in r]
        if not steps:
            continue
        mean = lambda key: sum(r[key] for r in steps) / len(steps)  # noqa: E731
        lines.append(f"opd {log.parent.name}: rollout {mean('rollout_tokens_per_s'):.0f} tokens/s, "
                     f"step {mean('tokens_per_s'):.0f} tokens/s, "
                     + peaks(steps, plans.get(f"opd_train {log.parent.name}")))
    for log in sorted((workdir / "results/sft").glob("*/train_log.jsonl")):
        steps = [r for r in map(json.loads, log.read_text().splitlines()) if "tokens" in r]
        if steps:
            tokens_per_s = sum(r["tokens"] for r in steps) / sum(r["seconds"] for r in steps)
            lines.append(f"sft {log.parent.name}: {tokens_per_s:.0f} tokens/s, "
                         + peaks(steps, plans.get(f"sft {log.parent.name}")))
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", required=True, help="where the run's data, results and logs go")
    ap.add_argument("--cores", default="all")
    args = ap.parse_args()
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, str(ROOT / "scripts/make_hub_mirrors.py")], cwd=workdir, check=True)
    config = one_gpu_config(yaml.safe_load((ROOT / "config/rehearsal.yaml").read_text()))
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    # one GPU job at a time: each vLLM engine takes its share
    snakemake = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory",
                 str(workdir), "--configfile", str(workdir / "config.yaml"), "--profile", str(ROOT / "profiles/local"),
                 "--cores", args.cores, "--resources", "gpu=1"]
    plans = memory_plans(snakemake)
    run = subprocess.run(snakemake)
    print("\n".join(figures(workdir, plans)))
    sys.exit(run.returncode)


if __name__ == "__main__":
    main()
