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
    alone = state_bytes(p, world=1, zero_stage=0, bucket_elems=0)
    plain = state_bytes(p, world=8, zero_stage=0, bucket_elems=0)
    zero2 = state_bytes(p, world=8, zero_stage=2, bucket_elems=0)
    bf16 = state_bytes(p, world=8, zero_stage=2, bucket_elems=1000, bf16_weights=True)
    assert (alone["weights"], alone["optimizer"], alone["gradients"]) == (4 * p, 8 * p, 4 * p)
    assert plain["gradients"] == 8 * p  # and the flat copy they are summed through
    assert (zero2["weights"], zero2["optimizer"], zero2["gradients"]) == (4 * p, 12 * p / 8, 4 * p / 8)
    # bf16 weights; gradients accumulated in an fp32 partition, each bucket reduced through an fp32 copy
    assert (bf16["weights"], bf16["gradients"]) == (2 * p, 4 * p / 8 + 1000 * (2 * 2 + 4))


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
    assert ok.fits() and ok.peak == pytest.approx(1 * GiB + 0.9 * 80 * GiB)  # the CUDA context beside its share
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
        assert any(line.startswith(f"memory plan: opd_train {name}: ") and " of 79.2 GiB per GPU" in line
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
    assert "memory plan: opd_train s4.1_justrl_teacher:" in out and " of 39.6 GiB per GPU at update" in out
    assert "does not fit; change experiments.s4.1_justrl_teacher.train.gradient_checkpointing" in out

def test_a_gpu_declared_too_small_for_any_setting_names_its_declared_size(tmp_path):
    """0.01 GiB printed as "of 0.0 GiB", and the refusal named vLLM's share."""
    def tiny_gpus(config):
        config["resources"]["rules"]["opd_train"]["gpu_mem_gib"] = 0.01
        config["experiments"] = {"s4.1_justrl_teacher": config["experiments"]["s4.1_justrl_teacher"]}
        for key in ("sweeps", "sft", "probes", "continuations"):
            config[key] = {}
        config["prompt_sets"].pop("sft_prompts")
        config["prompt_sets"]["dapo"]["exclude"].remove("sft_prompts")
        config["prompt_sets"].pop("deepmath")

    run = paper_dry_run(tmp_path, tiny_gpus)
    assert run.returncode != 0
    out = run.stdout + run.stderr
    assert "memory plan: opd_train s4.1_justrl_teacher:" in out and " of 0.0099 GiB per GPU at " in out
    assert "does not fit; change resources.rules.opd_train.gpu_mem_gib (declared 0.01 GiB; the job needs " in out
    assert "change experiments.s4.1_justrl_teacher.train.vllm_gpu_memory_utilization" not in out


PUBLISHED = yaml.safe_load((ROOT / "config/hub_configs.yaml").read_text())
PAPER_OPD = {**OPD, "precision": "bf16", "deepspeed": "zero2", "gradient_checkpointing": True,
             "max_tokens_per_micro_batch": 32768, "chunk_size": 512, "max_prompt_tokens": 1024,
             "prompts_per_step": 64, "teacher_sharding": "replicated"}


def test_the_plan_counts_the_device_vllms_share_of_its_capacity_and_what_torch_keeps_at_wake_up():
    from opd.memory_plan import usable_bytes

    usable = usable_bytes(80 * GiB)
    assert usable == pytest.approx(79.2 * GiB)  # cudaMemGetInfo's total on an 80 GB card
    s7, s14 = (Shape.from_config(PUBLISHED[f"deepseek-ai/DeepSeek-R1-Distill-Qwen-{n}"]) for n in ("7B", "14B"))

    def plan(**settings):
        return training_plan("x", s7, {**PAPER_OPD, **settings}, world=8, zero_stage=2, bucket_elems=int(2e8),
                             teacher=s14, gpu_bytes=usable)

    replicated, sharded = plan(), plan(teacher_sharding="zero3")
    sampling = replicated.phases["sampling"]
    assert sampling["vLLM"] == pytest.approx(0.4 * usable)
    assert sampling["torch cache kept"] > 0
    assert sampling["teacher weights"] == pytest.approx(2 * s14.parameters)
    assert sharded.phases["sampling"]["teacher weights"] == pytest.approx(2 * s14.parameters / 8)
    assert usable - replicated.peak < 2 * GiB < 10 * GiB < usable - sharded.peak  # the B.3 14B teacher's case
    # start-up: the whole teacher once (DeepSpeed moves it to the GPU before partitioning it),
    # beside the student as loaded, in bf16 under DeepSpeed's bf16 (no fp32 copy)
    assert sum(sharded.phases["start-up"].values()) >= 2 * (s14.parameters + s7.parameters)
    assert sharded.phases["start-up"]["student weights"] == 2 * s7.parameters
    assert sharded.phases["update"]["loss"] > replicated.phases["update"]["loss"]  # the head gathered for the loss


def test_checkpointed_layer_inputs_are_held_in_the_weights_dtype():
    """Under DeepSpeed's bf16 the residual stream is bf16: 2 bytes an element, not 4."""
    from opd.memory_plan import trunk_activation_bytes

    s7 = Shape.from_config(PUBLISHED["deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"])
    fp32_stream = trunk_activation_bytes(s7, 32768, 2, True, res=4)
    bf16_stream = trunk_activation_bytes(s7, 32768, 2, True, res=2)
    assert fp32_stream - bf16_stream >= s7.layers * 32768 * 2 * s7.hidden  # 6.1 GiB for the 7B
    bf16 = training_plan("x", s7, PAPER_OPD, world=8, zero_stage=2, teacher=s7)
    fp32_master = training_plan("x", s7, {**PAPER_OPD, "deepspeed": None}, world=8, teacher=s7)
    assert bf16.phases["update"]["activations"] < fp32_master.phases["update"]["activations"]


def test_vllms_overheads_come_out_of_its_share_and_grow_with_its_batch_limits():
    from opd.memory_plan import vllm_overhead_bytes

    s15 = Shape.from_config(PUBLISHED["deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"])
    defaults = vllm_overhead_bytes(s15, 2, 16384, 1024)  # vLLM 0.32's offline defaults on an H100
    colocated = vllm_overhead_bytes(s15, 2, 8192, 32)
    assert 2 * GiB < defaults < 5 * GiB and colocated < defaults / 2
    served = sampling_plan("e", s15, "bfloat16", backend="vllm", batch=0, max_len=32768, gpu_bytes=79 * GiB)
    assert served.parts["activations, sampler, graphs"] == pytest.approx(defaults)
    assert served.parts["KV cache"] == pytest.approx(0.9 * 79 * GiB - 2 * s15.parameters - defaults)


def test_the_colocated_engine_holds_the_paper_validations_longer_responses():
    """Validating at 31,744 tokens with 7,168-token rollouts: the engine's context (and so the
    one sequence its KV cache must hold) is the prompt plus the longer of the two."""
    from opd.memory_plan import usable_bytes

    s15 = Shape.from_config(PUBLISHED["deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"])

    def note(**settings):
        return training_plan("x", s15, {**PAPER_OPD, **settings}, world=8, zero_stage=2, bucket_elems=int(2e8),
                             teacher=s15, gpu_bytes=usable_bytes(80 * GiB)).note

    assert "8192-token sequences" in note()
    assert "32768-token sequences" in note(eval_max_new_tokens=31744)
    assert "8192-token sequences" in note(eval_max_new_tokens=512)  # a shorter validation: the rollouts' length


def test_validation_samples_at_its_own_length_and_the_engine_holds_the_longest():
    from opd.train.opd import OPDSettings, longest_response, validation_tokens

    assert validation_tokens(OPDSettings(max_new_tokens=7168)) == 7168
    paper = OPDSettings(max_new_tokens=7168, eval_max_new_tokens=31744)
    assert validation_tokens(paper) == longest_response(paper) == 31744
    assert longest_response(OPDSettings(max_new_tokens=7168, eval_max_new_tokens=512)) == 7168
