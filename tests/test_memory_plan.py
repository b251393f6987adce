"""The memory planner: shapes from config.json, the parts of a plan, and the workflow's
refusal of a job that does not fit its declared GPU memory (a dry run on paper.yaml)."""

import copy
from pathlib import Path

import pytest
import yaml
from transformers import AutoModelForCausalLM, Qwen2Config, Qwen3Config
from workflow_utils import snakemake

from opd.memory_plan import GiB, Shape, entry_shape, hub_cache_config, sampling_plan, state_bytes, training_plan

ROOT = Path(__file__).resolve().parents[1]
OPD = {"max_new_tokens": 7168, "micro_batch_size": 8, "max_tokens_per_micro_batch": None, "chunk_size": 64,
       "precision": "fp32", "gradient_checkpointing": False, "rollout_backend": "vllm",
       "vllm_gpu_memory_utilization": 0.4, "rollout_batch_size": 64, "n": 4, "deepspeed": None}


@pytest.mark.parametrize("config", [
    Qwen3Config(vocab_size=1000, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, head_dim=16, tie_word_embeddings=True),
    Qwen2Config(vocab_size=1000, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, tie_word_embeddings=False),
])
def test_parameter_count_is_the_models(config):
    model = AutoModelForCausalLM.from_config(config)
    assert Shape.from_config(config.to_dict()).parameters == sum(p.numel() for p in model.parameters())


def test_published_shapes_give_the_released_sizes():
    published = yaml.safe_load((ROOT / "config/hub_configs.yaml").read_text())
    sizes = {repo: Shape.from_config(cfg).parameters / 1e9 for repo, cfg in published.items() if "/" in repo}
    assert sizes["Qwen/Qwen3-1.7B-Base"] == pytest.approx(1.72, abs=0.01)
    assert sizes["Qwen/Qwen3-4B"] == pytest.approx(4.02, abs=0.01)
    assert sizes["deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"] == pytest.approx(1.78, abs=0.01)
    assert sizes["deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"] == pytest.approx(7.62, abs=0.01)
    assert sizes["deepseek-ai/DeepSeek-R1-Distill-Qwen-14B"] == pytest.approx(14.77, abs=0.01)


def test_a_cached_config_is_read_before_the_published_one(tmp_path, monkeypatch):
    snapshot = tmp_path / "models--org--m/snapshots/abc123"
    snapshot.mkdir(parents=True)
    (tmp_path / "models--org--m/refs").mkdir()
    (tmp_path / "models--org--m/refs/main").write_text("abc123")
    config = Qwen3Config(vocab_size=500, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=16)
    config.to_json_file(snapshot / "config.json")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    assert hub_cache_config("org/m") == snapshot / "config.json"
    published = {"org/m": {**config.to_dict(), "vocab_size": 9}}
    assert entry_shape({"hub": "org/m"}, published).vocab == 500
    assert entry_shape({"hub": "org/other"}, published) is None
    assert entry_shape({"hub": "org/m", "revision": "v2"}, published).vocab == 9  # not cached at that revision


def test_zero_partitions_the_state_and_bf16_weights_halve_it():
    p = 1_000_000
    plain = state_bytes(p, world=8, zero_stage=0, bucket_elems=0)
    zero2 = state_bytes(p, world=8, zero_stage=2, bucket_elems=0)
    bf16 = state_bytes(p, world=8, zero_stage=2, bucket_elems=0, bf16_weights=True)
    assert (plain["weights"], plain["optimizer"], plain["gradients"]) == (4 * p, 8 * p, 4 * p)
    assert (zero2["weights"], zero2["optimizer"], zero2["gradients"]) == (4 * p, 12 * p / 8, 4 * p / 8)
    assert (bf16["weights"], bf16["gradients"]) == (2 * p, 2 * p / 8)


def test_checkpointing_and_the_token_budget_shrink_the_update():
    student = Shape.from_config(yaml.safe_load((ROOT / "config/hub_configs.yaml").read_text())["Qwen/Qwen3-4B"])

    def update(**settings):
        return training_plan("x", student, {**OPD, **settings}, teacher=student).phases["update"]["activations"]

    full = update()
    checkpointed = update(gradient_checkpointing=True)
    budget = update(gradient_checkpointing=True, max_tokens_per_micro_batch=16384)
    assert checkpointed < full / 10 and budget < checkpointed / 3


