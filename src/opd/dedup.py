"""Training prompts that duplicate other sets' problems: exact matches (whitespace
trimmed), then near duplicates above a similarity threshold.

Similarity is the Jaccard index of character n-gram sets (light, dependency-free; what the
toy world and tests use), or the cosine of sentence embeddings (``sentence-transformers``,
imported only when asked for), as in the paper's content-alignment recipe: DeepMath
prompts deduplicated against DAPO's by exact match, then cosine >= 0.6.
"""

from __future__ import annotations

from collections import Counter, defaultdict


def shingles(text: str, n: int = 3) -> frozenset[str]:
    text = " ".join(text.lower().split())
    return frozenset(text[i:i + n] for i in range(max(1, len(text) - n + 1)))


def jaccard(a: frozenset, b: frozenset) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def max_jaccard(candidates: list[str], reference: list[str], n: int = 3) -> list[float]:
    """For each candidate, its highest Jaccard similarity to any reference text. An inverted
    index over n-grams visits only references sharing at least one n-gram."""
    ref = [shingles(t, n) for t in reference]
    index: dict[str, list[int]] = defaultdict(list)
    for j, s in enumerate(ref):
        for g in s:
            index[g].append(j)
    out = []
    for text in candidates:
        s = shingles(text, n)
        shared = Counter(j for g in s for j in index.get(g, ()))
        out.append(max((k / (len(s) + len(ref[j]) - k) for j, k in shared.items()), default=0.0))
    return out


def max_cosine(candidates: list[str], reference: list[str], model: str, batch_size: int = 256) -> list[float]:
    """For each candidate, its highest cosine similarity to any reference (sentence embeddings)."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ImportError("dedup method 'embedding' needs sentence-transformers: pip install sentence-transformers") \
            from None
    encoder = SentenceTransformer(model)
    ref = encoder.encode(reference, batch_size=batch_size, normalize_embeddings=True, convert_to_tensor=True)
    out = []
    for start in range(0, len(candidates), batch_size):
        emb = encoder.encode(candidates[start:start + batch_size], batch_size=batch_size, normalize_embeddings=True,
                             convert_to_tensor=True)
        out.extend((emb @ ref.T).max(dim=1).values.tolist())
    return out


def deduplicate(rows: list[dict], excluded: list[dict], method: str = "exact", threshold: float = 0.6,
                ngram: int = 3, model: str | None = None) -> tuple[list[dict], dict]:
    """Rows whose problem is not among (or, beyond ``exact``, not similar to) the excluded
    problems; and counts of what was removed and why."""
    seen = {p["problem"].strip() for p in excluded}
    fresh = [r for r in rows if r["problem"].strip() not in seen]
    report = {"source": len(rows), "exact_duplicates": len(rows) - len(fresh), "near_duplicates": 0}
    if method != "exact" and fresh and excluded:
        texts, ref = [r["problem"] for r in fresh], [p["problem"] for p in excluded]
        scores = max_jaccard(texts, ref, ngram) if method == "ngram" else max_cosine(texts, ref, model)
        kept = [r for r, s in zip(fresh, scores) if s < threshold]
        report["near_duplicates"] = len(fresh) - len(kept)
        fresh = kept
    report.update(kept=len(fresh), removed_as_duplicates=len(rows) - len(fresh), method=method,
                  threshold=None if method == "exact" else threshold)
    return fresh, report
