"""The workflow through a live SLURM cluster with the command users type,
`snakemake --profile slurm`, the profile installed by docs/cluster.md's one-time step:
preemption and the requeue (the resumed run equals one never interrupted, run without
SLURM), a bug that fails once, partition limits refused before any submission, and the
launchers. The whole study's jobs through the cluster (partitions, GPUs, sbatch flags) are
the dress rehearsal's (tests/test_rehearsal.py).

The cluster (tests/slurm_cluster.py) runs here when the machine allows it (root and
Debian's Slurm packages, which `.ci/run` installs); OPD_SLURM_TESTS=1 makes a cluster
that cannot start an error instead of a skip.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import slurm_cluster
from slurm_cluster import sacct, slurm_job_ids
from workflow_utils import PROMPT_POLLING, ROOT, job_env, snakemake, tiny_config, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.slurm]

GPU_RULES = ("eval_model", "teacher_rollouts", "sft", "opd_train")


def on_cluster(config: dict) -> dict:
    """GPU rules on the `gpu` partition with one GPU each, the rest on `cpu`."""
    config = json.loads(json.dumps(config))
    config["resources"] = {
        "default": {"partition": "cpu", "account": slurm_cluster.ACCOUNT, "mem_mb": 2000, "runtime": 30},
        "rules": {rule: {"gpus": 1, "partition": "gpu"} for rule in GPU_RULES},
    }
    return config


def profile_args(config_path: Path) -> list[str]:
    return ["--configfile", str(config_path), "--profile", "slurm",
            "--workflow-profile", str(ROOT / "tests/slurm/profile")]


STEPS = 16  # the OPD run signalled at its fourth step


def long_opd_config() -> dict:
    """Base models and one OPD run long enough to be signalled mid-way."""
    config = tiny_config()
    for key in ("sft", "sweeps", "probes", "continuations"):
        del config[key]
    config["prompt_sets"] = {"opd_p": {**config["prompt_sets"]["opd_p"], "exclude": ["easy", "hard"]}}
    exp = config["experiments"]["distilled"]
    exp["student"] = "student"
    exp["train"].update(steps=STEPS, eval_every=1000, checkpoint_every=1000)
    config = on_cluster(config)
    config["resources"]["rules"]["opd_train"]["gpus"] = 2  # two ranks under torchrun (gloo on the CPU)
    return config


def train_log_steps(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def signal_when(proc, out: Path, step_log: Path, steps: int, job_filter: str, *scancel: str) -> str:
    """Wait for the running job's step log to reach ``steps`` lines, then signal the job."""
    deadline = time.monotonic() + 300
    while train_log_steps(step_log) < steps:
        assert proc.poll() is None and time.monotonic() < deadline, out.read_text()[-4000:]
        time.sleep(0.5)
    queue = subprocess.run(["squeue", "-h", "-o", "%i %k %T"], capture_output=True, text=True).stdout
    job = next(line.split()[0] for line in queue.splitlines() if job_filter in line and "RUNNING" in line)
    subprocess.run(["scancel", *scancel, job], check=True)
    return job


