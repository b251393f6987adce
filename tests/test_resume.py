"""A killed or signalled training job resumes from its last checkpoint and ends with the
same weights as an uninterrupted run (CPU, fixed seed)."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from opd.data import toy_problems
from opd.io import write_jsonl
from opd.train.checkpoint import EXIT_REQUEUE

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    write_jsonl(path, toy_problems(5, 40, 1, 3, "p"))
    return path


def opd_command(student, teacher, prompts, work: Path, steps: int = 24, **overrides) -> list[str]:
    settings = {"steps": steps, "prompts_per_step": 2, "n": 2, "max_new_tokens": 10, "lr": 1e-3,
                "micro_batch_size": 3, "checkpoint_every": 3, **overrides}
    return [sys.executable, str(ROOT / "scripts/opd_train.py"), "--student", str(student), "--teacher", str(teacher),
            "--prompts", str(prompts), "--settings", json.dumps(settings), "--objective", '{"k": 4}',
            "--run-dir", str(work / "run"), "--out", str(work / "model"), "--log-out", str(work / "log.jsonl")]


def sft_command(student, data, work: Path) -> list[str]:
    settings = {"epochs": 3, "lr": 1e-3, "batch_size": 4, "micro_batch_size": 3, "checkpoint_every": 3}
    return [sys.executable, str(ROOT / "scripts/sft_train.py"), "--model", str(student), "--data", str(data),
            "--settings", json.dumps(settings), "--run-dir", str(work / "run"), "--out", str(work / "model"),
            "--log-out", str(work / "log.jsonl")]


def interrupt_after_checkpoint(cmd: list[str], run_dir: Path, sig: int) -> int:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while not (run_dir / "latest").exists():
        assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(sig)
    return proc.wait(timeout=300)


def run(cmd):
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def weights(work: Path) -> dict:
    return load_file(str(work / "model" / "model.safetensors"))


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] == b[k]).all(), k


@pytest.fixture(scope="module")
def reference_opd(tmp_path_factory, tiny_model_dir, teacher_model_dir, prompts):
    work = tmp_path_factory.mktemp("opd_ref")
    run(opd_command(tiny_model_dir, teacher_model_dir, prompts, work))
    return work


def test_a_finished_run_keeps_its_model_and_logs_but_no_checkpoint(reference_opd):
    run_dir = reference_opd / "run"
    assert (reference_opd / "model/model.safetensors").exists()
    assert not list(run_dir.glob("step_*")) and not (run_dir / "latest").exists()
    assert {"fingerprint.json", "train_log.jsonl", "starts.jsonl"} <= {p.name for p in run_dir.iterdir()}


# SIGUSR2 (SLURM's time-limit warning) takes SIGTERM's handler; it is sent to a two-rank
# ZeRO-2 run in tests/test_distributed.py
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill", "term"])
def test_opd_resumes_to_identical_weights(sig, tmp_path, tiny_model_dir, teacher_model_dir, prompts, reference_opd):
    cmd = opd_command(tiny_model_dir, teacher_model_dir, prompts, tmp_path)
    code = interrupt_after_checkpoint(cmd, tmp_path / "run", sig)
    if sig == signal.SIGKILL:
        assert code == -signal.SIGKILL
    else:  # a checkpoint is written at the step boundary, then a distinct exit code
        assert code == EXIT_REQUEUE
    assert not (tmp_path / "model").exists()
    done = run(cmd)
    assert "resumed from step" in done.stdout
    assert_same(weights(tmp_path), weights(reference_opd))
    steps = [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 25))  # no step lost or logged twice


def test_changed_settings_do_not_resume_a_stale_run(tmp_path, tiny_model_dir, teacher_model_dir, prompts):
    cmd = opd_command(tiny_model_dir, teacher_model_dir, prompts, tmp_path)
    interrupt_after_checkpoint(cmd, tmp_path / "run", signal.SIGKILL)
    changed = [c.replace('"lr": 0.001', '"lr": 0.002') for c in cmd]
    done = run(changed)
    assert "resumed" not in done.stdout and "starting afresh" in done.stdout


def test_a_retrained_student_does_not_resume_a_stale_run(tmp_path, tokenizer, teacher_model_dir, prompts):
    from opd.toy.pretrain import ToyRecipe, pretrain

    student = tmp_path / "student"
    recipe = ToyRecipe(layers=1, hidden=32, heads=2, steps=3, batch_size=8)
    pretrain(tokenizer, recipe, student, show_progress=False)
    cmd = opd_command(student, teacher_model_dir, prompts, tmp_path)
    interrupt_after_checkpoint(cmd, tmp_path / "run", signal.SIGKILL)
    pretrain(tokenizer, ToyRecipe(**{**recipe.__dict__, "seed": 1}), student, show_progress=False)
    done = run(cmd)
    assert "resumed" not in done.stdout and "starting afresh" in done.stdout


def test_sft_resumes_to_identical_weights(tmp_path, tiny_model_dir):
    data = tmp_path / "sft.jsonl"
    write_jsonl(data, [{"problem": p["problem"], "response": f"\\boxed{{{p['answer']}}}"}
                       for p in toy_problems(3, 24, 1, 2, "s")])
    ref = tmp_path / "ref"
    run(sft_command(tiny_model_dir, data, ref))
    work = tmp_path / "work"
    cmd = sft_command(tiny_model_dir, data, work)
    assert interrupt_after_checkpoint(cmd, work / "run", signal.SIGKILL) == -signal.SIGKILL
    run(cmd)
    assert_same(weights(work), weights(ref))


def test_a_run_killed_before_its_first_checkpoint_logs_step_0_once(tmp_path):
    """The retry starts over: the validation at step 0 and the steps before the kill are redone."""
    from opd.train.checkpoint import RunDir

    run = RunDir(tmp_path / "run", {"settings": 1})
    rows = [{"step": 0, "val": {"b": 0.1}}, {"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.4}]
    run.log_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run.truncate_log(0)
    assert run.log_path.read_text() == ""
    run.log_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run.truncate_log(1)  # resumed from the step-1 checkpoint: step 0 and 1 stay
    assert [json.loads(ln)["step"] for ln in run.log_path.read_text().splitlines()] == [0, 1]


def test_the_run_directory_keeps_its_newest_checkpoints_only(tmp_path, tiny_model_dir):
    import torch

    from opd.models import load_model
    from opd.train.checkpoint import RunDir
    from opd.train.updater import Updater
    from opd.distributed import Dist

    model = load_model(tiny_model_dir, dtype="float32", device="cpu")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    for keep, left in ((1, ["step_000003"]), (2, ["step_000002", "step_000003"])):
        run = RunDir(tmp_path / f"keep{keep}", {"settings": 1}, keep=keep)
        for step in (1, 2, 3):
            run.save(step, model, Updater(model, opt, 1.0, Dist()), sched, {})
        assert sorted(p.name for p in run.path.glob("step_*")) == left
        assert run.load(model, Updater(model, opt, 1.0, Dist()), sched)[0] == 3
