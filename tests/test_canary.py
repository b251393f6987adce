"""The canary: one job per distinct GPU job shape of a study, never retried, and a table of
measured memory and speed beside the plan (opd.canary, workflow/rules/canary.smk)."""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from workflow_utils import ROOT, job_counts, snakemake, write_config

from opd.canary import group_shapes, table, training_figures


def test_shapes_group_jobs_by_what_decides_their_cost():
    jobs = {"a": "k1", "b": "k2", "c": "k1", "d": "k3", "e": "k2"}
    assert group_shapes(jobs) == {"a": ["a", "c"], "b": ["b", "e"], "d": ["d"]}


def test_the_papers_canary_runs_each_shape_once(tmp_path):
    """paper.yaml: models of one architecture are one shape (Qwen3-4B and its GRPO version,
    the 7B R1-Distill and Skywork), settings that change no cost do not count (the learning
    rates, the objective), and those that do (response lengths) do."""
    config = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    path = write_config(tmp_path / "paper.yaml", config)
    run = snakemake(tmp_path, "-n", "canary", "--configfile", str(path),
                    env_extra={"HF_HUB_CACHE": str(tmp_path / "no_cache")})
    assert run.returncode == 0, run.stderr[-3000:]
    counts = job_counts(run.stdout + run.stderr)
    # 1.7B <- 4B, 1.5B <- 7B, 1.5B <- 1.5B, 7B <- 7B, 7B <- 14B, and 5 more response lengths
    assert [counts[f"canary_{kind}"] for kind in ("opd", "sft", "rollouts", "eval")] == [10, 1, 1, 5]
    assert "opd_train" not in counts and "eval_model" not in counts  # nothing of the study itself


def test_the_rehearsals_canary_is_the_papers_shapes_in_small(tmp_path):
    """config/rehearsal.yaml's canary, from the dry run's manifest: a cold-started student has
    its base's shape, so s5.1 rides on s3.1's OPD job; the R1-Distill pair is a shape of its own;
    and the canary's GPU jobs ask the cluster for what the study's do."""
    subprocess.run([sys.executable, str(ROOT / "scripts/make_hub_mirrors.py")], cwd=tmp_path, check=True)
    run = snakemake(tmp_path, "-n", "-p", "canary", "--configfile", str(ROOT / "config/rehearsal.yaml"))
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout + run.stderr
    counts = job_counts(out)
    assert [counts[f"canary_{kind}"] for kind in ("opd", "sft", "rollouts", "eval")] == [2, 1, 1, 3]
    manifest = json.loads(shlex.split(re.search(r"--manifest ('[^']*'|\\S+) --table", out).group(1))[0])
    assert list(manifest["opd s3.1_nonthinking_teacher"]["members"]) == ["s3.1_nonthinking_teacher",
                                                                        "s5.1_coldstart_opd"]
    assert list(manifest["opd s3.3_reverse_to_larger"]["members"]) == ["s3.3_reverse_to_larger"]
    assert {j["gpus"] for j in manifest.values() if j["kind"] in ("opd", "sft")} == {2}


