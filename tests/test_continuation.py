"""Teacher continuation on real tiny models: prefixes are cut where asked, and a model
continuing its own prefixes greedily reproduces its own answers."""

from opd.analysis.continuation import continuation_study, prefixes
from opd.chat import DEFAULT
from opd.data import prompt_token_ids, toy_problems
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
        ids = prompt_token_ids(tokenizer, problems, "{problem}", DEFAULT)
        rows = continuation_study(backend, backend, tokenizer, problems, ids, ids, [0, 4], greedy, grader)
    assert [r["prefix_tokens"] for r in rows] == [0, 4]
    assert rows[0]["prefixes"] == len(problems) and rows[1]["prefixes"] <= len(problems)
    for r in rows:
        if r["prefixes"]:
            assert r["teacher_advantage"] == 0.0 and r["student_accuracy"] == r["teacher_accuracy"]


def test_the_teacher_continues_the_students_prefix_after_its_own_prompt():
    """The student's prefix is cut from its answer to its own prompt; the teacher continues
    that prefix after its own rendering of the problem (a non-thinking teacher's empty think
    block, say), and the grader sees the prefix and the continuation alone."""
    from opd.rollout import Rollout

    class Scripted:
        def __init__(self, answer):
            self.answer, self.contexts = answer, []

        def generate(self, prompts, sampling):
            self.contexts.append([list(p) for p in prompts])
            return [Rollout(i, j, list(self.answer), "stop") for i in range(len(prompts)) for j in range(sampling.n)]

    class Tok:
        def decode(self, ids, skip_special_tokens=True):
            return "".join(map(str, ids))

    class Grades:
        def __init__(self):
            self.seen = []

        def grade(self, text, answer):
            self.seen.append(text)
            return type("Grade", (), {"correct": text == answer})()

    student, teacher, grader = Scripted([1, 2, 3]), Scripted([9]), Grades()
    problems = [{"answer": "129"}, {"answer": "123"}]
    sampling = SamplingParams(n=1, temperature=1.0, top_p=1.0, max_new_tokens=8, seed=0)
    rows = continuation_study(student, teacher, Tok(), problems, [[50], [60]], [[50, 7], [60, 7]], [2], sampling,
                              grader)
    assert teacher.contexts == [[[50, 7, 1, 2], [60, 7, 1, 2]]]  # its own prompts, then the student's prefix
    assert student.contexts[1] == [[50, 1, 2], [60, 1, 2]]
    assert grader.seen[-4:] == ["12123", "12123", "129", "129"]  # prefix + continuation, never the prompt
    assert rows == [{"prefix_tokens": 2, "prefixes": 2, "student_accuracy": 0.0, "teacher_accuracy": 0.5,
                     "teacher_advantage": 0.5}]
