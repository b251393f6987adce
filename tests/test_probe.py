"""The teacher compatibility probe on real tiny models: a teacher identical to the student
agrees everywhere and ranks first; another model agrees less."""

import pytest

from opd.analysis.probe import rank, student_rollouts, teacher_scores
from opd.data import toy_problems
from opd.models import load_model
from opd.rollout import SamplingParams


def test_identical_teacher_agrees_everywhere_and_ranks_first(tiny_model_dir, teacher_model_dir, tokenizer):
    student = load_model(tiny_model_dir, "float32", "cpu")
    prompts = [tokenizer(p["problem"], add_special_tokens=False)["input_ids"] for p in toy_problems(6, 3, 1, 2, "q")]
    rollouts = student_rollouts(student, tokenizer, prompts, SamplingParams(2, 1.0, 1.0, 12, 0), batch_size=8)
    same = teacher_scores(student, load_model(tiny_model_dir, "float32", "cpu"), tokenizer, prompts, rollouts, k=4)
    other = teacher_scores(student, load_model(teacher_model_dir, "float32", "cpu"), tokenizer, prompts, rollouts, k=4)
    assert same["positions"] == other["positions"] == sum(len(r.token_ids) for r in rollouts) > 0
    assert same["overlap_ratio"] == pytest.approx(1.0)
    assert same["overlap_mass_student"] == pytest.approx(same["overlap_mass_teacher"])
    for key in ("entropy_gap", "reverse_kl", "sampled_reward", "adv_intersection"):
        assert same[key] == pytest.approx(0.0, abs=1e-5), key
    assert other["overlap_ratio"] < 1.0 and other["reverse_kl"] > 0
    scores = {"other": other, "same": same, "foreign": {"error": "different tokenizer"}}
    assert rank(scores) == ["same", "other", "foreign"]
