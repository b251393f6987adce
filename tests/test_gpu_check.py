"""scripts/gpu_check.py on the CPU at toy scale: the same parts a GPU node runs, on an image
as bare as the GPU node's (PyTorch, transformers, PyYAML; no DeepSpeed, no datasets, no
math-verify, no Snakemake), with and without vLLM."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKER = """
import os, sys
BLOCKED = set(os.environ.get("OPD_BLOCK_IMPORTS", "").split(","))
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: not on the GPU image)")
        return None
sys.meta_path.insert(0, Blocker())
"""
BARE = "deepspeed,datasets,math_verify,snakemake,jsonschema,submitit,trl"


def gpu_check(tmp_path, parts: str, blocked: str) -> dict:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": str(site), "OPD_BLOCK_IMPORTS": blocked}
    out = tmp_path / f"{parts.replace(',', '_')}.json"
    done = subprocess.run([sys.executable, str(ROOT / "scripts/gpu_check.py"), "--scale", "tiny", "--parts", parts,
                           "--out", str(out)], capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(out.read_text())


def test_the_update_and_loss_parts_run_on_a_bare_image_and_the_others_say_why_not(tmp_path):
    report = gpu_check(tmp_path, "update,loss_chunks,vllm_study,ranks", f"{BARE},vllm")
    parts = report["parts"]
    update = parts["update"]
    assert update["status"] == "ran", update
    result = update["result"]
    assert result["update_tokens_per_s"] > 0 and result["teacher_tokens_per_s"] > 0
    assert {"after_startup", "after_update"} <= set(result["memory_gib"])
    assert {"start-up", "update", "optimizer step"} == set(result["plan_gib"])  # the plan beside what was measured
    assert set(parts["loss_chunks"]["result"]) == {"8", "64"}
    assert parts["vllm_study"] == {"status": "skipped", "why": "vLLM is not installed"}
    assert parts["ranks"]["status"] == "skipped" and "needs 2 or more" in parts["ranks"]["why"]
    assert report["vllm"] is False


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None and os.environ.get("OPD_VLLM_TESTS") != "1",
                    reason="vLLM is not installed")
def test_the_vllm_parts_start_the_colocated_engine_and_check_its_weight_sync(tmp_path):
    """With vLLM (its CPU build here): the engine as OPD builds it, within the study's context
    or the model's; after sleep and a wake with new weights, its sampled tokens' log-probs are
    the new weights' (HF's forward), not the old ones'."""
    parts = gpu_check(tmp_path, "vllm_study,vllm_model", BARE)["parts"]
    study, model = parts["vllm_study"]["result"], parts["vllm_model"]["result"]
    assert study["context"] == 256 and model["context"] == 4096  # the study's length; the model's positions
    assert study["engine_kwargs"]["max_num_seqs"] == 4 and study["rollout_tokens_per_s"] > 0
    assert study["logprobs_changed"] and study["synced_logprob_gap"] < 0.05
    assert {"after_startup", "after_sampling", "after_sleep", "after_wake"} == set(study["memory_gib"])