def test_vllm_share_must_hold_its_weights_and_one_sequence():
    model = Shape.from_config(yaml.safe_load((ROOT / "config/hub_configs.yaml").read_text())
                              ["deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"])
    ok = sampling_plan("e", model, "bfloat16", backend="vllm", batch=64, max_len=32768, gpu_bytes=80 * GiB)
    assert ok.fits() and ok.peak == pytest.approx(0.9 * 80 * GiB)
    tight = sampling_plan("e", model, "bfloat16", backend="vllm", batch=64, max_len=32768,
                          gpu_memory_utilization=0.2, gpu_bytes=80 * GiB)
    assert not tight.fits() and "holds no full 32768-token sequence" in tight.refusal


def paper_dry_run(tmp_path, edit=None):
    config = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    if edit:
        edit(config)
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(config))
    return snakemake(tmp_path, "-n", "--configfile", str(path), env_extra={"HF_HUB_CACHE": str(tmp_path / "no_cache")})


def test_the_dry_run_prints_every_gpu_jobs_plan(tmp_path):
    run = paper_dry_run(tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    plans = [line for line in run.stderr.splitlines() if line.startswith("memory plan: ")]
    experiments = yaml.safe_load((ROOT / "config/paper.yaml").read_text())["experiments"]
    for name in experiments:
        assert any(line.startswith(f"memory plan: opd_train {name}: ") and " of 80 GiB per GPU" in line
                   for line in plans), name
    assert any(line.startswith("memory plan: sft qwen3_1.7b_coldstart: ") for line in plans)
    assert any(line.startswith("memory plan: eval_model r1_distill_14b: ") for line in plans)


def test_a_job_beyond_its_gpu_is_refused_before_submission_naming_the_setting(tmp_path):
    def smaller_gpus(config):
        config["resources"]["rules"]["opd_train"]["gpu_mem_gib"] = 40
        config["experiments"] = {"s4.1_justrl_teacher": copy.deepcopy(config["experiments"]["s4.1_justrl_teacher"])}
        config["experiments"]["s4.1_justrl_teacher"]["train"]["gradient_checkpointing"] = False
        config["sweeps"] = {}
        config["sft"] = {}
        config["probes"] = {}
        config["continuations"] = {}
        config["prompt_sets"].pop("sft_prompts")
        config["prompt_sets"]["dapo"]["exclude"].remove("sft_prompts")
        config["prompt_sets"].pop("deepmath")

    run = paper_dry_run(tmp_path, smaller_gpus)
    assert run.returncode != 0
    out = run.stdout + run.stderr
    assert "memory plan: opd_train s4.1_justrl_teacher:" in out and " of 40 GiB per GPU at update" in out
    assert "does not fit; change experiments.s4.1_justrl_teacher.train.gradient_checkpointing" in out


def test_gpu_check_sets_each_training_jobs_measured_peaks_beside_its_plan(tmp_path):
    """scripts/gpu_check.py: the plans come from a dry run of the same DAG; a log's peaks (GB,
    as torch reports them) are printed in GiB beside them, or n/a on the CPU."""
    import importlib.util
    import json
    import subprocess
    import sys

    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts/gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    subprocess.run([sys.executable, str(ROOT / "scripts/make_hub_mirrors.py")], cwd=tmp_path, check=True,
                   capture_output=True)
    config = gpu_check.one_gpu_config(yaml.safe_load((ROOT / "config/rehearsal.yaml").read_text()))
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    plans = gpu_check.memory_plans([sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
                                    "--directory", str(tmp_path), "--configfile", str(path)])
    opd, sft = next(iter(config["experiments"])), next(iter(config["sft"]))
    assert plans[f"opd_train {opd}"].split(" GiB per GPU")[0].replace(".", "").isdigit()
    assert f"sft {sft}" in plans and f"eval_model {config['experiments'][opd]['student']}" in plans
    for kind, name, peaks in (("opd", opd, (1.0, 2.5)), ("sft", sft, (None,))):
        log = tmp_path / "results" / kind / name / "train_log.jsonl"
        log.parent.mkdir(parents=True)
        log.write_text("\n".join(json.dumps({"step": 1, "tokens": 100, "seconds": 2.0, "tokens_per_s": 10,
                                             "rollout_tokens_per_s": 20, "peak_gpu_memory_gb": gb,
                                             "peak_gpu_memory_reserved_gb": gb and gb + 1}) for gb in peaks))
    lines = gpu_check.figures(tmp_path, plans)
    assert f"opd {opd}: rollout 20 tokens/s, step 10 tokens/s, peak GPU memory 2.33 GiB allocated, " \
           f"3.26 GiB reserved; planned {plans[f'opd_train {opd}']}" in lines
    assert f"sft {sft}: 50 tokens/s, peak GPU memory n/a (CPU); planned {plans[f'sft {sft}']}" in lines
