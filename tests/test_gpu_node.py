"""What a GPU node runs differently from the CPU, tested through the same code: the
arguments each rank's vLLM engine gets, the order in which it wakes and sleeps around an
update (against a recording engine), the seeds that reach vLLM's sampler, each rank's
threads and devices, the collectives' timeout, DeepSpeed's fp32 reduction under bf16, and
validation shared out over the ranks."""

import json
import subprocess
import sys
from datetime import timedelta
from types import SimpleNamespace

import pytest
import torch

from opd import distributed, process
from opd.distributed import Dist
from opd.rollout import SamplingParams
from opd.rollout import vllm as vllm_backend
from opd.rollout.vllm import VLLMBackend, engine_kwargs, request_params


def test_a_colocated_engine_under_torchrun_runs_on_its_ranks_gpu_within_the_studys_lengths():
    """vLLM's default executor takes its device index from "cuda" (GPU 0 on every rank);
    external_launcher takes LOCAL_RANK's. The context is prompt + response, not the model's
    128K positions; the batch limits are a rank's rollouts."""
    kw = engine_kwargs("m", dtype="bfloat16", seed=3, gpu_memory_utilization=0.4, max_model_len=8192,
                       max_num_seqs=32, colocated=True, torchrun=True, sleep_mode=True)
    assert kw["distributed_executor_backend"] == "external_launcher"
    assert (kw["max_model_len"], kw["max_num_seqs"], kw["max_num_batched_tokens"]) == (8192, 32, 8192)
    assert kw["enable_sleep_mode"] and kw["gpu_memory_utilization"] == 0.4 and kw["seed"] == 3
    alone = engine_kwargs("m", dtype="bfloat16", seed=0, colocated=True, torchrun=False, max_model_len=8192)
    assert "distributed_executor_backend" not in alone  # one process: vLLM's own executor, its GPU 0
    serving = engine_kwargs("m", dtype="bfloat16", seed=0, tensor_parallel_size=8)
    assert not {"distributed_executor_backend", "max_num_seqs", "max_num_batched_tokens"} & set(serving)


class RecordingEngine:
    """Stands in for ``vllm.LLM``: records what the backend asks of it."""

    def __init__(self, calls):
        self.calls = calls
        self.llm_engine = SimpleNamespace(model_config=SimpleNamespace(max_model_len=8192))

    def wake_up(self, tags=None):
        self.calls.append(("wake_up", tuple(tags) if tags else None))

    def sleep(self, level=1):
        self.calls.append(("sleep", level))

    def collective_rpc(self, method, kwargs=None):
        names = [(name, t.dtype) for name, t in kwargs["weights_iterator"]]
        self.calls.append((method, len(names), {dtype for _, dtype in names}))

    def reset_prefix_cache(self):
        self.calls.append(("reset_prefix_cache",))

    def generate(self, prompts, params, use_tqdm=False):
        self.calls.append(("generate", len(prompts), params["seed"]))
        return [SimpleNamespace(outputs=[SimpleNamespace(token_ids=[7, 2], finish_reason="stop", logprobs=None)])
                for _ in prompts]


@pytest.fixture
def recorded(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append(("empty_cache",)))
    monkeypatch.setattr(torch, "manual_seed", lambda seed: calls.append(("manual_seed", seed)))
    monkeypatch.setattr(vllm_backend, "_vllm", lambda: SimpleNamespace(SamplingParams=lambda **kw: kw))
    return calls


def test_the_engine_wakes_weights_first_takes_the_students_then_its_kv_cache_and_sleeps_at_level_2(
        recorded, tiny_model_dir):
    """torch's cached blocks go back before vLLM maps its memory again; the weights wake
    alone and are overwritten before the KV cache wakes; level 2 keeps no host copy of
    weights that the next sync replaces."""
    from opd.device_memory import PhaseMemory
    from opd.models import load_model
    from opd.train.opd import awake

    student = load_model(tiny_model_dir)
    backend = VLLMBackend.around(RecordingEngine(recorded), dtype="bfloat16", sleeps=True, cuda=True)
    memory, times = PhaseMemory("cpu"), {}
    n_tensors = len(student.state_dict())
    prompts, sampling = [[5, 6]], SamplingParams(n=1, seed=11, max_new_tokens=4)
    for _ in range(2):
        with awake(backend, student, memory, times):
            backend.generate(prompts, sampling)
    reload = ("reload_weights", n_tensors, {torch.bfloat16})
    assert recorded == [
        reload, ("reset_prefix_cache",), ("manual_seed", 11), ("generate", 1, None), ("sleep", 2),  # built awake
        ("empty_cache",), ("wake_up", ("weights",)), reload, ("reset_prefix_cache",), ("wake_up", ("kv_cache",)),
        ("manual_seed", 11), ("generate", 1, None), ("sleep", 2)]
    assert set(memory.take()["memory_gib"]) == {"before_wake", "after_wake", "after_sampling", "after_sleep"}
    assert times["time_wake"] >= times["time_weight_sync"] > 0 and times["time_sleep"] >= 0


