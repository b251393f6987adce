"""The vLLM backend without vLLM: importing the project never needs it, asking for it
says how to get it, and its output conversion keeps ids, finish reasons and logprobs."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from opd.rollout import make_backend
from opd.rollout.vllm import to_rollouts

ROOT = Path(__file__).resolve().parents[1]


def test_nothing_imports_vllm():
    code = ("import sys; import opd.rollout, opd.rollout.vllm, opd.train.opd, opd.evaluation; "
            "print('vllm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed")
def test_asking_for_vllm_without_it_says_how_to_install():
    with pytest.raises(ImportError, match=r"opd-workflow\[gpu\]"):
        make_backend("vllm", "some/model")


def test_request_outputs_become_rollouts_in_prompt_order():
    def completion(ids, reason, lps):
        return SimpleNamespace(token_ids=ids, finish_reason=reason,
                               logprobs=[{t: SimpleNamespace(logprob=lp)} for t, lp in zip(ids, lps)])

    outputs = [SimpleNamespace(outputs=[completion([5, 2], "stop", [-0.1, -0.2]),
                                        completion([7, 7, 7], "length", [-1.0, -1.5, -2.0])]),
               SimpleNamespace(outputs=[completion([2], "stop", [-0.3])])]
    rollouts = to_rollouts(outputs, logprobs=True)
    assert [(r.prompt_index, r.sample_index, r.token_ids, r.finish_reason) for r in rollouts] == [
        (0, 0, [5, 2], "stop"), (0, 1, [7, 7, 7], "length"), (1, 0, [2], "stop")]
    assert rollouts[1].logprobs == [-1.0, -1.5, -2.0]
    assert to_rollouts(outputs, logprobs=False)[0].logprobs is None


# --- with vLLM (its CPU build in CI: OPD_VLLM_TESTS=1 makes a missing vLLM a failure) ---

def _need_vllm():
    if importlib.util.find_spec("vllm") is None:
        if os.environ.get("OPD_VLLM_TESTS") == "1":
            pytest.fail("OPD_VLLM_TESTS=1 but vLLM is not installed")
        pytest.skip("vLLM is not installed")


@pytest.fixture(scope="module")
def vllm_model(tmp_path_factory, tokenizer):
    """A tiny toy model whose head size vLLM's CPU attention supports (32)."""
    _need_vllm()
    from opd.toy.pretrain import ToyRecipe, pretrain

    path = tmp_path_factory.mktemp("vllm_model")
    pretrain(tokenizer, ToyRecipe(layers=1, hidden=64, heads=2, steps=40, batch_size=16), path, show_progress=False)
    return path


@pytest.fixture(scope="module")
def engine(vllm_model):
    backend = make_backend("vllm", str(vllm_model), dtype="float32", colocated=True, gpu_memory_utilization=0.5)
    yield backend
    backend.close()


def toy_prompts(tokenizer, count=16):
    from opd.data import toy_problems

    return [tokenizer(p["problem"], add_special_tokens=False)["input_ids"] for p in toy_problems(4, count, 1, 3, "v")]


def max_logprob_gap(rollouts, model, prompts, pad_id):
    from opd.rollout.hf import response_logprobs

    ref = response_logprobs(model, [prompts[r.prompt_index] for r in rollouts], [r.token_ids for r in rollouts], pad_id)
    return max(abs(a - b) for r, lp in zip(rollouts, ref) for a, b in zip(r.logprobs, lp))


def test_vllm_greedy_matches_hf(engine, vllm_model, tokenizer):
    from opd.models import load_model
    from opd.rollout import SamplingParams

    prompts = toy_prompts(tokenizer)
    greedy = SamplingParams(n=1, temperature=0.0, top_p=1.0, max_new_tokens=24)
    hf = make_backend("hf", load_model(vllm_model), tokenizer).generate(prompts, greedy)
    vl = engine.generate(prompts, greedy)
    assert [r.token_ids for r in vl] == [r.token_ids for r in hf]
    assert [r.finish_reason for r in vl] == [r.finish_reason for r in hf]


def test_vllm_takes_updated_weights(engine, vllm_model, tokenizer):
    """After load_weights, vLLM's sampled-token log-probs are the updated model's, not the old one's."""
    import torch

    from opd.models import load_model
    from opd.rollout import SamplingParams

    prompts = toy_prompts(tokenizer, 8)
    old, new = load_model(vllm_model), load_model(vllm_model)
    with torch.no_grad():
        torch.manual_seed(0)
        for p in new.parameters():
            p.add_(0.05 * torch.randn_like(p))
    engine.load_weights(new)
    sampled = engine.generate(prompts, SamplingParams(n=2, temperature=1.0, top_p=1.0, max_new_tokens=16, seed=3),
                              logprobs=True)
    assert max_logprob_gap(sampled, new, prompts, tokenizer.pad_token_id) < 1e-4
    assert max_logprob_gap(sampled, old, prompts, tokenizer.pad_token_id) > 1e-2
    engine.load_weights(old)


