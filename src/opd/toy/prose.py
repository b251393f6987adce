"""Worked solutions in words, with the long-tailed phrasing of real model output.

The character world's solutions are terse (``3+5=8``): after a few steps the student's
next token is nearly certain, so its top-16 holds all of the mass of a 100-token
vocabulary. Here each column is said in a sentence whose wording varies (synonyms for
"plus", "is", "carry") and opens with a remark drawn from a made-up lexicon of a few
thousand words with Zipfian frequencies, standing in for the long tail of an LLM's
vocabulary. The arithmetic is that of :func:`.task.columns`; the answer ends in
``\\boxed{}`` as in the other formats.
"""

from __future__ import annotations

import bisect
import itertools
import random
from functools import lru_cache

from .task import Problem, columns

LEXICON_SIZE = 3000
ZIPF_EXPONENT = 1.1
_LEXICON_SEED = 0
_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "st", "tr", "pl")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ou")

PLUS = ("plus", "and", "with")
IS = ("is", "makes", "gives", "equals")
CARRY = ("carry {c}", "{c} carries", "{c} over")
CLOSING = ("so", "answer", "in all", "the sum is")


@lru_cache(maxsize=1)
def lexicon() -> tuple[str, ...]:
    """``LEXICON_SIZE`` distinct pronounceable words of 1-3 syllables, in a fixed order."""
    syllables = [o + v for o, v in itertools.product(_ONSETS, _VOWELS)]
    rng = random.Random(_LEXICON_SEED)
    words, seen = [], set()
    while len(words) < LEXICON_SIZE:
        w = "".join(rng.choice(syllables) for _ in range(rng.choice((1, 2, 2, 3))))
        if w not in seen:
            seen.add(w)
            words.append(w)
    return tuple(words)


@lru_cache(maxsize=1)
def _cumulative_zipf() -> list[float]:
    weights = [1 / (rank ** ZIPF_EXPONENT) for rank in range(1, LEXICON_SIZE + 1)]
    return list(itertools.accumulate(weights))


def remark(rng: random.Random) -> str:
    """A lexicon word drawn with probability proportional to rank ** -ZIPF_EXPONENT."""
    cum = _cumulative_zipf()
    return lexicon()[bisect.bisect_left(cum, rng.random() * cum[-1])]


def prose_solution(problem: Problem, rng: random.Random) -> str:
    """One wording of the column-by-column solution of ``problem``."""
    lines = []
    for x, y, carry, s in columns(problem.a, problem.b):
        terms = [str(t) for t in (x, y) if t is not None] + ([str(carry)] if carry else [])
        plus = f" {rng.choice(PLUS)} "
        line = f"{remark(rng)} {plus.join(terms)} {rng.choice(IS)} {s}"
        if s >= 10:
            line += ", " + rng.choice(CARRY).format(c=s // 10)
        lines.append(line + ".")
    lines.append(f"{rng.choice(CLOSING)} \\boxed{{{problem.answer}}}")
    return "\n".join(lines)
