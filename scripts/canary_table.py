#!/usr/bin/env python
"""The canary's table: each canary job's device memory per phase beside its memory plan,
its speeds, and the GPU-hours of every job of its shape in the study at those speeds
(results/canary/table.md, and summary.json with every figure)."""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from opd.canary import sampling_figures, table, training_figures  # noqa: E402
from opd.io import read_json, read_jsonl, write_json, write_text  # noqa: E402

HEADER = """# The canary

Each row is one canary job: the first job of the study with that shape, run for a few steps
at the study's lengths on its resources (`snakemake --profile slurm <study> canary`). Memory
is what the device reported in use at each phase boundary (the whole GPU, as CUDA counts it;
on CPUs the process's resident set), beside the memory plan's figure for the phase that ends
there (`snakemake -n` prints the plans). GPU-hours: every job of the shape in the study at the
measured speed (steps, validations scaled to the whole benchmarks, start-up; SFT from the
number of prompts, an upper bound; sampling from the samples of every evaluation).

"""


def count(path: str) -> int:
    return sum(1 for line in Path(path).read_text().splitlines() if line.strip())


def row(job: str, spec: dict) -> dict:
    members = spec["members"]
    if spec["kind"] == "opd":
        log = read_jsonl(spec["output"])
        hours = 0.0
        figures = {}
        for name, m in members.items():
            scale = sum(count(b) for b in m["benchmarks"]) / max(1, spec["canary_val_problems"] * len(m["benchmarks"]))
            figures = training_figures(log, full_steps=m["steps"], full_validations=m["validations"],
                                       val_scale=scale, gpus=spec["gpus"])
            hours += figures["gpu_hours"]
        figures["gpu_hours"] = hours
    elif spec["kind"] == "sft":
        log = read_jsonl(spec["output"])
        hours, figures = 0.0, {}
        for m in members.values():
            steps = m["epochs"] * max(1, count(m["prompts"]) // m["batch_size"])
            figures = training_figures(log, full_steps=steps, full_validations=0, val_scale=0, gpus=spec["gpus"])
            hours += figures["gpu_hours"]
        figures["gpu_hours"] = hours
    else:
        metrics = read_json(spec["output"])
        samples = sum(count(m["problems"]) * m["n"] for m in members.values())
        figures = sampling_figures(metrics, full_samples=samples, gpus=spec["gpus"])
    return {"job": job, "members": list(members), "gpus": spec["gpus"], "plan": spec["plan"], **figures}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--manifest", required=True, help="the canary jobs as JSON (workflow/rules/canary.smk)")
    ap.add_argument("--table", required=True)
    ap.add_argument("--summary", required=True)
    args = ap.parse_args()
    rows = [row(job, spec) for job, spec in json.loads(args.manifest).items()]
    total = sum(r["gpu_hours"] or 0 for r in rows)
    write_text(args.table, HEADER + table(rows) + f"\nThe study at these speeds: {total:.1f} GPU-hours.\n")
    write_json(args.summary, {"jobs": rows, "gpu_hours": total})
    print(f"{len(rows)} canary jobs; the study: {total:.1f} GPU-hours at their speeds")


if __name__ == "__main__":
    main()
