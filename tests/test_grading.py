import subprocess
import sys
import time
from pathlib import Path

import pytest

from opd import grading
from opd.grading import Grade, Grader, extract_boxed


@pytest.fixture(scope="module")
def grader():
    with Grader(timeout_s=2, max_answer_chars=1000) as g:
        yield g


def test_extract_boxed_takes_the_last_balanced_box():
    assert extract_boxed("a \\boxed{1} then \\boxed{\\frac{1}{2}}.") == "\\frac{1}{2}"
    assert extract_boxed("no answer") is None
    assert extract_boxed("\\boxed{12") is None
    assert extract_boxed("\\boxed{7} and an open \\boxed{12") == "7"
    assert extract_boxed("\\boxed{ 42 }") == "42"


@pytest.mark.parametrize("response, gold", [
    ("so \\boxed{432}", "432"),
    ("\\boxed{\\frac{1}{2}}", "0.5"),
    ("\\boxed{\\frac12}", "\\frac{1}{2}"),
    ("\\boxed{x^2+2x}", "2x+x^2"),
    ("\\boxed{\\{1,2\\}}", "\\{2,1\\}"),
    ("\\boxed{ 1 000 }", "1000"),
    ("\\boxed{0432}", "432"),
    ("\\boxed{+7}", "7"),
])
def test_equivalent_answers_match(grader, response, gold):
    g = grader.grade(response, gold)
    assert g.correct and g.status == "ok"


@pytest.mark.parametrize("response, gold", [
    ("\\boxed{433}", "432"),
    ("\\boxed{43}", "432"),
    ("\\boxed{-432}", "432"),
    ("\\boxed{0.51}", "\\frac{1}{2}"),
    ("\\boxed{x^2}", "x^3"),
    ("\\boxed{}", "1"),
    ("432", "432"),  # an answer outside \boxed{} does not count
])
def test_wrong_answers_do_not_match(grader, response, gold):
    assert not grader.grade(response, gold).correct


def test_power_tower_is_cut_at_the_time_limit_and_grading_goes_on(grader):
    start = time.perf_counter()
    g = grader.grade("\\boxed{9^{9^{9^{9}}}}", "3")
    assert not g.correct and g.status in {"timeout", "ok", "error"}
    assert time.perf_counter() - start < 2 + 3
    assert grader.grade("\\boxed{\\frac{2}{4}}", "1/2").correct  # a fresh worker took over


def test_a_worker_started_after_a_timeout_does_not_charge_its_start_to_the_next_answer():
    """Starting a worker (imports, math-verify's first call) takes longer than this limit;
    charged to the answer that waits for it, every answer after a timeout would time out
    too and restart the worker again."""
    with Grader(timeout_s=0.15) as g:
        assert g.grade("\\boxed{9^{9^{9^{9}}}}", "3").status == "timeout"
        for _ in range(3):
            assert g.grade("\\boxed{\\frac{2}{4}}", "1/2") == Grade(True, "ok", "\\frac{2}{4}")


def test_megabyte_answer_is_graded_within_the_time_limit():
    huge = "\\boxed{" + "9" * 1_000_000 + "}"
    with Grader(timeout_s=2) as g:  # rejected by length before any parsing
        start = time.perf_counter()
        assert g.grade(huge, "9").status == "too_long"
        assert time.perf_counter() - start < 2
    with Grader(timeout_s=2, max_answer_chars=10**7) as g:  # parsed: the hard limit applies
        start = time.perf_counter()
        assert not g.grade(huge, "9").correct
        assert time.perf_counter() - start < 2 + 3
        assert g.grade("\\boxed{9}", "9").correct


def test_missing_answer(grader):
    g = grader.grade("I think it is 4", "4")
    assert (g.correct, g.status) == (False, "no_answer")


def scan_from_each_box(text):
    """The reference: from the last ``\\boxed{`` backwards, scan forward until its braces balance."""
    start = text.rfind("\\boxed{")
    while start != -1:
        depth = 1
        for i in range(start + len("\\boxed{"), len(text)):
            depth += (text[i] == "{") - (text[i] == "}")
            if depth == 0:
                return text[start + len("\\boxed{"): i].strip()
        start = text.rfind("\\boxed{", 0, start)
    return None


def test_extract_boxed_equals_the_scan_from_each_box_on_random_text():
    import random
    rng = random.Random(0)
    pieces = ["\\boxed{", "{", "}", "1", " ", "\\frac", "x"]
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 14)))
        assert extract_boxed(text) == scan_from_each_box(text), text


def test_degenerate_open_boxes_are_graded_inside_the_time_limit():
    """16,000 unclosed ``\\boxed{`` (112 KB, a model stuck in a loop): one linear pass."""
    with Grader(timeout_s=1) as g:
        assert g.grade("\\boxed{" * 16_000, "1").status == "no_answer"
        assert g.grade("\\boxed{" * 16_000 + "7}", "7").correct


def test_timeout_out_of_range_is_refused_and_close_is_safe_when_the_worker_never_started(monkeypatch):
    with pytest.raises(ValueError, match="timeout_s"):
        Grader(timeout_s=1e9)
    g = Grader(timeout_s=1)

    def fail(*args, **kwargs):
        raise OSError("cannot start a process")
    monkeypatch.setattr(grading.subprocess, "Popen", fail)
    with pytest.raises(OSError):
        g.grade("\\boxed{\\frac{1}{2}}", "0.5")
    g.close()  # neither AttributeError nor a hang
    g.close()


def test_a_worker_killed_from_outside_is_replaced(grader):
    assert grader.grade("\\boxed{\\frac{2}{4}}", "1/2").correct  # the worker is up
    grader._proc.kill()
    grader._proc.wait()
    assert grader.grade("\\boxed{\\frac{3}{6}}", "1/2") == Grade(True, "ok", "\\frac{3}{6}")


def test_the_worker_does_not_rerun_the_callers_script(tmp_path):
    """A ``multiprocessing`` spawn re-imports the main module in the child: a training
    script's torch and transformers, seconds of CPU at every (re)start of the worker."""
    marker = tmp_path / "imports"
    script = tmp_path / "caller.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(grading.__file__).parents[1])!r})\n"
        f"open({str(marker)!r}, 'a').write('imported;')\n"
        "from opd.grading import Grader\n"
        "if __name__ == '__main__':\n"
        "    with Grader(timeout_s=5) as g:\n"
        "        assert g.grade('\\\\boxed{\\\\frac{1}{2}}', '0.5').correct\n")
    subprocess.run([sys.executable, str(script)], check=True, timeout=120)
    assert marker.read_text() == "imported;"
