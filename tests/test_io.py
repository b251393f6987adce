import pytest

from opd.data import read_problems
from opd.io import DataError, atomic_dir, atomic_open, read_jsonl, write_jsonl


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as f:
            f.write("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_failed_directory_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "model") as d:
            (d / "weights").write_text("partial")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(tmp_path / "model") as d:
        (d / "weights").write_text("done")
    assert (tmp_path / "model" / "weights").read_text() == "done"


def test_malformed_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "bench.jsonl"
    path.write_text('{"id": "a", "problem": "1+1", "answer": "2"}\n\n{"id": "b", "problem": 3\n')
    with pytest.raises(DataError, match=r"bench\.jsonl:3: invalid JSON"):
        read_jsonl(path)
    path.write_text('{"id": "a", "problem": "1+1", "answer": "2"}\n["x"]\n')
    with pytest.raises(DataError, match=r"bench\.jsonl:2: expected a JSON object"):
        read_jsonl(path)
    path.write_text('{"id": "a", "problem": "1+1"}\n')
    with pytest.raises(DataError, match=r"bench\.jsonl:1: missing key\(s\) answer"):
        read_problems(path)
    write_jsonl(path, [{"id": "a", "problem": "p", "answer": "1"}, {"id": "a", "problem": "q", "answer": "2"}])
    with pytest.raises(DataError, match=r"bench\.jsonl:2: duplicate id 'a'"):
        read_problems(path)
    path.write_bytes(b'{"id": "a", "problem": "1+1", "answer": "2"}\n{"id": "b", "problem": "caf\xe9", "answer": "1"}\n')
    with pytest.raises(DataError, match=r"bench\.jsonl:2: not UTF-8 \(byte 0xe9 at column 28\)"):
        read_problems(path)


def test_outputs_get_ordinary_permissions(tmp_path):
    import os
    import stat

    mask = os.umask(0o022)
    try:
        with atomic_open(tmp_path / "f.txt") as f:
            f.write("x")
        with atomic_dir(tmp_path / "d"):
            pass
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755


def test_empty_sets_and_missing_answers_are_data_errors(tmp_path):
    from opd.data import local_problems

    path = tmp_path / "set.jsonl"
    path.write_text("")
    with pytest.raises(DataError, match=r"set\.jsonl: no problems"):
        local_problems(path, "problem", "answer")
    path.write_text('{"problem": "1+1", "answer": "2"}\n{"problem": "2+2", "answer": null}\n')
    with pytest.raises(DataError, match=r"set\.jsonl:2: 'answer' holds no answer: None"):
        local_problems(path, "problem", "answer")
    assert local_problems(path, "problem", None)[1]["answer"] is None  # a prompt-only set
    for blank in ('""', '"  "', "NaN", "[]"):  # an empty \\boxed{} would be graded correct against a blank
        path.write_text(f'{{"id": "a", "problem": "1+1", "answer": "2"}}\n{{"id": "b", "problem": "2+2", "answer": {blank}}}\n')
        with pytest.raises(DataError, match=r"set\.jsonl:2: 'answer' holds no answer \(id b\)"):
            local_problems(path, "problem", "answer", "id")
    path.write_text('{"problem": "1+1", "answer": 0}\n')
    assert local_problems(path, "problem", "answer")[0]["answer"] == "0"  # zero is an answer


def test_a_problem_written_twice_is_refused_in_a_benchmark_and_dropped_from_a_training_set(tmp_path):
    from opd.data import local_problems

    path = tmp_path / "bench.jsonl"
    path.write_text('{"id": "a", "problem": "Find x.", "answer": "1"}\n{"id": "b", "problem": "1+1", "answer": "2"}\n'
                    '{"id": "c", "problem": " Find  x.", "answer": "1"}\n')
    with pytest.raises(DataError, match=r"bench\.jsonl:3: problem 'c' repeats the problem of .*bench\.jsonl:1 "
                                        r"\(id 'a'\)"):
        local_problems(path, "problem", "answer", "id")
    repeats = []
    assert [r["id"] for r in local_problems(path, "problem", "answer", "id", repeats=repeats)] == ["a", "b"]
    assert repeats == [(f"{path}:3", "c", f"{path}:1", "a")]


def test_a_template_that_leaves_no_problem_is_a_data_error(tmp_path):
    from opd.data import local_problems

    path = tmp_path / "dapo.jsonl"
    path.write_text('{"prompt": "Solve: 1+1. Answer:", "answer": "2"}\n{"prompt": "Solve:  Answer:", "answer": "3"}\n')
    with pytest.raises(DataError, match=r"dapo\.jsonl:2: strip_template 'Solve: \{problem\} Answer:'"
                                        r"\.\.\. leaves an empty problem"):
        local_problems(path, "prompt", "answer", template="Solve: {problem} Answer:")


def test_a_set_emptied_by_its_exclusions_stops_naming_the_sets_and_writes_nothing(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts/prepare_problems.py"
    train = tmp_path / "train.jsonl"
    train.write_text('{"problem": "1+1", "answer": "2"}\n{"problem": "2+2", "answer": "4"}\n')
    test = tmp_path / "test.jsonl"
    test.write_text('{"id": "t0", "problem": "2+2", "answer": "4"}\n{"id": "t1", "problem": "1+1", "answer": "2"}\n')
    spec = {"path": str(train), "problem_key": "problem", "answer_key": "answer", "id_key": None,
            "where": {}, "strip_template": None}
    out = tmp_path / "prompts.jsonl"
    run = subprocess.run([sys.executable, str(script), "--name", "opd_p", "--spec", json.dumps(spec),
                          "--out", str(out), "--exclude", str(test)], capture_output=True, text=True)
    assert run.returncode != 0
    assert f"opd_p: every one of its 2 problems is among the excluded sets ({test})" in run.stderr
    assert not out.exists()