def test_on_cuda_no_request_carries_a_seed_the_device_generator_is_seeded_instead(recorded):
    """A seeded request makes vLLM's CUDA sampler draw request by request; the CPU build keeps
    per-request seeds, so the rehearsal's runs repeat."""
    sampling = SamplingParams(n=2, temperature=1.0, top_p=1.0, max_new_tokens=8, seed=5)
    assert request_params(sampling, logprobs=False, per_request_seed=False)["seed"] is None
    assert request_params(sampling, logprobs=True, per_request_seed=True)["seed"] == 5
    cpu = VLLMBackend.around(RecordingEngine(recorded), sleeps=False, cuda=False)
    cpu.generate([[1, 2]], sampling)
    assert recorded == [("generate", 1, 5)]


def test_a_nodes_cpus_are_shared_by_its_ranks(monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert process.threads_per_rank(64) == 64
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert process.threads_per_rank(64) == 8 and process.threads_per_rank(4) == 1


def test_deterministic_algorithms_only_on_the_cpu():
    """On CUDA they fill every torch.empty (vLLM's graphs included) and pick slower kernels."""
    before = torch.are_deterministic_algorithms_enabled()
    try:
        process.set_determinism("cuda:3")
        assert not torch.are_deterministic_algorithms_enabled()
        process.set_determinism("cpu")
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(before, warn_only=True)


def test_each_ranks_nccl_tensors_are_on_its_own_gpu(monkeypatch):
    monkeypatch.setattr(distributed.dist, "get_backend", lambda: "nccl")
    assert Dist(rank=11, world=16, local_rank=3).comm_device == "cuda:3"
    assert Dist(rank=11, world=16, local_rank=3).device("cuda") == "cuda:3"
    monkeypatch.setattr(distributed.dist, "get_backend", lambda: "gloo")
    assert Dist(rank=1, world=2, local_rank=1).comm_device == "cpu"


def test_the_process_group_waits_as_long_as_the_job_says(monkeypatch):
    """NCCL's default is 10 minutes, less than one rank's share of a long validation."""
    seen = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda backend, timeout: seen.update(timeout=timeout))
    monkeypatch.setattr(distributed.dist, "get_rank", lambda: 1)
    assert distributed.init(timeout_min=90) == Dist(1, 2, 1)
    assert seen["timeout"] == timedelta(minutes=90)
    distributed._OWN_GROUP = False


ZERO2_BF16 = """
import json, sys, torch
sys.path.insert(0, sys.argv[1])
from opd.train.updater import Updater
from opd.distributed import Dist
model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 2))
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
u = Updater(model, opt, 1.0, Dist(), "zero2", "bf16")
print(json.dumps({"weights": str(next(model.parameters()).dtype),
                  "communication": str(u.engine.communication_data_type),
                  "accumulation": str(u.engine.optimizer.gradient_accumulation_dtype)}))
"""


