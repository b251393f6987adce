"""Which teacher outputs are fit for SFT: the paper drops truncated, repetitive and
no-``\\boxed`` outputs. Each rejection carries its reason so the job can report counts."""

from __future__ import annotations

from collections import Counter

from .grading import extract_boxed


def repetition_reason(text: str, max_repeated_line_fraction: float, ngram: int, max_ngram_repeats: int) -> str | None:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if len(lines) >= 4:
        most = Counter(lines).most_common(1)[0][1]
        if most / len(lines) > max_repeated_line_fraction:
            return "repetitive"
    if len(text) >= ngram * max_ngram_repeats:
        counts = Counter(text[i:i + ngram] for i in range(0, len(text) - ngram + 1))
        if counts and counts.most_common(1)[0][1] > max_ngram_repeats:
            return "repetitive"
    return None


def reject_reason(text: str, finish_reason: str, rules: dict) -> str | None:
    """None when the output is kept, else ``truncated``, ``no_boxed`` or ``repetitive``."""
    if finish_reason != "stop":
        return "truncated"
    if extract_boxed(text) is None:
        return "no_boxed"
    return repetition_reason(text, rules["max_repeated_line_fraction"], rules["repeat_ngram"],
                             rules["max_ngram_repeats"])
