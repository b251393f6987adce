"""Teacher continuation on real tiny models: prefixes are cut where asked, and a model
continuing its own prefixes greedily reproduces its own answers."""

from opd.analysis.continuation import continuation_study, prefixes
from opd.data import toy_problems
from opd.grading import Grader
from opd.models import load_model
from opd.rollout import SamplingParams
from opd.rollout.hf import HFBackend


def test_prefixes_keep_only_responses_still_going():
    out = prefixes([[1, 2], [3]], [[10, 11, 12], [20]], length=1)
    assert out == [(0, 2, [1, 2, 10])]
    assert prefixes([[1]], [[5, 6]], length=0) == [(0, 1, [1])]


def test_same_model_as_teacher_has_no_advantage(tiny_model_dir, tokenizer):
    model = load_model(tiny_model_dir, "float32", "cpu")
    backend = HFBackend(model, tokenizer, batch_size=16, progress=False)
    problems = toy_problems(6, 7, 1, 2, "c")
    greedy = SamplingParams(n=1, temperature=0.0, top_p=1.0, max_new_tokens=12, seed=0)
    with Grader() as grader:
        rows = continuation_study(backend, backend, tokenizer, problems, "{problem}", True, [0, 4], greedy, grader)
    assert [r["prefix_tokens"] for r in rows] == [0, 4]
    assert rows[0]["prefixes"] == len(problems) and rows[1]["prefixes"] <= len(problems)
    for r in rows:
        if r["prefixes"]:
            assert r["teacher_advantage"] == 0.0 and r["student_accuracy"] == r["teacher_accuracy"]
