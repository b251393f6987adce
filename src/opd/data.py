"""Problem sets (benchmarks and training prompts) and how prompts are rendered.

A problem set on disk is JSONL with one ``{"id", "problem", "answer"}`` object a line; the
``prepare_*`` rules write that from a toy generator, a local file or a hub dataset.
"""

from __future__ import annotations

import math
from pathlib import Path

from .chat import ChatFormat
from .io import DataError, read_jsonl
from .toy.task import sample_problems

REQUIRED_KEYS = ("id", "problem", "answer")
PLACEHOLDER = "{problem}"


def toy_problems(seed: int, count: int, min_digits: int, max_digits: int, prefix: str, max_digit: int = 9,
                 require_digit_above: int | None = None) -> list[dict]:
    problems = sample_problems(seed, count, min_digits, max_digits, max_digit, require_digit_above)
    return [{"id": f"{prefix}-{i}", "problem": p.question, "answer": p.answer, "digits": p.digits}
            for i, p in enumerate(problems)]


def column(row: dict, key: str, source: str):
    """``row[key]``, where a dotted key walks nested values (``conversations.0.value``)."""
    value = row
    for part in key.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, (list, tuple)) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise DataError(f"{source}: missing key {key!r} (columns: {', '.join(sorted(row))})")
    return value


def strip_template(text: str, template: str, source: str) -> str:
    """The problem inside ``text`` written with ``template`` (a dataset that ships its prompts
    already templated, as DAPO does): the part ``{problem}`` stands for."""
    head, _, tail = template.partition(PLACEHOLDER)
    if not (text.startswith(head) and text.endswith(tail) and len(text) >= len(head) + len(tail)):
        raise DataError(f"{source}: the problem is not written with strip_template {template[:60]!r}...")
    problem = text[len(head):len(text) - len(tail)]
    if not problem.strip():
        raise DataError(f"{source}: strip_template {template[:60]!r}... leaves an empty problem")
    return problem


def normalise_rows(rows, source: str, problem_key: str, answer_key: str | None, id_key: str | None = None,
                   where: dict | None = None, template: str | None = None, repeats: list | None = None) -> list[dict]:
    """Map a dataset's own columns onto ``id``/``problem``/``answer`` (``answer`` None for a
    prompt-only set, e.g. the cold start's); rows not matching ``where`` are skipped. A
    problem written twice (spacing aside; case can matter in math) is refused, naming both
    rows; given a ``repeats`` list, the later copies are dropped and listed there instead
    (training sets: OpenThoughts3 holds each math question with up to 16 answers)."""
    out, first = [], {}
    for i, row in enumerate(rows, start=1):
        at = f"{source}:{i}"
        if where and any(column(row, k, at) != v for k, v in where.items()):
            continue
        problem = column(row, problem_key, at)
        if not isinstance(problem, str) or not problem.strip():
            raise DataError(f"{at}: {problem_key!r} is not a non-empty string: {problem!r:.80}")
        answer = None
        if answer_key is not None:
            answer = column(row, answer_key, at)
            if not is_answer(answer):  # a blank gold answer would grade an empty \boxed{} correct
                ident = f" (id {column(row, id_key, at)})" if id_key else ""
                raise DataError(f"{at}: {answer_key!r} holds no answer{ident}: {answer!r:.80}")
            answer = str(answer)
        entry = {
            "id": str(column(row, id_key, at)) if id_key else str(i - 1),
            "problem": strip_template(problem, template, at) if template else problem,
            "answer": answer,
        }
        key = " ".join(entry["problem"].split())
        if key in first:
            first_at, first_id = first[key]
            if repeats is None:
                raise DataError(f"{at}: problem {entry['id']!r} repeats the problem of {first_at} (id {first_id!r}); "
                                "a benchmark scores each problem once")
            repeats.append((at, entry["id"], first_at, first_id))
            continue
        first[key] = (at, entry["id"])
        out.append(entry)
    if not out:
        raise DataError(f"{source}: no problems" + (f" where {where}" if where else ""))
    return out


def is_answer(value) -> bool:
    """A gold answer: a number or a non-blank string (not null, NaN, a list or a mapping)."""
    if value is None or isinstance(value, (dict, list)):
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return bool(str(value).strip())


def local_problems(path: str | Path, problem_key: str, answer_key: str | None, id_key: str | None = None,
                   **options) -> list[dict]:
    return normalise_rows(read_jsonl(path), str(path), problem_key, answer_key, id_key, **options)


def dataset_problems(source: str, split: str, problem_key: str, answer_key: str | None,
                     id_key: str | None = None, subset: str | None = None, name: str | None = None,
                     **options) -> list[dict]:
    """A dataset through the ``datasets`` library from a local directory laid out as a hub
    repository (its data files and README configs): a hub commit's snapshot in the cache, or
    a mirror. ``name`` (the hub id) names it in errors."""
    try:
        import datasets
    except ImportError:
        raise ImportError("hub datasets need the 'datasets' package: pip install datasets") from None
    rows = datasets.load_dataset(str(source), subset, split=split)
    name = f"{name or source}[{subset + ':' if subset else ''}{split}]"
    return normalise_rows(rows, name, problem_key, answer_key, id_key, **options)


def read_problems(path: str | Path) -> list[dict]:
    rows = read_jsonl(path, required=REQUIRED_KEYS)
    seen = set()
    for lineno, row in enumerate(rows, start=1):
        if row["id"] in seen:
            raise DataError(f"{path}:{lineno}: duplicate id {row['id']!r}")
        seen.add(row["id"])
    return rows


def fill_template(template: str, problem: str) -> str:
    """``template`` with each ``{problem}`` replaced. Not ``str.format``: math templates hold
    literal braces (``\\boxed{}``), and a problem's own braces must not be interpreted."""
    if PLACEHOLDER not in template:
        raise ValueError(f"prompt template has no {PLACEHOLDER} placeholder: {template!r}")
    return template.replace(PLACEHOLDER, problem)


def render_prompt(tokenizer, problem: str, template: str, chat: ChatFormat) -> str:
    """The prompt text: ``template`` filled in, wrapped in the tokenizer's chat template as
    ``chat`` says (a tokenizer without one gets the bare text). A thinking switch its chat
    template does not have is refused: the prompt would silently be the template's default."""
    content = fill_template(template, problem)
    if not chat.template:
        return content
    if chat.enable_thinking is not None and "enable_thinking" not in str(tokenizer.chat_template or ""):
        raise ValueError(f"{tokenizer.name_or_path or 'this tokenizer'}: its chat template has no enable_thinking "
                         f"switch, so the {chat.mode!r} mode cannot be rendered (set enable_thinking: null)")
    if not tokenizer.chat_template:
        return content
    return tokenizer.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                         tokenize=False, **chat.template_kwargs())


def prompt_token_ids(tokenizer, problems: list[dict], template: str, chat: ChatFormat) -> list[list[int]]:
    """Each problem's rendered prompt as token ids (the chat template writes any special tokens)."""
    return [tokenizer(render_prompt(tokenizer, p["problem"], template, chat), add_special_tokens=False)["input_ids"]
            for p in problems]
