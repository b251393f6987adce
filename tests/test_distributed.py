"""Two processes under torchrun (gloo on the CPU) make the same update as one process on
the whole batch: token counts and gradients are summed over ranks. The runs several tests
compare against are made once (module fixtures, and the module on one pytest-xdist worker)."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from opd.data import toy_problems
from opd.io import write_jsonl

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.xdist_group("distributed")


def launch(nproc: int, script: str, args: list[str]) -> subprocess.CompletedProcess:
    prefix = [sys.executable] if nproc == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", f"--nproc-per-node={nproc}"]
    done = subprocess.run([*prefix, str(ROOT / "scripts" / script), *args], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def weights(model_dir: Path) -> dict:
    return load_file(str(model_dir / "model.safetensors"))


def assert_same_update(start: Path, one: Path, two: Path) -> None:
    """Both runs moved the weights, and to the same place (up to summation order)."""
    w0, w1, w2 = weights(start), weights(one), weights(two)
    assert w1.keys() == w2.keys()
    assert any(not torch.equal(w0[k], w1[k]) for k in w1)
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=0, atol=2e-5)


HAS_DEEPSPEED = importlib.util.find_spec("deepspeed") is not None


# greedy rollouts, so every run scores the same responses; length-grouped micro-batches on two
# ranks (their number can differ between ranks)
GREEDY = {"steps": 2, "prompts_per_step": 6, "n": 1, "temperature": 0.0, "max_new_tokens": 8, "lr": 1e-3,
          "micro_batch_size": 2, "eval_every": 100}
TWO_RANKS = {"max_tokens_per_micro_batch": 20}
# ZeRO-2 on two ranks with activation checkpointing; its shards kept to be counted
ZERO2 = {"deepspeed": "zero2", "gradient_checkpointing": True, "keep_final_checkpoint": True}


def train(work: Path, nproc: int, student: Path, teacher: Path, prompts: Path, settings: dict,
          objective: dict | None = None) -> list[dict]:
    """An OPD run of scripts/opd_train.py on ``nproc`` ranks into ``work``; its log."""
    launch(nproc, "opd_train.py", [
        "--student", str(student), "--teacher", str(teacher), "--prompts", str(prompts),
        "--settings", json.dumps(settings), "--objective", json.dumps(objective or {"k": 4}),
        "--run-dir", str(work / "run"), "--out", str(work / "model"), "--log-out", str(work / "log.jsonl")])
    return [json.loads(line) for line in (work / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def greedy_prompts(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    write_jsonl(path, toy_problems(8, 40, 1, 2, "p"))
    return path


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory, tiny_model_dir, teacher_model_dir, greedy_prompts):
    """One process, no DeepSpeed: the update the others must make. (run dir, log)"""
    work = tmp_path_factory.mktemp("plain")
    return work, train(work, 1, tiny_model_dir, teacher_model_dir, greedy_prompts, GREEDY)


@pytest.fixture(scope="module")
def zero2_run(tmp_path_factory, tiny_model_dir, teacher_model_dir, greedy_prompts):
    """Two ranks under ZeRO-2, the teacher replicated on each. (run dir, log)"""
    work = tmp_path_factory.mktemp("zero2")
    return work, train(work, 2, tiny_model_dir, teacher_model_dir, greedy_prompts, {**GREEDY, **TWO_RANKS, **ZERO2})


def assert_same_logs(one: list[dict], two: list[dict], keys, rel: float, abs: float) -> None:
    assert [r["step"] for r in two] == [r["step"] for r in one]
    for a, b in zip(one, two):
        for key in keys:
            assert b[key] == pytest.approx(a[key], rel=rel, abs=abs), key


def test_opd_on_two_ranks_equals_one_process(tmp_path, tiny_model_dir, teacher_model_dir, greedy_prompts):
    """Without DeepSpeed; with a sequence-mean aggregation, whose means span micro-batches and ranks."""
    objective = {"k": 4, "loss_agg_mode": "seq-mean-token-mean"}
    logs = {n: train(tmp_path / f"np{n}", n, tiny_model_dir, teacher_model_dir, greedy_prompts,
                     {**GREEDY, **(TWO_RANKS if n == 2 else {})}, objective) for n in (1, 2)}
    assert_same_update(tiny_model_dir, tmp_path / "np1/model", tmp_path / "np2/model")
    assert [r["step"] for r in logs[2]] == [1, 2]  # one log, written by rank 0
    assert not list((tmp_path / "np2/run").glob("deepspeed/step_*/*"))
    assert_same_logs(logs[1], logs[2], ("loss", "overlap_ratio", "response_length", "accuracy", "grad_norm"),
                     rel=1e-4, abs=1e-6)


@pytest.mark.skipif(not HAS_DEEPSPEED, reason="DeepSpeed is not installed")
def test_zero2_on_two_ranks_equals_one_process(tiny_model_dir, plain_run, zero2_run):
    (plain, one), (zero2, two) = plain_run, zero2_run
    assert_same_update(tiny_model_dir, plain / "model", zero2 / "model")
    assert [r["step"] for r in two] == [1, 2]  # one log, written by rank 0
    shards = sorted((zero2 / "run/deepspeed").glob("step_*/zero_pp_rank_*_optim_states.pt"))
    assert len(shards) == 2  # one optimizer partition per rank
    assert_same_logs(one, two, ("loss", "overlap_ratio", "response_length", "accuracy", "grad_norm"),
                     rel=1e-4, abs=1e-6)


@pytest.mark.skipif(not HAS_DEEPSPEED, reason="DeepSpeed is not installed")
def test_a_zero3_sharded_teacher_gives_the_replicated_teachers_update(tmp_path, tiny_model_dir, teacher_model_dir,
                                                                       greedy_prompts, zero2_run):
    """Two ranks, each holding half the teacher (DeepSpeed ZeRO-3, a layer and the head
    gathered when needed), score as two full replicas do: the same loss, metrics and weights.
    Length-grouped micro-batches whose counts differ between ranks keep the gathers matched."""
    replicated, rep = zero2_run
    z3 = train(tmp_path / "zero3", 2, tiny_model_dir, teacher_model_dir, greedy_prompts,
               {**GREEDY, **TWO_RANKS, **ZERO2, "teacher_sharding": "zero3"})
    w_rep, w_z3 = weights(replicated / "model"), weights(tmp_path / "zero3/model")
    for k in w_rep:
        torch.testing.assert_close(w_z3[k], w_rep[k], rtol=0, atol=1e-6)
    assert any(not torch.equal(weights(tiny_model_dir)[k], w_rep[k]) for k in w_rep)
    assert_same_logs(rep, z3, ("loss", "overlap_ratio", "adv_intersection", "entropy_teacher", "reverse_kl",
                               "grad_norm"), rel=1e-5, abs=1e-7)


@pytest.mark.skipif(not HAS_DEEPSPEED, reason="DeepSpeed is not installed")
def test_zero2_on_one_gpu_started_by_python_equals_the_plain_update(tmp_path, tiny_model_dir, teacher_model_dir,
                                                                    greedy_prompts, plain_run):
    """A one-GPU job runs `python`, not torchrun: DeepSpeed must not go looking for MPI."""
    plain, _ = plain_run
    for name, extra in (("zero2", {"deepspeed": "zero2"}), ("zero2_bf16", {"deepspeed": "zero2", "precision": "bf16"})):
        train(tmp_path / name, 1, tiny_model_dir, teacher_model_dir, greedy_prompts, {**GREEDY, **extra})
    assert_same_update(tiny_model_dir, plain / "model", tmp_path / "zero2/model")
    # DeepSpeed's bf16: bf16 weights (saved as such), fp32 master weights in the optimizer. The
    # update matches fp32's up to bf16 rounding: weights of ~0.02 round to ~1e-4 (2^-9 relative),
    # against updates of ~2e-3 (2 Adam steps of lr 1e-3): a few percent of the update's norm
    w0, w1, w2 = weights(tiny_model_dir), weights(plain / "model"), weights(tmp_path / "zero2_bf16/model")
    assert all(w.dtype == torch.bfloat16 for w in w2.values())
    delta = torch.cat([(w1[k] - w0[k]).flatten() for k in w1])
    error = torch.cat([(w2[k].float() - w1[k]).flatten() for k in w1])
    assert error.norm() < 0.1 * delta.norm()


def test_sft_on_two_ranks_equals_one_process(tmp_path, tiny_model_dir):
    data = tmp_path / "sft.jsonl"
    write_jsonl(data, [{"problem": p["problem"], "response": f"\\boxed{{{p['answer']}}}"}
                       for p in toy_problems(8, 41, 1, 2, "s")])
    settings = {"epochs": 1, "lr": 1e-3, "batch_size": 4, "micro_batch_size": 1}
    for nproc in (1, 2):
        work = tmp_path / f"np{nproc}"
        launch(nproc, "sft_train.py", ["--model", str(tiny_model_dir), "--data", str(data), "--template",
                                       "{problem}", "--settings", json.dumps(settings), "--run-dir",
                                       str(work / "run"), "--out", str(work / "model"), "--log-out",
                                       str(work / "log.jsonl")])
    assert_same_update(tiny_model_dir, tmp_path / "np1/model", tmp_path / "np2/model")
    one, two = ([json.loads(x) for x in (tmp_path / f"np{n}/log.jsonl").read_text().splitlines()] for n in (1, 2))
    assert [r["loss"] for r in two] == pytest.approx([r["loss"] for r in one], rel=1e-5)


def descendants(pid: int) -> list[int]:
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


@pytest.mark.skipif(not HAS_DEEPSPEED, reason="DeepSpeed is not installed")
def test_zero2_run_signalled_usr2_resumes_to_the_same_weights(tmp_path, tiny_model_dir, teacher_model_dir):
    """torchrun's agent ignores USR2 (as under SLURM, where the job's shell ignores it); the
    workers checkpoint their ZeRO shards and exit 75; the rerun resumes from them."""
    prompts = tmp_path / "prompts.jsonl"
    write_jsonl(prompts, toy_problems(8, 40, 1, 2, "p"))
    settings = {"steps": 6, "prompts_per_step": 2, "n": 2, "max_new_tokens": 8, "lr": 1e-3,
                "micro_batch_size": 2, "eval_every": 1000, "checkpoint_every": 1000, "deepspeed": "zero2"}

    def command(work):
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc-per-node=2",
                str(ROOT / "scripts/opd_train.py"), "--student", str(tiny_model_dir),
                "--teacher", str(teacher_model_dir),
                "--prompts", str(prompts), "--settings", json.dumps(settings), "--objective", '{"k": 4}',
                "--run-dir", str(work / "run"), "--out", str(work / "model"), "--log-out", str(work / "log.jsonl")]

    def ignore_usr2():
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)

    whole, cut = tmp_path / "whole", tmp_path / "cut"
    subprocess.run(command(whole), check=True, capture_output=True, timeout=600)
    proc = subprocess.Popen(command(cut), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=ignore_usr2)
    log = cut / "run/train_log.jsonl"
    deadline = time.monotonic() + 300
    while not (log.exists() and len(log.read_text().splitlines()) >= 2):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    for pid in [proc.pid, *descendants(proc.pid)]:  # like slurmstepd: every process of the step
        os.kill(pid, signal.SIGUSR2)
    assert proc.wait(timeout=300) != 0
    assert not (cut / "model").exists()
    done = subprocess.run(command(cut), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed from step" in done.stdout
    steps = [json.loads(line)["step"] for line in (cut / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 7))
    for k, v in weights(whole / "model").items():
        torch.testing.assert_close(weights(cut / "model")[k], v, rtol=0, atol=1e-6)
