"""Teacher continuation from student prefixes: the paper's long-horizon cost.

The student answers each problem once; its response is cut after L tokens, and from that
prefix both the teacher and the student sample continuations. The teacher's advantage at
L (its accuracy minus the student's, from the same prefixes) shows how much a teacher can
still help once the student has committed to a trajectory: in the paper it falls from
+0.37 at 1K tokens to +0.02 at 16K. Each model continues after its own rendering of the
prompt (its chat mode, ``opd.chat``): a non-thinking teacher reads its empty think block.
"""

from __future__ import annotations

from ..rollout import SamplingParams


def prefixes(prompt_ids: list[list[int]], responses: list[list[int]], length: int) -> list[tuple[int, int, list[int]]]:
    """(problem index, prompt length, prompt + the first ``length`` response tokens) for every
    response still going after ``length`` tokens (its EOS comes later)."""
    return [(i, len(prompt), prompt + response[:length])
            for i, (prompt, response) in enumerate(zip(prompt_ids, responses)) if len(response) > length]


def accuracy(backend, tok, contexts, problems: list[dict], sampling: SamplingParams, grader) -> float | None:
    """The verifier's accuracy of prefix + continuation, over every context and sample."""
    if not contexts:
        return None
    rollouts = backend.generate([ids for _, _, ids in contexts], sampling)
    correct = 0
    for r in rollouts:
        index, prompt_len, ids = contexts[r.prompt_index]
        response = tok.decode(ids[prompt_len:] + r.token_ids, skip_special_tokens=True)
        correct += grader.grade(response, problems[index]["answer"]).correct
    return correct / len(rollouts)


def continuation_study(student_backend, teacher_backend, tok, problems: list[dict], prompt_ids: list[list[int]],
                       teacher_ids: list[list[int]], lengths: list[int], sampling: SamplingParams,
                       grader) -> list[dict]:
    """Per prefix length: how many prefixes, the student's and the teacher's accuracy from
    them, and the teacher's advantage. The student answers after ``prompt_ids`` (its rendering
    of each problem); the teacher continues the same prefix after ``teacher_ids`` (its own)."""
    first = student_backend.generate(prompt_ids, SamplingParams(1, sampling.temperature, sampling.top_p,
                                                                sampling.max_new_tokens, sampling.seed))
    responses = [r.token_ids for r in first]
    rows = []
    for length in lengths:
        contexts = prefixes(prompt_ids, responses, length)
        rest = SamplingParams(sampling.n, sampling.temperature, sampling.top_p,
                              max(1, sampling.max_new_tokens - length), sampling.seed + 1)
        s_acc = accuracy(student_backend, tok, contexts, problems, rest, grader)
        t_acc = accuracy(teacher_backend, tok, prefixes(teacher_ids, responses, length), problems, rest, grader)
        rows.append({"prefix_tokens": length, "prefixes": len(contexts), "student_accuracy": s_acc,
                     "teacher_accuracy": t_acc,
                     "teacher_advantage": None if s_acc is None else t_acc - s_acc})
    return rows
