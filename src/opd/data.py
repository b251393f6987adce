"""Problem sets (benchmarks and training prompts) and how prompts are rendered.

A problem set on disk is JSONL with one ``{"id", "problem", "answer"}`` object a line; the
``prepare_*`` rules write that from a toy generator, a local file or a hub dataset.
"""

from __future__ import annotations

from pathlib import Path

from .io import DataError, read_jsonl
from .toy.task import sample_problems

REQUIRED_KEYS = ("id", "problem", "answer")


def toy_problems(seed: int, count: int, min_digits: int, max_digits: int, prefix: str, max_digit: int = 9,
                 require_digit_above: int | None = None) -> list[dict]:
    problems = sample_problems(seed, count, min_digits, max_digits, max_digit, require_digit_above)
    return [{"id": f"{prefix}-{i}", "problem": p.question, "answer": p.answer, "digits": p.digits}
            for i, p in enumerate(problems)]


def normalise_rows(rows: list[dict], source: str, problem_key: str, answer_key: str,
                   id_key: str | None = None) -> list[dict]:
    """Map a dataset's own column names onto ``id``/``problem``/``answer``."""
    out = []
    for i, row in enumerate(rows, start=1):
        for key in (problem_key, answer_key):
            if key not in row:
                raise DataError(f"{source}:{i}: missing key {key!r}")
        out.append({
            "id": str(row[id_key]) if id_key else str(i - 1),
            "problem": str(row[problem_key]),
            "answer": str(row[answer_key]),
        })
    return out


def local_problems(path: str | Path, problem_key: str, answer_key: str,
                   id_key: str | None = None) -> list[dict]:
    return normalise_rows(read_jsonl(path), str(path), problem_key, answer_key, id_key)


def hub_problems(name: str, split: str, problem_key: str, answer_key: str,
                 id_key: str | None = None, revision: str | None = None) -> list[dict]:
    try:
        import datasets
    except ImportError:
        raise ImportError("hub datasets need the 'datasets' package: pip install datasets") from None
    rows = datasets.load_dataset(name, split=split, revision=revision)
    return normalise_rows(list(rows), f"{name}[{split}]", problem_key, answer_key, id_key)


def read_problems(path: str | Path) -> list[dict]:
    rows = read_jsonl(path, required=REQUIRED_KEYS)
    seen = set()
    for lineno, row in enumerate(rows, start=1):
        if row["id"] in seen:
            raise DataError(f"{path}:{lineno}: duplicate id {row['id']!r}")
        seen.add(row["id"])
    return rows


PLACEHOLDER = "{problem}"


def fill_template(template: str, problem: str) -> str:
    """``template`` with each ``{problem}`` replaced. Not ``str.format``: math templates hold
    literal braces (``\\boxed{}``), and a problem's own braces must not be interpreted."""
    if PLACEHOLDER not in template:
        raise ValueError(f"prompt template has no {PLACEHOLDER} placeholder: {template!r}")
    return template.replace(PLACEHOLDER, problem)


def render_prompt(tokenizer, problem: str, template: str, chat: bool) -> str:
    """The prompt text: ``template`` filled in, wrapped in the chat template when asked."""
    content = fill_template(template, problem)
    if chat and tokenizer.chat_template:
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )
    return content
