"""Multi-digit addition with step-by-step solutions ending in ``\\boxed{answer}``.

Two knobs set a problem distribution: how many digits the operands have, and which digits
they use (``max_digit``). A model that never saw the digits 7-9 in an operand lacks those
addition facts: that is the toy world's "capability the student has not seen".

Two solution formats stand in for the paper's "thinking patterns":

* ``cot``: column addition from the units up, one line per column, ``a+b+carry=sum``.
* ``cot_alt``: the same columns written result-first (``sum=carry+b+a``) on one line.
* ``prose``: the ``cot`` columns said in varied words (:mod:`.prose`), for the subword world.

Both are correct and equally hard; a model trained on one has never seen the other, so a
teacher of the other format disagrees with the student at the student's own states.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

FORMATS = ("cot", "cot_alt", "prose")


@dataclass(frozen=True)
class Problem:
    a: int
    b: int

    @property
    def question(self) -> str:
        return f"{self.a}+{self.b}"

    @property
    def answer(self) -> str:
        return str(self.a + self.b)

    @property
    def digits(self) -> int:
        """Difficulty: the number of digits of the longer operand."""
        return max(len(str(self.a)), len(str(self.b)))


def columns(a: int, b: int) -> list[tuple[int | None, int | None, int, int]]:
    """Per column from the units up: (digit of a, digit of b, carry in, column sum)."""
    da, db = str(a)[::-1], str(b)[::-1]
    out, carry = [], 0
    for i in range(max(len(da), len(db))):
        x = int(da[i]) if i < len(da) else None
        y = int(db[i]) if i < len(db) else None
        s = (x or 0) + (y or 0) + carry
        out.append((x, y, carry, s))
        carry = s // 10
    return out


def solution(problem: Problem, fmt: str = "cot", rng: random.Random | None = None) -> str:
    """The worked solution of ``problem`` in format ``fmt``; ``prose`` draws its wording
    from ``rng``."""
    if fmt == "prose":
        from .prose import prose_solution  # prose builds on columns() below
        return prose_solution(problem, rng or random.Random(0))
    steps = []
    for x, y, carry, s in columns(problem.a, problem.b):
        terms = [str(t) for t in (x, y) if t is not None] + ([str(carry)] if carry else [])
        if fmt == "cot":
            steps.append("+".join(terms) + f"={s}")
        elif fmt == "cot_alt":
            steps.append(f"{s}=" + "+".join(reversed(terms)))
        else:
            raise ValueError(f"unknown solution format {fmt!r}; expected one of {FORMATS}")
    sep = "\n" if fmt == "cot" else ";"
    return sep.join(steps) + sep + f"\\boxed{{{problem.answer}}}"


def _number(rng: random.Random, n: int, max_digit: int) -> int:
    first = rng.randint(1 if n > 1 else 0, max_digit)
    return int(str(first) + "".join(str(rng.randint(0, max_digit)) for _ in range(n - 1)))


def sample_problem(rng: random.Random, min_digits: int, max_digits: int, max_digit: int = 9) -> Problem:
    """A problem whose longer operand has a uniformly drawn number of digits, each digit
    of either operand in 0..max_digit."""
    if not 1 <= min_digits <= max_digits:
        raise ValueError(f"need 1 <= min_digits <= max_digits, got {min_digits}, {max_digits}")
    if not 1 <= max_digit <= 9:
        raise ValueError(f"max_digit must be in 1..9, got {max_digit}")
    n = rng.randint(min_digits, max_digits)
    a, b = _number(rng, n, max_digit), _number(rng, rng.randint(1, n), max_digit)
    return Problem(a, b) if rng.random() < 0.5 else Problem(b, a)


def has_digit_above(p: Problem, digit: int) -> bool:
    return any(int(c) > digit for c in f"{p.a}{p.b}")


def _numbers(digits: int, max_digit: int) -> int:
    """How many numbers have exactly this many digits, each in 0..max_digit (0 has one)."""
    return max_digit + 1 if digits == 1 else max_digit * (max_digit + 1) ** (digits - 1)


def distinct_questions(min_digits: int, max_digits: int, max_digit: int = 9,
                       require_digit_above: int | None = None) -> int:
    """The number of distinct questions :func:`sample_problem` can draw: ordered operand
    pairs whose longer operand has min..max digits (with a digit above
    ``require_digit_above``, if given)."""
    def pairs(top: int) -> int:
        return sum(_numbers(n, top) ** 2 + 2 * _numbers(n, top) * sum(_numbers(m, top) for m in range(1, n))
                   for n in range(min_digits, max_digits + 1))

    if require_digit_above is None:
        return pairs(max_digit)
    if require_digit_above >= max_digit:
        return 0
    return pairs(max_digit) - pairs(require_digit_above)


def sample_problems(seed: int, count: int, min_digits: int, max_digits: int, max_digit: int = 9,
                    require_digit_above: int | None = None, exclude: set[str] = frozenset()) -> list[Problem]:
    """``count`` distinct problems, none of whose questions is in ``exclude``; with
    ``require_digit_above``, each has an operand digit above that value."""
    if require_digit_above is not None and require_digit_above >= max_digit:
        raise ValueError(f"no digit above {require_digit_above} when max_digit is {max_digit}")
    space = distinct_questions(min_digits, max_digits, max_digit, require_digit_above)
    if count > space:
        raise ValueError(f"{count} distinct problems of {min_digits}-{max_digits} digits asked for, but there are "
                         f"only {space}")
    rng = random.Random(seed)
    seen, out = set(exclude), []
    for _ in range(1000 * count):
        p = sample_problem(rng, min_digits, max_digits, max_digit)
        if p.question in seen or (require_digit_above is not None and not has_digit_above(p, require_digit_above)):
            continue
        seen.add(p.question)
        out.append(p)
        if len(out) == count:
            return out
    raise ValueError(f"could not draw {count} distinct problems outside the {len(exclude)} excluded ones "
                     f"({space} exist)")
