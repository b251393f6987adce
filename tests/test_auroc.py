import random

import pytest

from opd.analysis.auroc import auroc, rollout_auroc


def brute_force(scores, labels):
    pairs = [(s, t) for s, y in zip(scores, labels) if y for t, z in zip(scores, labels) if not z]
    return sum(1.0 if s > t else 0.5 if s == t else 0.0 for s, t in pairs) / len(pairs)


@pytest.mark.parametrize("seed", range(20))
def test_auroc_matches_pairwise_count_with_ties(seed):
    rng = random.Random(seed)
    n = rng.randint(2, 40)
    scores = [rng.choice([0.0, 0.5, 1.0, rng.random()]) for _ in range(n)]
    labels = [rng.randint(0, 1) for _ in range(n)]
    labels[0], labels[1] = 1, 0
    assert auroc(scores, labels) == pytest.approx(brute_force(scores, labels))


def test_auroc_edges():
    assert auroc([1, 2, 3], [0, 0, 0]) is None
    assert auroc([1, 2], [0, 1]) == 1.0 and auroc([1, 2], [1, 0]) == 0.0 and auroc([1, 1], [0, 1]) == 0.5


def test_rollout_auroc_reads_the_step_log():
    log = [{"step": 0, "val": {}}, {"step": 1, "rollouts": [[-0.1, 1, 5], [-2.0, 0, 9]]},
           {"step": 2, "rollouts": [[-0.5, 1, 4], [-0.4, 0, 12]]}]
    out = rollout_auroc(log)
    assert out["rollouts"] == 4 and out["correct"] == 2
    assert out["auroc_mean_reward"] == pytest.approx(0.75) and out["auroc_shortness"] == 1.0
