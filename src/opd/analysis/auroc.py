"""Per-rollout mean reward as a predictor of correctness (the paper's AUROC analysis).

The reward of a token is the teacher's log-probability lead log q - log p on the student's
sampled token; a rollout's mean reward ranks rollouts, and the AUROC says how well that
ranking separates the verifier's correct answers from the wrong ones (0.5: chance).
"""

from __future__ import annotations


def auroc(scores: list[float], labels: list[int]) -> float | None:
    """P(score of a random positive > score of a random negative), ties counting half
    (the Mann-Whitney U statistic over average ranks). None without both classes."""
    pos = sum(1 for y in labels if y)
    neg = len(labels) - pos
    if pos == 0 or neg == 0:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1  # average 1-based rank of the tie group
        i = j + 1
    rank_sum = sum(r for r, y in zip(ranks, labels) if y)
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def rollout_auroc(log_rows: list[dict]) -> dict:
    """AUROC of the mean reward (and, as a baseline, of the length) over every logged rollout."""
    rollouts = [r for row in log_rows for r in row.get("rollouts", [])]
    rewards = [r[0] for r in rollouts]
    correct = [r[1] for r in rollouts]
    lengths = [-r[2] for r in rollouts]  # shorter answers are more often right: score by -length
    return {"rollouts": len(rollouts), "correct": sum(correct), "auroc_mean_reward": auroc(rewards, correct),
            "auroc_shortness": auroc(lengths, correct)}
