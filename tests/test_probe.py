"""The teacher compatibility probe on real tiny models: a teacher identical to the student
agrees everywhere and ranks first; another model agrees less."""

import pytest
import torch

from opd.analysis.probe import student_rollouts, student_topk_mass, teacher_scores, topk_mass
from opd.analysis.verdicts import check_probe, observed_outcome, rank, verdict
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


def test_a_teacher_reads_the_students_rollouts_after_its_own_rendering(tiny_model_dir, tokenizer):
    """The student samples after the bare prompts, the teacher (the same weights) reads
    each rollout after its own chat rendering: its log-probability lead is that of a forward
    pass over its own prompt plus the response, no longer zero."""
    from opd.chat import ChatFormat
    from opd.data import prompt_token_ids

    model = load_model(tiny_model_dir, "float32", "cpu")
    problems = toy_problems(6, 3, 1, 2, "q")
    bare = prompt_token_ids(tokenizer, problems, "{problem}", ChatFormat(template=False))
    chat = prompt_token_ids(tokenizer, problems, "{problem}", ChatFormat())
    rollouts = student_rollouts(model, tokenizer, bare, SamplingParams(2, 1.0, 1.0, 8, 0), batch_size=8)
    scores = teacher_scores(model, model, tokenizer, bare, rollouts, k=4, micro_batch_size=3, teacher_prompt_ids=chat)
    leads = []
    for r in rollouts:
        with torch.no_grad():
            log_p, log_q = (model(input_ids=torch.tensor([p[r.prompt_index] + r.token_ids])).logits[0].log_softmax(-1)
                            [len(p[r.prompt_index]) - 1:-1].gather(-1, torch.tensor(r.token_ids)[:, None])[:, 0]
                            for p in (bare, chat))
        leads += (log_q - log_p).tolist()
    assert scores["positions"] == len(leads) > 0
    assert scores["sampled_reward"] == pytest.approx(sum(leads) / len(leads), abs=1e-5)
    assert abs(scores["sampled_reward"]) > 1e-3


def test_topk_mass_matches_sorting_each_distribution():
    logits = torch.randn(20, 50, generator=torch.Generator().manual_seed(0)) * 3
    got = topk_mass(logits, (1, 4, 16, 64))
    for row, z in enumerate(logits):
        probs = sorted(torch.softmax(z.double(), -1).tolist(), reverse=True)
        for k in (1, 4, 16):
            assert got[k][row].item() == pytest.approx(sum(probs[:k]), abs=1e-6)
        assert got[64][row].item() == pytest.approx(1.0, abs=1e-6)  # k above the vocabulary: all of it


def test_student_topk_mass_averages_over_its_own_response_positions(tiny_model_dir, tokenizer):
    student = load_model(tiny_model_dir, "float32", "cpu")
    prompts = [tokenizer(p["problem"], add_special_tokens=False)["input_ids"] for p in toy_problems(4, 3, 1, 2, "q")]
    rollouts = student_rollouts(student, tokenizer, prompts, SamplingParams(2, 1.0, 1.0, 12, 0), batch_size=8)
    mass = student_topk_mass(student, tokenizer, prompts, rollouts, (1, 4, 16), micro_batch_size=3, chunk_size=5)
    assert 0 < mass[1] <= mass[4] <= mass[16] <= 1
    # by hand: one rollout at a time, every response position's top-4 mass
    values = []
    for r in rollouts:
        ids = torch.tensor([prompts[r.prompt_index] + r.token_ids])
        with torch.no_grad():
            logits = student(input_ids=ids).logits[0, len(prompts[r.prompt_index]) - 1:-1]
        values += topk_mass(logits, (4,))[4].tolist()
    assert mass[4] == pytest.approx(sum(values) / len(values), abs=1e-5)


JUDGE = {"min_overlap_ratio": 0.6, "max_entropy_gap": 0.5, "min_lead": 0.05, "benchmarks": ["new_digits"]}


def test_verdict_judges_each_condition_and_predicts_the_outcome():
    compatible = {"overlap_ratio": 0.9, "entropy_gap": 0.05}
    foreign = {"overlap_ratio": 0.4, "entropy_gap": 0.05}
    wide = {"overlap_ratio": 0.9, "entropy_gap": -0.8}  # agrees on the top token, far less sure
    limits = (0.6, 0.5, 0.05)
    assert verdict(compatible, {"new": 0.5}, *limits) == {"compatible": True, "to_teach": True,
                                                          "predicted": "transfers"}
    assert verdict(compatible, {"new": 0.04}, *limits)["predicted"] == "nothing to learn"
    assert verdict(foreign, {"new": 0.5}, *limits)["predicted"] == "fails: cold start first"
    assert verdict(wide, {"new": 0.5}, *limits)["compatible"] is False
    assert verdict({"error": "different tokenizer"}, {}, *limits)["predicted"] == "unusable: another tokenizer"
    scores = {"same": {"overlap_ratio": 0.95, "entropy_gap": 0.0}, "new": compatible}
    verdicts = {"same": {"predicted": "nothing to learn"}, "new": {"predicted": "transfers"}}
    assert rank(scores, verdicts) == ["new", "same"] and rank(scores) == ["same", "new"]


