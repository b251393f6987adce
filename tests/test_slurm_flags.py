"""The sbatch command each job would get, built by the SLURM executor plugin's own
submit-string code from the resources of a real dry run (no cluster needed)."""

from __future__ import annotations

import re
import shlex
from types import SimpleNamespace

import pytest
from snakemake_executor_plugin_slurm.submit_string import get_submit_command
from snakemake_executor_plugin_slurm.utils import set_gres_string
from snakemake_executor_plugin_slurm.validation import validate_slurm_extra
from workflow_utils import ROOT, snakemake


class Resources(dict):
    """Job resources as the plugin reads them: ``res.get(k)`` and ``res.k``."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _value(text: str):
    return int(text) if re.fullmatch(r"-?\d+", text) else text


def dry_run_jobs(workdir, configfile, *targets: str) -> list[dict]:
    """Every job of a dry run: its rule, resources and printed block (with the shell command)."""
    run = snakemake(workdir, "--configfile", str(configfile), "-n", "--printshellcmds", *targets)
    assert run.returncode == 0, run.stderr[-3000:]
    jobs = []
    for block in re.split(r"\n(?=\[[^\]]+\]\n(?:local)?rule )", run.stdout + run.stderr):
        m = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        res = re.search(r"^\s+resources: (.*)$", block, re.M)
        if not m or not res:
            continue
        pairs = re.findall(r"(\w+)=(.*?)(?=, \w+=|$)", res.group(1))
        jobs.append({"rule": m.group(1), "resources": Resources({k: _value(v) for k, v in pairs}),
                     "block": block})
    return jobs


def sbatch_flags(job: dict) -> list[str]:
    res = job["resources"]
    plugin_job = SimpleNamespace(resources=res, threads=1, name=job["rule"])
    validate_slurm_extra(plugin_job)
    params = {"run_uuid": "uuid", "slurm_logfile": "log", "comment_str": f"rule_{job['rule']}",
              "account": f"-A {res['slurm_account']}" if res.get("slurm_account") else "",
              "partition": f"-p {res['slurm_partition']}" if res.get("slurm_partition") else "",
              "workdir": "/work"}
    return shlex.split(get_submit_command(plugin_job, params) + set_gres_string(plugin_job))


def flag(flags: list[str], name: str) -> list[str]:
    """Values of a flag given as `--name=v`, `--name v` or `-n v`."""
    out = []
    for i, f in enumerate(flags):
        if f.startswith(name + "="):
            out.append(f.split("=", 1)[1])
        elif f == name:
            out.append(flags[i + 1])
    return out


@pytest.fixture(scope="module")
def paper_jobs(tmp_path_factory):
    return dry_run_jobs(tmp_path_factory.mktemp("paper"), ROOT / "config/paper.yaml")


def by_rule(jobs, rule):
    found = [j for j in jobs if j["rule"] == rule]
    assert found, rule
    return found


def test_opd_on_one_node_with_eight_gpus(paper_jobs):
    for job in by_rule(paper_jobs, "opd_train"):
        flags = sbatch_flags(job)
        assert flag(flags, "--gpus") == ["8"] and flag(flags, "-p") == ["gpu"]
        assert flag(flags, "--cpus-per-task") == ["64"] and flag(flags, "--mem") == ["480000"]
        assert flag(flags, "-t") == ["2880"]
        assert flag(flags, "--signal") == ["USR2@600"]
        assert flag(flags, "--nodes") == ["1"]  # all eight GPUs on the node torchrun runs on
        assert not flag(flags, "--gres") and not flag(flags, "--ntasks-per-gpu")
        assert "torchrun --standalone --nnodes=1 --nproc-per-node=8 " in job["block"]


def test_sft_on_two_nodes_runs_one_torchrun_per_node(paper_jobs):
    (job,) = by_rule(paper_jobs, "sft")
    flags = sbatch_flags(job)
    assert flag(flags, "--nodes") == ["2"] and flag(flags, "--ntasks") == ["2"]
    assert flag(flags, "--ntasks-per-node") == ["1"] and flag(flags, "--gres") == ["gpu:8"]
    assert flag(flags, "--cpus-per-task") == ["64"] and flag(flags, "--signal") == ["USR2@600"]
    assert not flag(flags, "--gpus") and not flag(flags, "--ntasks-per-gpu")  # conflicting geometry
    assert job["resources"]["mpi"] == "srun"  # runs in the batch step, which calls srun itself
    assert "srun --nodes=2 --ntasks-per-node=1 --cpus-per-task=64" in job["block"]
    assert "torchrun --nnodes=2 --nproc-per-node=8 --rdzv-backend=c10d" in job["block"]


def test_teacher_rollouts_run_an_engine_per_gpu_when_the_teacher_fits_one(paper_jobs):
    (job,) = by_rule(paper_jobs, "teacher_rollouts")
    assert "--workers 8 --tensor-parallel-size 1 " in job["block"]  # Qwen3-4B fits one 80 GB GPU
    assert "--work-dir results/runs/rollouts/" in job["block"]  # the chunk journals, kept across reruns


LOCAL_RULES = {"tables", "all", "sweep_point", "sweep_table", "figure", "rollout_auroc", "download_hub", "download"}


def test_paper_dag_has_every_section_sweep_and_analysis(paper_jobs):
    counts = {}
    for job in paper_jobs:
        counts[job["rule"]] = counts.get(job["rule"], 0) + 1
    # 13 experiments + 19 sweep points that differ from their base (4 coincide with it)
    assert counts["opd_train"] == 32 and counts["sweep_point"] == 23 and counts["sweep_table"] == 7
    # base models, SFT and OPD models on 3 benchmarks: (9 + 1 + 32) x 3
    assert counts["eval_model"] == 126 and counts["prepare_prompts"] == 3
    assert counts["sft"] == counts["teacher_rollouts"] == counts["teacher_continuation"] == 1
    assert counts["probe_teachers"] == 2 and counts["figure"] == 14


def test_every_gpu_rule_gets_what_the_config_asked_for(paper_jobs):
    rules = {j["rule"] for j in paper_jobs}
    assert {"eval_model", "teacher_rollouts", "sft", "opd_train", "prepare_benchmark", "prepare_prompts"} <= rules
    for job in paper_jobs:
        if job["rule"] in LOCAL_RULES:
            continue
        flags = sbatch_flags(job)
        gpus = flag(flags, "--gpus") or [g.split(":")[-1] for g in flag(flags, "--gres")]
        expected = {"eval_model": "1", "teacher_rollouts": "8", "sft": "8", "opd_train": "8", "probe_teachers": "1",
                    "teacher_continuation": "1"}.get(job["rule"])
        assert gpus == ([expected] if expected else []), (job["rule"], flags)
        if expected and job["rule"] != "sft":  # sft: two nodes
            assert flag(flags, "--nodes") == ["1"], (job["rule"], flags)
        assert flag(flags, "-p") == (["gpu"] if expected else ["cpu"])
        for name in ("--gpus", "--gres", "--nodes", "--ntasks", "-t", "--mem", "--cpus-per-task", "--signal"):
            assert len(flag(flags, name)) <= 1, (name, flags)  # no flag given twice


def test_the_canarys_jobs_ask_for_what_the_studys_do(tmp_path):
    """paper.yaml's canary: each job shape on the resources of the study's rule it stands for."""
    jobs = dry_run_jobs(tmp_path, ROOT / "config/paper.yaml", "canary")
    stands_for = {"canary_opd": "opd_train", "canary_sft": "sft", "canary_rollouts": "teacher_rollouts",
                  "canary_eval": "eval_model"}
    assert {j["rule"] for j in jobs} >= set(stands_for)
    gpus = {"opd_train": "8", "sft": "8", "teacher_rollouts": "8", "eval_model": "1"}
    for job in jobs:
        if job["rule"] not in stands_for:
            continue
        flags = sbatch_flags(job)
        assert flag(flags, "--gpus") or flag(flags, "--gres"), (job["rule"], flags)
        got = flag(flags, "--gpus") or [g.split(":")[-1] for g in flag(flags, "--gres")]
        assert got == [gpus[stands_for[job["rule"]]]] and flag(flags, "-p") == ["gpu"], (job["rule"], flags)
        if job["rule"] != "canary_sft":
            assert flag(flags, "--nodes") == ["1"], (job["rule"], flags)


def test_toy_config_asks_for_no_gpus(tmp_path):
    for job in dry_run_jobs(tmp_path, ROOT / "config/config.yaml"):
        if job["rule"] in LOCAL_RULES:
            continue
        flags = sbatch_flags(job)
        assert not flag(flags, "--gpus") and not flag(flags, "--gres") and not flag(flags, "--nodes")
        assert flag(flags, "--ntasks") == ["1"] and flag(flags, "--cpus-per-task") == ["1"]
        if job["rule"] in ("opd_train", "sft"):
            assert flag(flags, "--signal") == ["USR2@300"]
