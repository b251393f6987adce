import random
import re
from collections import Counter

import pytest

from opd.toy.prose import CLOSING, LEXICON_SIZE, ZIPF_EXPONENT, lexicon, remark
from opd.toy.task import (
    Problem,
    columns,
    distinct_questions,
    has_digit_above,
    sample_problem,
    sample_problems,
    solution,
)


def test_columns_reconstruct_the_sum():
    rng = random.Random(0)
    for _ in range(500):
        p = sample_problem(rng, 1, 6)
        cols = columns(p.a, p.b)
        digits = [s % 10 for *_, s in cols]
        carry = cols[-1][3] // 10
        value = sum(d * 10**i for i, d in enumerate(digits)) + carry * 10 ** len(digits)
        assert value == p.a + p.b


@pytest.mark.parametrize("fmt", ["cot", "cot_alt"])
def test_every_step_of_a_solution_is_true_arithmetic(fmt):
    rng = random.Random(1)
    for _ in range(300):
        p = sample_problem(rng, 1, 5)
        text = solution(p, fmt)
        assert text.endswith(f"\\boxed{{{p.a + p.b}}}")
        steps = re.split(r"[\n;]", text)[:-1]
        assert len(steps) == p.digits
        for step in steps:
            left, right = step.split("=")
            terms, total = (left, right) if fmt == "cot" else (right, left)
            assert sum(int(t) for t in terms.split("+")) == int(total)


def test_prose_says_the_same_columns_in_varied_words():
    rng = random.Random(2)
    wordings = set()
    for _ in range(300):
        p = sample_problem(rng, 1, 4)
        text = solution(p, "prose", rng)
        *lines, last = text.split("\n")
        assert last.endswith(f" \\boxed{{{p.a + p.b}}}") and last.split(" \\")[0] in CLOSING
        assert len(lines) == p.digits
        for line, (x, y, carry, total) in zip(lines, columns(p.a, p.b)):
            assert line.split()[0] in lexicon() and line.endswith(".")
            said = [int(n) for n in re.findall(r"\d+", line)]
            assert said == [t for t in (x, y) if t is not None] + [carry] * (carry > 0) + [total] \
                + [total // 10] * (total >= 10)
            wordings.add(re.sub(r"\d+", "N", " ".join(line.split()[1:])))
    assert len(wordings) > 50  # phrasing varies, not only the remark
    assert solution(Problem(347, 85), "prose", random.Random(0)) == solution(Problem(347, 85), "prose", random.Random(0))


def test_the_remark_lexicon_is_zipfian():
    rng = random.Random(3)
    counts = Counter(remark(rng) for _ in range(50_000))
    words = lexicon()
    assert len(words) == len(set(words)) == LEXICON_SIZE
    # rank 1 against rank 10: 10 ** ZIPF_EXPONENT times as frequent
    assert counts[words[0]] / counts[words[9]] == pytest.approx(10 ** ZIPF_EXPONENT, rel=0.15)
    assert len(counts) > 1000  # a long tail of rare words


def test_formats_differ_from_the_first_token():
    p = Problem(347, 85)
    assert solution(p, "cot") == "7+5=12\n4+8+1=13\n3+1=4\n\\boxed{432}"
    assert solution(p, "cot_alt") == "12=5+7;13=1+8+4;4=1+3;\\boxed{432}"
    with pytest.raises(ValueError, match="unknown solution format"):
        solution(p, "nope")


def test_sampled_problems_are_distinct_seeded_and_in_range():
    a = sample_problems(7, 200, 2, 4)
    assert a == sample_problems(7, 200, 2, 4)
    assert a != sample_problems(8, 200, 2, 4)
    assert len({p.question for p in a}) == 200
    assert all(2 <= p.digits <= 4 for p in a)
    assert {p.digits for p in a} == {2, 3, 4}


def test_exclusion_and_impossible_requests():
    first = sample_problems(0, 30, 1, 2)
    rest = sample_problems(0, 30, 1, 2, exclude={p.question for p in first})
    assert not {p.question for p in first} & {p.question for p in rest}
    assert len({p.question for p in sample_problems(0, 100, 1, 1)}) == 100  # every 1-digit question
    with pytest.raises(ValueError, match="only 100"):
        sample_problems(0, 101, 1, 1)
    with pytest.raises(ValueError):
        sample_problem(random.Random(0), 3, 2)


def test_digit_alphabet_and_required_digits():
    low = sample_problems(3, 300, 1, 3, max_digit=6)
    assert all(set(p.question) <= set("0123456+") for p in low)
    high = sample_problems(4, 300, 1, 3, max_digit=9, require_digit_above=6)
    assert all(any(c in "789" for c in p.question) for p in high)
    with pytest.raises(ValueError, match="no digit above"):
        sample_problems(0, 5, 1, 2, max_digit=6, require_digit_above=6)
    with pytest.raises(ValueError, match="max_digit"):
        sample_problem(random.Random(0), 1, 2, max_digit=0)


@pytest.mark.parametrize("args", [(1, 1, 9, None), (1, 2, 3, None), (2, 3, 2, None), (1, 2, 9, 6), (2, 2, 4, 1),
                                  (1, 3, 2, 0)])
def test_distinct_questions_counts_what_the_sampler_can_draw(args):
    """Against enumeration of every operand pair the sampler's rules allow."""
    lo, hi, top, above = args
    numbers = [n for n in range(10 ** hi) if all(int(c) <= top for c in str(n))]
    pairs = {(a, b) for a in numbers for b in numbers
             if lo <= max(len(str(a)), len(str(b))) <= hi
             and (above is None or has_digit_above(Problem(a, b), above))}
    assert distinct_questions(*args) == len(pairs)


def test_a_toy_model_learns_every_template_of_its_recipe_and_one_draws_nothing(tmp_path):
    from opd.toy.pretrain import ToyRecipe, make_batch
    from opd.toy.tokenizer import build_tokenizer

    tok = build_tokenizer()
    def prompts(recipe):
        ids, _, labels = make_batch(tok, recipe, random.Random(0))
        return [tok.decode(row[lab == -100].tolist(), skip_special_tokens=True) for row, lab in zip(ids, labels)]

    two = prompts(ToyRecipe(batch_size=64, prompt_template=["{problem}", "Solve: {problem}"]))
    solved = [p for p in two if "Solve: " in p]
    assert 16 < len(solved) < 48  # both templates, about half each
    # a one-template recipe (a string or a list of one) draws the same problems as before
    assert prompts(ToyRecipe(batch_size=8)) == prompts(ToyRecipe(batch_size=8, prompt_template=["{problem}"]))
    assert not any("Solve" in p for p in prompts(ToyRecipe(batch_size=8)))
