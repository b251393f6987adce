"""Run Snakemake on this repository's Snakefile from a test's own directory."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# Snakemake with the SLURM plugin's fixed pauses taken out (the launcher's docstring says which)
PROMPT_POLLING = (str(ROOT / "tests/slurm/snakemake_prompt_polling.py"),)


def job_env() -> dict:
    """Jobs run `python` from PATH (SLURM jobs inherit it too): this interpreter's first. The
    hub is never asked (``HF_HUB_OFFLINE``): tests read what the workflow builds or a cache
    they fill."""
    env = {"HF_HUB_OFFLINE": "1", **os.environ}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def snakemake(workdir: Path, *args: str, timeout: int = 900, env_extra: dict | None = None,
              snakefile: Path = ROOT / "Snakefile", entry: tuple[str, ...] = ("-m", "snakemake")
              ) -> subprocess.CompletedProcess:
    """``entry``: how Python starts Snakemake (tests/slurm/snakemake_prompt_polling.py for
    the test cluster's long runs)."""
    cmd = [sys.executable, *entry, "--snakefile", str(snakefile), "--directory", str(workdir), *args]
    env = {k: v for k, v in {**job_env(), **(env_extra or {})}.items() if v is not None}  # None: unset
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a (dry) run as {rule: count}."""
    counts, in_table = {}, False
    for line in output.splitlines():
        if line.startswith("Job stats"):
            in_table, counts = True, {}
            continue
        if in_table:
            m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
            if m and m.group(1) != "total":
                counts[m.group(1)] = int(m.group(2))
            elif line.strip().startswith("total"):
                in_table = False
    return counts


def tiny_config() -> dict:
    """The toy world shrunk until the whole DAG runs in well under a minute."""
    model = {"layers": 1, "hidden": 32, "heads": 2, "steps": 15, "batch_size": 16}
    return {
        "models": {
            "student": {"toy": {**model, "max_digits": 2, "seed": 1}},
            # trained long enough to write well-formed answers, which the cold start keeps
            "teacher": {"toy": {"layers": 1, "hidden": 64, "heads": 2, "steps": 120, "batch_size": 32, "lr": 3e-3,
                                "warmup": 10, "max_digits": 3, "seed": 2}},
        },
        "benchmarks": {
            "easy": {"toy": {"min_digits": 1, "max_digits": 2, "count": 4, "seed": 11}},
            "hard": {"toy": {"min_digits": 3, "max_digits": 3, "count": 4, "seed": 12}},
        },
        "prompt_sets": {
            "sft_p": {"toy": {"min_digits": 1, "max_digits": 2, "count": 12, "seed": 21}, "exclude": ["easy", "hard"]},
            "opd_p": {"toy": {"min_digits": 1, "max_digits": 3, "count": 20, "seed": 22},
                      "exclude": ["easy", "hard", "sft_p"],
                      "dedup": {"method": "ngram", "threshold": 0.9}},
        },
        "sft": {"cold": {"student": "student", "teacher": "teacher", "prompts": "sft_p",
                         "sampling": {"max_new_tokens": 24},
                         "train": {"epochs": 1, "lr": 1e-3, "batch_size": 4, "micro_batch_size": 2}}},
        "experiments": {
            "distilled": {"student": "cold", "teacher": "teacher", "prompts": "opd_p",
                          "objective": {"k": 4, "metrics_k": 4},
                          "train": {"steps": 2, "prompts_per_step": 2, "n": 2, "max_new_tokens": 24,
                                    "lr": 1e-4, "eval_every": 1, "eval_n": 1}},
        },
        "probes": {"teachers": {"student": "student", "teachers": ["teacher", "cold"], "prompts": "opd_p",
                                "num_prompts": 4, "max_new_tokens": 16, "k": 4}},
        "continuations": {"cont": {"student": "student", "teacher": "teacher", "benchmark": "hard",
                                   "prefix_tokens": [0, 4], "num_problems": 4, "n": 1, "max_new_tokens": 24}},
        # an ablation: a grid point and a named point, each a small OPD run from "distilled", each
        # with two seeds
        "sweeps": {"k": {"base": "distilled", "grid": {"objective.k": [2]}, "seeds": [0, 1],
                         "points": {"sampled": {"objective.kind": "sampled"}}}},
        # findings judged on the run: the sweep's points have two seeds each, "distilled" one
        "findings": {"sampled_token": {"sampled": "k.sampled", "topk": ["k.k-2"]},
                     "thinking_pattern": {"works": "k.sampled", "fails": "distilled"},
                     "long_horizon": {"continuation": "cont"},
                     "reward_auroc": {"runs": ["k.sampled"]}},
        "eval": {"prompt_template": "{problem}", "batch_size": 16,
                 "sampling": {"n": 2, "temperature": 0.7, "top_p": 0.95, "max_new_tokens": 24}},
    }
