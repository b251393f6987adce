import importlib.util
import random

import pytest

from opd.dedup import deduplicate, jaccard, max_jaccard, shingles


def test_max_jaccard_matches_all_pairs_brute_force():
    rng = random.Random(0)
    words = ["x", "y", "sum", "of", "12", "35", "find", "the", "value", "+"]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 8))) for _ in range(60)]
    cands, refs = texts[:30], texts[30:]
    expected = [max(jaccard(shingles(c), shingles(r)) for r in refs) for c in cands]
    assert max_jaccard(cands, refs) == pytest.approx(expected)
    assert max_jaccard(["zzzz"], ["abc"]) == [0.0]


def test_exact_then_near_duplicates_are_removed_and_counted():
    excluded = [{"problem": "Find the sum of 12 and 35."}, {"problem": "What is 7 times 8?"}]
    rows = [{"id": "a", "problem": "  Find the sum of 12 and 35.  "},    # exact (after trimming)
            {"id": "b", "problem": "Find the sum of 12 and 36."},         # near duplicate
            {"id": "c", "problem": "How many primes are below 100?"}]     # new
    kept, report = deduplicate(rows, excluded, method="exact")
    assert [r["id"] for r in kept] == ["b", "c"] and report["exact_duplicates"] == 1
    kept, report = deduplicate(rows, excluded, method="ngram", threshold=0.6)
    assert [r["id"] for r in kept] == ["c"]
    assert report == {"source": 3, "exact_duplicates": 1, "near_duplicates": 1, "kept": 1,
                      "removed_as_duplicates": 2, "method": "ngram", "threshold": 0.6}


@pytest.mark.skipif(importlib.util.find_spec("sentence_transformers") is not None,
                    reason="sentence-transformers is installed")
def test_embedding_method_without_sentence_transformers_says_what_it_needs():
    with pytest.raises(ImportError, match="pip install sentence-transformers"):
        deduplicate([{"problem": "a b c"}], [{"problem": "a b d"}], method="embedding", model="m")
