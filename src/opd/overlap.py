"""Training prompts that hold a benchmark's problems (training on the test set).

``exclude`` matches problems exactly; a prompt set can still hold a benchmark problem
written differently (spacing, case) or wrapped in a template (``Solve: <problem>
Answer:``). Here texts are compared by normalised content: lower case, words and
punctuation marks separated by single spaces, known templates taken off a benchmark's
problems; a benchmark problem found inside a prompt, at word boundaries, counts
(``12+34`` is in ``Solve: 12 + 34. Answer:`` but not in ``112+345``).

Containment of a few hundred benchmark problems in ~200K prompts: each benchmark problem is
indexed by the one of its words that the fewest prompts hold (counted in a sample of them),
so only the prompts holding that word are searched for the whole problem (a substring test).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict

from .data import PLACEHOLDER
from .io import DataError

MARK = re.compile(r"([^\w\s])")  # a character neither of a word nor a space
SAMPLE = 10_000  # prompts whose words are counted to choose each problem's rarest word


def words(text: str) -> list[str]:
    """Lower-case words and single punctuation marks (``12+34`` is three)."""
    return MARK.sub(r" \1 ", text.lower()).split()


def normalise(text: str) -> str:
    """Lower case; words and single punctuation marks joined by one space."""
    return " ".join(words(text))


def template_ends(template: str) -> tuple[str, str]:
    """A template's normalised text before and after its ``{problem}``."""
    head, _, tail = template.partition(PLACEHOLDER)
    return normalise(head), normalise(tail)


def strip_templates(text: str, ends: list[tuple[str, str]]) -> str:
    """A normalised text without any of the templates (normalised ends) it is written in."""
    for head, tail in ends:
        starts = not head or text.startswith(head + " ")
        stops = not tail or text.endswith(" " + tail)
        inner = text[len(head):len(text) - len(tail)].strip() if starts and stops else ""
        if inner:
            text = inner
    return text


def find_overlap(prompts: list[str], benchmarks: dict[str, list[dict]],
                 templates: list[str] = ()) -> dict[str, list[tuple[int, str]]]:
    """{benchmark: [(prompt index, benchmark problem id)]}: each prompt that holds a problem
    of the benchmark (normalised; ``templates`` taken off the benchmark's problems)."""
    ends = [template_ends(t) for t in templates]
    problems = []  # (benchmark, id, " normalised text ", its words)
    for name, rows in benchmarks.items():
        for row in rows:
            text = strip_templates(normalise(row["problem"]), ends)
            if text:
                problems.append((name, str(row["id"]), f" {text} ", text.split()))
    holding = Counter()  # word -> prompts of the sample holding it
    for prompt in prompts[::max(1, len(prompts) // SAMPLE)]:
        holding.update(set(words(prompt)))
    anchored = defaultdict(list)  # each problem's rarest word (then its longest) -> problems
    for j, (_, _, _, problem_words) in enumerate(problems):
        anchored[min(problem_words, key=lambda w: (holding[w], -len(w)))].append(j)
    anchors = set(anchored)
    found = defaultdict(list)
    for i, prompt in enumerate(prompts):
        prompt_words = words(prompt)
        hits = anchors.intersection(prompt_words)
        if hits:
            text = f" {' '.join(prompt_words)} "
            for j in (j for word in hits for j in anchored[word]):
                name, ident, needle, _ = problems[j]
                if needle in text:
                    found[name].append((i, ident))
    return {name: sorted(pairs) for name, pairs in found.items()}


def decontaminate(set_name: str, rows: list[dict], benchmarks: dict[str, list[dict]], excluded: set[str],
                  templates: list[str] = (), allow: bool = False) -> tuple[list[dict], dict]:
    """Check a training set against every benchmark of the study: prompts holding a problem
    of a benchmark in ``excluded`` (the set's ``exclude``) are removed; any other benchmark's
    problem found in a prompt stops the set (a :class:`DataError` naming the set, the
    benchmark, the count and examples) unless ``allow`` (allow_benchmark_overlap). Returns the
    kept rows and the counts per benchmark."""
    found = find_overlap([r["problem"] for r in rows], benchmarks, templates)
    removed = {name: len({i for i, _ in pairs}) for name, pairs in found.items() if name in excluded}
    dropped = {i for name, pairs in found.items() if name in excluded for i, _ in pairs}
    kept = [r for i, r in enumerate(rows) if i not in dropped]
    remaining = {name: [(i, b) for i, b in pairs if i not in dropped] for name, pairs in found.items()
                 if name not in excluded}
    remaining = {name: pairs for name, pairs in remaining.items() if pairs}
    if remaining and not allow:
        name, pairs = next(iter(sorted(remaining.items())))
        examples = ", ".join(f"prompt {rows[i]['id']!r} holds {name} problem {b!r}" for i, b in pairs[:2])
        others = "; ".join(f"{n}: {len({i for i, _ in p})}" for n, p in sorted(remaining.items()) if n != name)
        raise DataError(
            f"prompt set {set_name!r}: {len({i for i, _ in pairs})} of its {len(rows)} prompts hold problems of "
            f"benchmark {name!r} ({examples}){f'; also {others}' if others else ''}: training on a benchmark's "
            f"problems inflates its score. List the benchmark in prompt_sets.{set_name}.exclude to remove them, or "
            f"set prompt_sets.{set_name}.allow_benchmark_overlap: true")
    report = {"removed": removed, "allowed": {n: len({i for i, _ in p}) for n, p in remaining.items()}}
    return kept, report