def test_opd_with_vllm_rollouts_resumes_after_sigkill(tmp_path, vllm_model, teacher_model_dir, tokenizer):
    import signal

    from test_resume import interrupt_after_checkpoint, opd_command, run

    from opd.data import toy_problems
    from opd.io import write_jsonl

    prompts = tmp_path / "prompts.jsonl"
    write_jsonl(prompts, toy_problems(5, 40, 1, 3, "p"))
    cmd = opd_command(vllm_model, teacher_model_dir, prompts, tmp_path, steps=6,
                      rollout_backend="vllm", vllm_gpu_memory_utilization=0.5)
    assert interrupt_after_checkpoint(cmd, tmp_path / "run", signal.SIGKILL) == -signal.SIGKILL
    done = run(cmd)
    assert "resumed from step" in done.stdout
    steps = [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 7))
    assert (tmp_path / "model" / "model.safetensors").exists()


def test_check_script_compares_backends_on_the_cpu(vllm_model, tmp_path):
    from opd.data import toy_problems
    from opd.io import write_jsonl

    problems = tmp_path / "problems.jsonl"
    write_jsonl(problems, toy_problems(2, 8, 1, 3, "c"))
    done = subprocess.run([sys.executable, str(ROOT / "scripts/check_vllm_backend.py"), "--model", str(vllm_model),
                           "--problems", str(problems), "--device", "cpu", "--max-new-tokens", "16"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "greedy token-identical: 8/8" in done.stdout


def test_two_ranks_each_with_its_engine_train_in_bf16_under_deepspeed_and_share_validation(
        tmp_path, vllm_model, teacher_model_dir, tokenizer):
    """The combination a GPU node runs, on two CPU ranks: each rank's colocated engine through
    vLLM's torchrun executor, sampling in bf16, DeepSpeed ZeRO-2's bf16 update (fp32
    reduction), validation shared out over the ranks, device memory logged at each phase."""
    from test_distributed import launch

    from opd.data import toy_problems
    from opd.io import write_jsonl

    write_jsonl(tmp_path / "prompts.jsonl", toy_problems(5, 40, 1, 3, "p"))
    write_jsonl(tmp_path / "val.jsonl", toy_problems(6, 5, 1, 2, "v"))
    settings = {"steps": 2, "prompts_per_step": 4, "n": 2, "max_new_tokens": 12, "lr": 1e-4, "eval_every": 2,
                "eval_n": 2, "micro_batch_size": 4, "rollout_backend": "vllm", "vllm_gpu_memory_utilization": 0.5,
                "deepspeed": "zero2", "precision": "bf16", "max_prompt_tokens": 64}
    done = launch(2, "opd_train.py", [
        "--student", str(vllm_model), "--teacher", str(teacher_model_dir), "--student-dtype", "bfloat16",
        "--prompts", str(tmp_path / "prompts.jsonl"), "--benchmark", f"val={tmp_path / 'val.jsonl'}",
        "--settings", json.dumps(settings), "--objective", '{"k": 4}', "--run-dir", str(tmp_path / "run"),
        "--out", str(tmp_path / "model"), "--log-out", str(tmp_path / "log.jsonl")])
    output = done.stdout + done.stderr
    assert output.count("Using external launcher for distributed inference") >= 2, output[-3000:]
    assert output.count("max_seq_len=76,") >= 2  # the study's prompt + response (64 + 12), not the model's 512
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [0, 1, 2]
    for r in (log[0], log[2]):
        assert r["val_problems_per_rank"] == {"val": [3, 2]} and 0 <= r["val"]["val"] <= 1
    phases = {"before_wake", "after_wake", "after_sampling", "after_sleep", "after_update"}
    assert set(log[1]["memory_gib"]) == {"after_startup", *phases} and log[1]["time_startup"] > 0
    assert set(log[2]["memory_gib"]) == phases
    for r in log[1:]:
        assert r["memory_source"] == "host_rss" and r["time_wake"] > 0
    from safetensors.torch import load_file

    import torch

    assert {t.dtype for t in load_file(str(tmp_path / "model/model.safetensors")).values()} == {torch.bfloat16}