def test_a_preempted_two_rank_job_requeues_itself_resumes_and_ends_as_an_uninterrupted_run(cluster, tmp_path):
    """SIGTERM (a preemption's signal) to every process of the job's steps mid-run: the
    ranks checkpoint at the step boundary and the job requeues itself under the same id
    (USR2, the time-limit warning, takes the same path); Snakemake submitted it once; the
    weights equal those of a run never interrupted."""
    from safetensors.torch import load_file

    cfg = write_config(tmp_path / "config.yaml", long_opd_config())
    out = tmp_path / "snakemake.out"
    proc = subprocess.Popen([sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
                             "--directory", str(tmp_path), *profile_args(cfg), "results/opd/distilled/model"],
                            stdout=open(out, "w"), stderr=subprocess.STDOUT, env=job_env())
    step_log = tmp_path / "results/runs/opd/distilled/train_log.jsonl"
    try:
        job = signal_when(proc, out, step_log, 4, "rule_opd_train", "--signal=TERM")
        # SLURM holds a requeued job for ~2 min before it may start again; skip the wait
        deadline = time.monotonic() + 120
        while "PENDING" not in subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True,
                                              text=True).stdout:
            assert proc.poll() is None and time.monotonic() < deadline, out.read_text()[-4000:]
            time.sleep(0.5)
        subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)
        assert proc.wait(timeout=300) == 0, out.read_text()[-4000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    output = out.read_text()
    runs = [r for r in sacct(slurm_job_ids(output), every_run=True) if r["rule"] == "opd_train"]
    assert [(r["JobID"], r["State"]) for r in runs] == [(job, "REQUEUED"), (job, "COMPLETED")], runs
    assert "gres/gpu=2" in runs[-1]["AllocTRES"]
    starts = [json.loads(line) for line in (tmp_path / "results/runs/opd/distilled/starts.jsonl")
              .read_text().splitlines()]
    assert [(s["slurm_job"], s["restarts"]) for s in starts] == [(job, 0), (job, 1)]
    assert starts[0]["step"] == 0 and 3 <= starts[1]["step"] < STEPS, starts
    log = (tmp_path / "logs/opd_train/distilled.log").read_text()  # the last run's
    assert f"resumed from step {starts[1]['step']}" in log, log[-3000:]
    steps = [json.loads(line)["step"] for line in (tmp_path / "results/opd/distilled/train_log.jsonl")
             .read_text().splitlines()]
    assert steps == list(range(0, STEPS + 1))  # every step once: nothing lost, nothing repeated

    # the same two-rank run, never interrupted, on this machine without SLURM
    plain = tmp_path / "uninterrupted"
    plain.mkdir()
    run = snakemake(plain, "results/opd/distilled/model", "--cores", "2", "--configfile", str(cfg))
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    interrupted, uninterrupted = (load_file(str(d / "results/opd/distilled/model/model.safetensors"))
                                  for d in (tmp_path, plain))
    assert interrupted.keys() == uninterrupted.keys()
    assert all(torch.equal(interrupted[k], uninterrupted[k]) for k in interrupted)


def test_a_failing_job_fails_its_rule_clearly_and_leaves_no_output(cluster, tmp_path):
    broken = tmp_path / "broken_model"  # every file a model directory needs (the DAG checks that), one broken
    broken.mkdir()
    (broken / "config.json").write_text("{ not json")
    (broken / "tokenizer.json").write_text("{}")
    (broken / "model.safetensors").write_bytes(b"")
    config = tiny_config()
    config = {"models": {"broken": {"path": str(broken)}},
              "benchmarks": {"easy": config["benchmarks"]["easy"]}, "eval": config["eval"]}
    cfg = write_config(tmp_path / "config.yaml", on_cluster(config))
    # the profile's own retry policy (the plugin's fixed pauses out: the requeue test runs it as shipped)
    run = snakemake(tmp_path, *profile_args(cfg), entry=PROMPT_POLLING)
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert "Error in rule eval_model" in output
    assert "broken_model" in output and "config.json" in output  # the job's log names the bad file
    records = [r for r in sacct(slurm_job_ids(output), every_run=True) if r["rule"] == "eval_model"]
    assert [r["State"] for r in records] == ["FAILED"]  # a bug fails once: no retry burns another job
    assert not (tmp_path / "results/eval/broken/easy.json").exists()
    dry = snakemake(tmp_path, "--configfile", str(cfg), "-n")
    assert "results/eval/broken/easy.json" in dry.stdout + dry.stderr  # still to be made


def test_resources_the_partition_cannot_give_are_refused_before_any_job_is_submitted(cluster, tmp_path):
    config = on_cluster(tiny_config())
    config["resources"]["rules"]["eval_model"].update(partition="short", runtime=30)  # MaxTime 10
    config["resources"]["rules"]["opd_train"]["gpus"] = 4  # the node has 2
    cfg = write_config(tmp_path / "config.yaml", config)
    run = snakemake(tmp_path, *profile_args(cfg))
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert "resources.rules.eval_model (or resources.default).runtime: 30 min" in output, output[-3000:]
    assert "partition short's MaxTime of 10 min" in output
    assert slurm_job_ids(output) == []  # refused while the DAG was built
    dry = snakemake(tmp_path, *profile_args(cfg), "-n")  # the plan says it too, and goes on
    assert dry.returncode == 0 and "resources.rules.opd_train (or resources.default).gpus: 4" in dry.stderr


def test_srun_starts_one_torchrun_per_node_meeting_at_the_first_node(cluster, tmp_path):
    """The several-node launcher, run on the test cluster's one node: srun, then torchrun's
    c10d rendezvous on the node SLURM names first, keyed by the job id; every worker sees
    its rank."""
    from opd.launch import srun_torchrun

    probe = tmp_path / "probe.py"
    probe.write_text("import os, pathlib\n"
                     f"pathlib.Path({str(tmp_path)!r}, 'rank' + os.environ['RANK']).write_text("
                     "os.environ['WORLD_SIZE'] + ' ' + os.environ['TORCHELASTIC_RUN_ID'])\n")
    script = tmp_path / "job.sh"
    script.write_text(f"#!/bin/bash\n{srun_torchrun(1, 2, 1)} {probe}\n")
    job = subprocess.run(["sbatch", "--parsable", "--wait", "-p", "gpu", "--nodes=1", "--ntasks=1", "--gres=gpu:2",
                          "--cpus-per-task=1", "--mem=1000", "-t", "5", "-o", str(tmp_path / "out.txt"), str(script)],
                         capture_output=True, text=True, timeout=300, env=job_env())
    out = (tmp_path / "out.txt").read_text()
    assert job.returncode == 0, out[-3000:]
    # both workers of world size 2 joined the rendezvous keyed by the SLURM job id
    assert [(tmp_path / f"rank{r}").read_text() for r in (0, 1)] == [f"2 {job.stdout.strip()}"] * 2


def test_srun_with_one_task_per_gpu_joins_one_process_group(cluster, tmp_path):
    """Without torchrun: `srun` starts a task per GPU and opd.distributed derives the ranks
    and the rendezvous from SLURM's variables (submitit), then all-reduces across them."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import pathlib, sys\n"
        f"sys.path.insert(0, {str(ROOT / 'src')!r})\n"
        "from opd import distributed\n"
        "d = distributed.init()\n"
        "total = d.sum([d.rank + 1.0])[0]\n"
        f"pathlib.Path({str(tmp_path)!r}, f'rank{{d.rank}}').write_text(f'{{d.world}} {{total}}')\n"
        "distributed.shutdown()\n")
    script = tmp_path / "job.sh"
    script.write_text(f"#!/bin/bash\nsrun --ntasks=2 --cpus-per-task=1 python {probe}\n")
    job = subprocess.run(["sbatch", "--parsable", "--wait", "-p", "gpu", "--ntasks=2", "--gpus=2", "--cpus-per-task=1",
                          "--mem=1000", "-t", "5", "-o", str(tmp_path / "out.txt"), str(script)],
                         capture_output=True, text=True, timeout=300, env=job_env())
    assert job.returncode == 0, (tmp_path / "out.txt").read_text()[-3000:]
    assert [(tmp_path / f"rank{r}").read_text() for r in (0, 1)] == ["2 3.0"] * 2
