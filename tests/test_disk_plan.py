"""A training run's disk: its checkpoint's parts, its peak while it runs, what stays after;
printed by the dry run for each training job and for the study."""

import pytest

from opd.disk_plan import GB, checkpoint_bytes, run_disk
from workflow_utils import ROOT, snakemake

ZERO2_BF16 = {"deepspeed": "zero2", "precision": "bf16"}


def test_a_7b_zero2_bf16_checkpoint_is_weights_module_copy_and_fp32_optimizer_shards():
    parts = checkpoint_bytes(7_615_616_512, ZERO2_BF16, zero_stage=2)  # Qwen2.5-7B's parameters
    assert parts["weights"] == parts["DeepSpeed module"] == 2 * 7_615_616_512
    assert parts["optimizer shards"] == 12 * 7_615_616_512  # fp32 master, two moments, over all ranks
    assert sum(parts.values()) / GB == pytest.approx(121.8, abs=0.1)


def test_plain_training_keeps_fp32_weights_and_two_moments():
    assert checkpoint_bytes(10, {}, zero_stage=0) == {"weights": 40, "optimizer": 80}


def test_the_peak_counts_the_kept_checkpoints_one_being_written_and_the_model():
    one = run_disk(10, {}, 0)
    assert one["peak"] == 2 * 120 + 40 and one["after"] == 40  # the checkpoints go after the export
    kept = run_disk(10, {"keep_checkpoints": 3, "keep_final_checkpoint": True}, 0)
    assert kept["peak"] == 4 * 120 + 40 and kept["after"] == 40 + 120


def test_the_dry_run_prints_each_training_job_s_disk_and_the_study_s(tmp_path):
    run = snakemake(tmp_path, "--configfile", str(ROOT / "config/paper.yaml"), "-n")
    lines = [ln for ln in run.stderr.splitlines() if ln.startswith("disk plan: ")]
    assert run.returncode == 0 and len(lines) == 1 + 32 + 1  # the study, 32 OPD runs, 1 SFT
    assert "training runs:" in lines[0] and "GB after them" in lines[0]
    assert any(ln.startswith("disk plan: sft ") and "optimizer shards" in ln for ln in lines)