def test_a_training_canarys_figures_time_the_steps_after_the_first_and_project_the_study():
    log = [{"step": 0, "val": {}, "time_validation": 50.0},
           {"step": 1, "time_rollout": 90, "time_wait": 5, "time_update": 30, "time_teacher": 4, "time_grading": 1,
            "rollout_tokens_per_s": 10, "update_tokens_per_s": 50, "time_wake": 3, "time_sleep": 2,
            "time_startup": 300.0, "memory_gib": {"after_startup": 20.0, "after_sampling": 60.0},
            "memory_source": "device_used"},
           {"step": 2, "time_rollout": 60, "time_wait": 5, "time_update": 30, "time_teacher": 4, "time_grading": 1,
            "rollout_tokens_per_s": 20, "update_tokens_per_s": 60, "time_wake": 1, "time_sleep": 1,
            "memory_gib": {"after_sampling": 61.0, "after_update": 40.0}},
           {"step": 3, "time_rollout": 70, "time_wait": 5, "time_update": 30, "time_teacher": 4, "time_grading": 1,
            "rollout_tokens_per_s": 30, "update_tokens_per_s": 70, "time_wake": 2, "time_sleep": 1,
            "memory_gib": {"after_sampling": 59.0, "after_update": 41.0}, "time_validation": 70.0}]
    f = training_figures(log, full_steps=280, full_validations=15, val_scale=10.0, gpus=8)
    assert f["seconds_per_step"] == 105  # the median of steps 2 and 3 (100, 110): step 1 warms up
    assert f["rollout_tokens_per_s"] == 25 and f["time_wake"] == 1.5
    assert f["memory_gib"] == {"after_startup": 20.0, "after_sampling": 61.0, "after_update": 41.0}
    assert f["gpu_hours"] == pytest.approx((280 * 105 + 15 * 60.0 * 10 + 300) * 8 / 3600)
    rows = table([{"job": "opd x", "members": ["x", "y"], "gpus": 8, **f,
                   "plan": {"phases": {"sampling": 62.5, "update": 59.6, "optimizer step": 38.8, "start-up": 43.4}}}])
    assert "after_sampling 61.0 / 62.5; after_update 41.0 / 59.6" in rows and "| x, y | 8 |" in rows
    assert "| 105 | rollout 25, update 65 tokens/s | 1.50 (-) / 1.00 | 60 |" in rows


def test_a_failing_canary_job_is_not_retried_and_says_why_at_once(study, tmp_path):
    """Retries are for preemption; a canary that fails found something: with the profile's
    retries it runs once (here a prompt over the length the plan sized the engine for)."""
    workdir, config = study
    config = json.loads(json.dumps(config))
    config["experiments"]["distilled"]["train"]["max_prompt_tokens"] = 3
    config["sweeps"] = {}
    path = write_config(tmp_path / "config.yaml", config)
    run = snakemake(workdir, "--configfile", str(path), "--cores", "2", "--retries", "3", "--keep-going",
                    "results/canary/opd/distilled/train_log.jsonl")
    assert run.returncode != 0
    out = run.stdout + run.stderr
    assert "Trying to restart" not in out, out[-3000:]
    log = (workdir / "logs/canary/opd/distilled.log").read_text()
    assert "over train.max_prompt_tokens (3)" in log
    assert not Path(workdir / "results/canary/runs/opd/distilled").exists()


def test_the_canary_of_the_toy_study_tables_every_shape(study):
    """Locally, on the toy world's CPU models: every canary job runs, keeps only its log, and
    the table sets each one's measured memory and speeds beside the plan (none: no GPUs)."""
    workdir, config = study
    cfg = write_config(workdir / "canary_config.yaml", config)
    run = snakemake(workdir, "--configfile", str(cfg), "--cores", "2", "canary")
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    summary = json.loads((workdir / "results/canary/summary.json").read_text())
    jobs = {r["job"]: r for r in summary["jobs"]}
    assert {"opd distilled", "sft cold", "teacher_rollouts cold"} <= set(jobs)
    opd = jobs["opd distilled"]
    # one shape: the sweep's points and seeds change only the objective and the seed
    assert opd["members"] == ["distilled", "k.k-2", "k.k-2.seed1", "k.sampled", "k.sampled.seed1"]
    assert opd["memory_source"] == "host_rss" and opd["seconds_per_step"] > 0 and opd["gpu_hours"] > 0
    assert {"after_startup", "after_update"} <= set(opd["memory_gib"])
    assert jobs["sft cold"]["seconds_per_step"] > 0
    assert any(j.startswith("eval_model ") and r["samples_per_s"] > 0 for j, r in jobs.items())
    assert not list((workdir / "results/canary/runs").glob("*/*"))  # no checkpoints left behind
    text = (workdir / "results/canary/table.md").read_text()
    assert "| opd distilled |" in text and "The study at these speeds:" in text
