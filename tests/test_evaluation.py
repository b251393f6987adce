import itertools
import math

import pytest

from opd.evaluation import ks_up_to, pass_at_k, summarise


def brute_pass_at_k(outcomes: list[bool], k: int) -> float:
    """Fraction of all k-subsets of the samples that hold at least one correct one."""
    subsets = list(itertools.combinations(outcomes, k))
    return sum(any(s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 4, 7])
def test_pass_at_k_matches_brute_force(n):
    for c in range(n + 1):
        outcomes = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            assert math.isclose(pass_at_k(n, c, k), brute_pass_at_k(outcomes, k))


def test_ks():
    assert ks_up_to(16) == [1, 2, 4, 8, 16]
    assert ks_up_to(6) == [1, 2, 4, 6]
    assert ks_up_to(1) == [1]


def test_summarise():
    samples = []
    for pid, outcomes in (("p0", [True, True]), ("p1", [False, True]), ("p2", [False, False])):
        for j, ok in enumerate(outcomes):
            samples.append({"problem_id": pid, "sample": j, "correct": ok, "response_tokens": 10 + j,
                            "finish_reason": "length" if pid == "p2" else "stop", "grade_status": "ok"})
    m = summarise(samples, n=2, seconds=2.0)
    assert m["avg@2"] == pytest.approx(3 / 6)
    assert m["pass@1"] == pytest.approx(3 / 6)
    assert m["pass@2"] == pytest.approx(2 / 3)
    assert m["mean_response_tokens"] == pytest.approx(10.5)
    assert m["truncation_rate"] == pytest.approx(2 / 6)
    assert m["samples_per_second"] == pytest.approx(3.0)