@pytest.mark.skipif(__import__("importlib").util.find_spec("deepspeed") is None, reason="DeepSpeed is not installed")
def test_deepspeed_bf16_accumulates_and_reduces_gradients_in_fp32(tmp_path, root):
    """DeepSpeed's default under bf16 is bf16 for both (the model's dtype); the paper reduced in fp32."""
    from opd.train.updater import deepspeed_config, master_dtype

    cfg = deepspeed_config("zero2", 1.0, "bf16")
    assert cfg["data_types"]["grad_accum_dtype"] == "fp32" and cfg["communication_data_type"] == "fp32"
    assert "data_types" not in deepspeed_config("zero2", 1.0, "fp32")
    # buckets: the file's 2e8 elements for a 1.5B model, no more than a tiny model holds
    zero = deepspeed_config("zero2", 1.0, "fp32", parameters=1_500_000_000)["zero_optimization"]
    assert zero["reduce_bucket_size"] == zero["allgather_bucket_size"] == 200_000_000
    zero = deepspeed_config("zero2", 1.0, "fp32", parameters=30_000)["zero_optimization"]
    assert zero["reduce_bucket_size"] == zero["allgather_bucket_size"] == 30_000
    script = tmp_path / "zero2_bf16.py"
    script.write_text(ZERO2_BF16)
    done = subprocess.run([sys.executable, str(script), str(root / "src")], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    engine = json.loads(done.stdout.strip().splitlines()[-1])
    assert engine == {"weights": "torch.bfloat16", "communication": "torch.float32", "accumulation": "torch.float32"}
    # the student is loaded in the dtype DeepSpeed keeps on the GPU: no fp32 copy at start-up
    assert (master_dtype("bf16", "zero2"), master_dtype("bf16", None), master_dtype("fp32", "zero2")) == (
        "bfloat16", "float32", "float32")


VALIDATE = """
import json, sys
sys.path.insert(0, sys.argv[1])
from opd import distributed
from opd.evaluation import evaluate_over_ranks
from opd.grading import Grader
from opd.chat import ChatFormat
from opd.io import read_jsonl
from opd.models import load_model, load_tokenizer
from opd.rollout import SamplingParams
from opd.rollout.hf import HFBackend
dist = distributed.init()
tok = load_tokenizer(sys.argv[2])
backend = HFBackend(load_model(sys.argv[2]), tok, batch_size=4, progress=False)
with Grader() as grader:
    metrics, samples = evaluate_over_ranks(backend, tok, read_jsonl(sys.argv[3]), SamplingParams(
        n=3, temperature=1.0, top_p=1.0, max_new_tokens=12, seed=4), "{problem}", ChatFormat(template=False), grader,
        dist)
if dist.main:
    print(json.dumps({"metrics": metrics, "samples": samples}))
distributed.shutdown()
"""


def test_validation_is_shared_out_over_the_ranks_and_gathered(tmp_path, root, tiny_model_dir):
    """Two ranks each validate every other problem at their own seed; every rank gets all the
    grades: the same avg@n, samples and grades as one process validating each rank's share
    with that rank's seed."""
    from opd.chat import ChatFormat
    from opd.data import toy_problems
    from opd.evaluation import evaluate, summarise
    from opd.grading import Grader
    from opd.io import write_jsonl
    from opd.models import load_model, load_tokenizer
    from opd.rollout.hf import HFBackend

    problems = toy_problems(3, 7, 1, 2, "v")
    write_jsonl(tmp_path / "val.jsonl", problems)
    script = tmp_path / "validate.py"
    script.write_text(VALIDATE)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
                           "--nproc-per-node=2", str(script), str(root / "src"), str(tiny_model_dir),
                           str(tmp_path / "val.jsonl")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    shared = json.loads(done.stdout.strip().splitlines()[-1])
    assert shared["metrics"]["problems_per_rank"] == [4, 3]
    tok = load_tokenizer(tiny_model_dir)
    backend = HFBackend(load_model(tiny_model_dir), tok, batch_size=4, progress=False)
    alone = []
    with Grader() as grader:
        for rank in (0, 1):
            seed = Dist(rank, 2).seed(4)
            sampling = SamplingParams(n=3, temperature=1.0, top_p=1.0, max_new_tokens=12, seed=seed)
            alone += evaluate(backend, tok, problems[rank::2], sampling, "{problem}", ChatFormat(template=False),
                              grader)[1]
    order = {p["id"]: i for i, p in enumerate(problems)}
    alone.sort(key=lambda s: (order[s["problem_id"]], s["sample"]))
    keys = ("problem_id", "sample", "correct", "grade_status", "response_tokens", "finish_reason")
    assert shared["samples"] == [{k: s[k] for k in keys} for s in alone]
    assert shared["metrics"]["avg@3"] == summarise(alone, 3, 1.0)["avg@3"]
    assert len(shared["samples"]) == 3 * len(problems)