def experiment(student, teacher, **benchmarks):
    return {"student": student, "teacher": teacher, "benchmarks": {
        b: {"acc_before": before, "acc_after": after, "acc_teacher": t} for b, (before, after, t) in benchmarks.items()}}


def test_observed_outcomes_are_transfer_collapse_or_nothing():
    assert observed_outcome(experiment("s", "t", new=(0.0, 0.6, 0.97))["benchmarks"], ["new"], 0.05) == "transfers"
    # a gain where the teacher does not lead, or off target, is not a transfer
    assert observed_outcome(experiment("s", "t", new=(0.0, 0.0, 0.0), old=(0.5, 0.6, 0.6))["benchmarks"],
                            ["new"], 0.05) == "nothing learnt"
    assert observed_outcome(experiment("s", "t", new=(0.0, 0.0, 0.9), old=(0.96, 0.0, 0.96))["benchmarks"],
                            ["new"], 0.05) == "collapse"


def test_the_probe_predicts_the_toy_worlds_outcomes_on_every_teacher():
    """The toy world's probe scores and OPD results as measured (config/config.yaml, three
    seeds' means; README): the compatible teacher with a lead transfers, the same-pipeline
    teacher (compatible, no lead on the target) teaches nothing, the other-format teacher
    collapses the student."""
    probe = {"student": "student", "verdict_settings": JUDGE, "verdicts": {}}
    scores = {"teacher_new_skill": ({"overlap_ratio": 0.939, "entropy_gap": 0.052}, 0.956),
              "teacher_same_pipeline": ({"overlap_ratio": 0.933, "entropy_gap": 0.050}, 0.0),
              "teacher_other_format": ({"overlap_ratio": 0.409, "entropy_gap": 0.177}, 0.885)}
    for teacher, (s, lead) in scores.items():
        probe["verdicts"][teacher] = verdict(s, {"new_digits": lead}, 0.6, 0.5, 0.05)
    experiments = {
        "opd_new_skill": experiment("student", "teacher_new_skill", new_digits=(0.0, 0.438, 0.956),
                                    shared=(0.956, 0.941, 0.997)),
        "opd_same_pipeline": experiment("student", "teacher_same_pipeline", new_digits=(0.0, 0.0, 0.0),
                                        shared=(0.956, 0.949, 1.0)),
        "opd_other_format": experiment("student", "teacher_other_format", new_digits=(0.0, 0.0, 0.885),
                                       shared=(0.956, 0.0, 0.961)),
        "reverse_to_base": experiment("opd_new_skill", "student", new_digits=(0.427, 0.0, 0.0)),
    }
    check = check_probe(probe, experiments)
    assert {t: (c["predicted"], *(o["outcome"] for o in c["experiments"].values())) for t, c in check.items()} == {
        "teacher_new_skill": ("transfers", "transfers"),
        "teacher_same_pipeline": ("nothing to learn", "nothing learnt"),
        "teacher_other_format": ("fails: cold start first", "collapse"),
    }
    assert all(o["holds"] for c in check.values() for o in c["experiments"].values())
    # the mean over seeds decides: a first seed that transferred by luck does not
    lucky = experiment("student", "teacher_same_pipeline", new_digits=(0.0, 0.2, 0.3))
    lucky["seeds"] = {"benchmarks": {"new_digits": {"acc_after": {"mean": 0.02}}}}
    probe["verdicts"]["teacher_same_pipeline"] = {"compatible": True, "to_teach": True, "predicted": "transfers"}
    seen = check_probe(probe, {"x": lucky})["teacher_same_pipeline"]["experiments"]["x"]
    assert seen == {"outcome": "nothing learnt", "holds": False}


def test_a_probe_is_checked_against_the_runs_on_its_own_prompts_and_template():
    probe = {"student": "s", "verdict_settings": JUDGE, "settings": {"prompts": "p", "prompt_template": "{problem}"},
             "verdicts": {"t": {"compatible": True, "to_teach": True, "predicted": "transfers"}}}
    runs = {}
    for name, prompts, template in (("same", "p", "{problem}"), ("other_prompts", "p4", "{problem}"),
                                    ("other_template", "p", "Solve: {problem}")):
        runs[name] = {**experiment("s", "t", new=(0.0, 0.4, 0.9)), "prompts": prompts, "prompt_template": template}
    assert list(check_probe(probe, runs)["t"]["experiments"]) == ["same"]
