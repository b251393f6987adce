"""Training prompts checked against the benchmarks by normalised content (opd.overlap)."""
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from opd.io import DataError
from opd.overlap import decontaminate, find_overlap, normalise, strip_templates, template_ends

SCRIPT = Path(__file__).resolve().parents[1] / "scripts/prepare_problems.py"


def test_containment_matches_the_all_pairs_brute_force():
    rng = random.Random(0)
    words = ["Find", "x", "the", "sum", "of", "12", "+", "34", "=", "?", "value", "1", "2", "Solve:", "\n"]
    problems = {"b": [{"id": j, "problem": " ".join(rng.choices(words, k=rng.randint(1, 4)))} for j in range(30)],
                "c": [{"id": j, "problem": " ".join(rng.choices(words, k=rng.randint(2, 6)))} for j in range(30)]}
    prompts = ["  ".join(rng.choices(words, k=rng.randint(1, 12))).upper() for _ in range(300)]
    templates = ["Solve: {problem} ="]
    ends = [template_ends(t) for t in templates]
    expected = {}
    for name, rows in problems.items():
        for i, prompt in enumerate(prompts):
            for row in rows:
                needle = strip_templates(normalise(row["problem"]), ends)
                if needle and f" {needle} " in f" {normalise(prompt)} ":
                    expected.setdefault(name, []).append((i, str(row["id"])))
    assert sum(map(len, expected.values())) > 50
    assert find_overlap(prompts, problems, templates) == {k: sorted(v) for k, v in expected.items()}


def test_spacing_case_and_templates_do_not_hide_a_problem_but_word_boundaries_count():
    bench = {"aime": [{"id": "p1", "problem": "Find the sum of 12+34."}, {"id": "p2", "problem": "12+34"}]}
    prompts = ["Solve:\nFIND  the sum of 12 + 34 .\nAnswer:", "112+345", "What is 12+34?", "Find the sum of 12+345."]
    assert find_overlap(prompts, bench) == {"aime": [(0, "p1"), (0, "p2"), (2, "p2")]}
    stored = {"aime": [{"id": "p1", "problem": "Find x.\n\nPlease reason step by step."}]}
    assert find_overlap(["find x."], stored, ["{problem}\n\nPlease reason step by step."]) == {"aime": [(0, "p1")]}


def test_a_training_set_holding_a_benchmark_problem_stops_naming_the_set_the_benchmark_and_the_count():
    rows = [{"id": "r0", "problem": "Solve: Find the sum of 12+34. Answer:"}, {"id": "r1", "problem": "Find x."},
            {"id": "r2", "problem": "find the SUM of 12 + 34."}, {"id": "r3", "problem": "What is 7*8?"}]
    bench = {"aime24": [{"id": "a7", "problem": "Find the sum of 12+34."}],
             "amc23": [{"id": "c1", "problem": "What is 7 * 8?"}]}
    with pytest.raises(DataError) as err:
        decontaminate("dapo", rows, bench, excluded={"amc23"})
    message = str(err.value)
    assert message.startswith("prompt set 'dapo': 2 of its 4 prompts hold problems of benchmark 'aime24' "
                              "(prompt 'r0' holds aime24 problem 'a7', prompt 'r2' holds aime24 problem 'a7')")
    assert "prompt_sets.dapo.exclude" in message and "prompt_sets.dapo.allow_benchmark_overlap: true" in message
    kept, report = decontaminate("dapo", rows, bench, excluded={"amc23", "aime24"})
    assert [r["id"] for r in kept] == ["r1"] and report == {"removed": {"amc23": 1, "aime24": 2}, "allowed": {}}
    kept, report = decontaminate("dapo", rows, bench, excluded={"amc23"}, allow=True)
    assert [r["id"] for r in kept] == ["r0", "r1", "r2"] and report["allowed"] == {"aime24": 2}


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_prepare_checks_a_training_set_against_benchmarks_it_does_not_exclude(tmp_path):
    train = write(tmp_path / "train.jsonl", [{"id": "t0", "problem": "Solve: What is 2+3?\nAnswer:", "answer": "5"},
                                             {"id": "t1", "problem": "What is 4+4?", "answer": "8"},
                                             {"id": "t2", "problem": " What is  4+4?", "answer": "8"}])
    bench = write(tmp_path / "bench.jsonl", [{"id": "b0", "problem": "what is 2+3?", "answer": "5"}])
    spec = {"path": str(train), "problem_key": "problem", "answer_key": "answer", "id_key": "id", "where": {},
            "strip_template": None}

    def prepare(*extra, **changes):
        return subprocess.run([sys.executable, str(SCRIPT), "--name", "opd_p", "--spec",
                               json.dumps({**spec, **changes}), "--out", str(tmp_path / "p.jsonl"),
                               "--report", str(tmp_path / "r.json"), "--drop-repeats",
                               "--benchmark", f"hard={bench}", *extra], capture_output=True, text=True)

    run = prepare()
    assert run.returncode != 0 and not (tmp_path / "p.jsonl").exists()
    assert "prompt set 'opd_p': 1 of its 2 prompts hold problems of benchmark 'hard' (prompt 't0' holds hard " \
           "problem 'b0')" in run.stderr
    assert "1 problems written twice were dropped, e.g. " in run.stderr and "(id 't2') repeats" in run.stderr
    run = prepare("--exclude", str(bench))
    assert run.returncode == 0, run.stderr
    assert [json.loads(line)["id"] for line in (tmp_path / "p.jsonl").read_text().splitlines()] == ["t1"]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["benchmark_overlap"] == {"removed": {"hard": 1}, "allowed": {}}
    assert report["repeated_problems_dropped"] == 1
    assert prepare(allow_benchmark_overlap=True).returncode == 0
