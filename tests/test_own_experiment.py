"""The README's "your own OPD experiment", as written: config/example_own_opd.yaml's local
student, teacher, prompt set and benchmark made toy-sized at the paths it names, then the
README's command run in a copy of the repository, end to end, and the results it names."""

import json
import shlex
import shutil
import subprocess
import sys

import pytest
import yaml
from workflow_utils import ROOT, job_env

pytestmark = pytest.mark.e2e

EXAMPLE = "config/example_own_opd.yaml"


def readme_command() -> str:
    """The README's command for the example, the one line of a code block that names it."""
    lines = (ROOT / "README.md").read_text().splitlines()
    commands = [line for line in lines if line.startswith("snakemake ") and EXAMPLE in line]
    assert len(commands) == 1, commands
    return commands[0]


def clone_repository(to):
    for part in ("Snakefile", "workflow", "scripts", "src", "config", "envs", "profiles"):
        (shutil.copytree if (ROOT / part).is_dir() else shutil.copy)(ROOT / part, to / part)
    return to


def make_inputs(clone, config: dict, student_dir, teacher_dir) -> None:
    """Toy-sized Hugging Face model directories and JSONL files at the config's own paths."""
    from opd.data import toy_problems
    from opd.io import write_jsonl

    for name, made in (("my_student", student_dir), ("my_teacher", teacher_dir)):
        shutil.copytree(made, clone / config["models"][name]["path"], ignore=shutil.ignore_patterns("train_log.jsonl"))
    bench = toy_problems(seed=11, count=6, min_digits=1, max_digits=2, prefix="bench")
    write_jsonl(clone / config["benchmarks"]["my_benchmark"]["path"], bench)
    # one prompt is a benchmark problem, which the config's `exclude` drops
    prompts = toy_problems(seed=12, count=24, min_digits=1, max_digits=2, prefix="prompt")
    write_jsonl(clone / config["prompt_sets"]["my_prompts"]["path"], prompts + [{**bench[0], "id": "prompt-copy"}])


def test_the_readmes_own_experiment_runs_end_to_end(tmp_path, tiny_model_dir, teacher_model_dir):
    clone = clone_repository(tmp_path)
    config = yaml.safe_load((clone / EXAMPLE).read_text())
    make_inputs(clone, config, tiny_model_dir, teacher_model_dir)
    args = shlex.split(readme_command())
    run = subprocess.run([sys.executable, "-m", *args], cwd=clone, env=job_env(),
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]

    # where the README says the results appear
    assert "| my_opd |" in (clone / "results/tables/experiments.md").read_text()
    base = (clone / "results/tables/base_eval.md").read_text()
    assert "| my_student |" in base and "| my_teacher |" in base and "my_benchmark" in base
    summary = json.loads((clone / "results/summary.json").read_text())
    exp = summary["experiments"]["my_opd"]
    assert exp["student"] == "my_student" and exp["teacher"] == "my_teacher"
    scores = exp["benchmarks"]["my_benchmark"]
    for key in ("acc_before", "acc_after", "acc_teacher"):
        assert 0.0 <= scores[key] <= 1.0, (key, scores)
    log = [json.loads(line) for line in (clone / "results/opd/my_opd/train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(config["experiments"]["my_opd"]["train"]["steps"] + 1))
    assert all("overlap_ratio" in r for r in log[1:])
    assert (clone / "results/opd/my_opd/model/model.safetensors").exists()
    assert json.loads((clone / "results/eval/my_opd/my_benchmark.json").read_text())["model"]
    assert (clone / "results/figures/section_none.png").stat().st_size > 0
    # the files' own ids are kept (`id_key: id`), and the prompt that is a benchmark problem is dropped
    bench = [json.loads(line) for line in (clone / "results/data/benchmarks/my_benchmark.jsonl").open()]
    prompts = [json.loads(line) for line in (clone / "results/data/prompts/my_prompts.jsonl").open()]
    assert [b["id"] for b in bench] == [f"bench-{i}" for i in range(6)]
    assert "prompt-copy" not in {p["id"] for p in prompts} and len(prompts) >= 20
    assert not {p["problem"] for p in prompts} & {b["problem"] for b in bench}
