"""The base-evaluation table and ``results/summary.json``."""

from __future__ import annotations


def accuracy_key(metrics: dict) -> str:
    return f"avg@{metrics['samples_per_problem']}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def base_eval_table(results: dict[tuple[str, str], dict]) -> str:
    """Models as rows, benchmarks as columns; cells are avg@n (pass@n) in percent."""
    models = list(dict.fromkeys(m for m, _ in results))
    benchmarks = list(dict.fromkeys(b for _, b in results))
    rows = []
    for m in models:
        cells = [m]
        for b in benchmarks:
            r = results.get((m, b))
            if r is None:
                cells.append("-")
                continue
            n = r["samples_per_problem"]
            cells.append(f"{100 * r[accuracy_key(r)]:.1f} ({100 * r[f'pass@{n}']:.1f})")
        rows.append(cells)
    n_values = sorted({r["samples_per_problem"] for r in results.values()})
    note = (f"\nCells: avg@n accuracy (pass@n) in percent, n = {', '.join(map(str, n_values))} "
            "samples per problem.\n")
    return "# Base-model evaluation\n\n" + markdown_table(["model", *benchmarks], rows) + note


def summary(results: dict[tuple[str, str], dict]) -> dict:
    """Per model, per benchmark: accuracy (avg@n) and the other headline metrics."""
    out: dict = {"models": {}}
    for (m, b), r in results.items():
        out["models"].setdefault(m, {"benchmarks": {}})["benchmarks"][b] = {
            "accuracy": r[accuracy_key(r)],
            "metric": accuracy_key(r),
            f"pass@{r['samples_per_problem']}": r[f"pass@{r['samples_per_problem']}"],
            "mean_response_tokens": r["mean_response_tokens"],
            "truncation_rate": r["truncation_rate"],
        }
    return out
