"""The base-evaluation table and ``results/summary.json``."""

from __future__ import annotations

import re


def accuracy_key(metrics: dict) -> str:
    return f"avg@{metrics['samples_per_problem']}"


def latex_table(header: list[str], rows: list[list[str]], caption: str) -> str:
    """A booktabs tabular; ``%``, ``_`` and ``&`` in cells are escaped."""
    def esc(cell: str) -> str:
        return re.sub(r"([%_&#$])", r"\\\1", cell).replace("<-", r"$\leftarrow$")

    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{esc(caption)}}}",
             r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\toprule",
             " & ".join(map(esc, header)) + r" \\", r"\midrule"]
    lines += [" & ".join(map(esc, r)) + r" \\" for r in rows]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


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


def gap_recovery(before: float, after: float, teacher: float) -> float | None:
    """(after - before) / (teacher - before); undefined when the teacher is not ahead."""
    if teacher - before <= 1e-9:
        return None
    return (after - before) / (teacher - before)


def training_dynamics(log_rows: list[dict]) -> dict:
    """First and last values of the token-level metrics over the training steps."""
    steps = [r for r in log_rows if r.get("step", 0) >= 1 and "overlap_ratio" in r]
    if not steps:
        return {}
    first, last = steps[0], steps[-1]
    return {
        "steps": last["step"],
        "overlap_ratio_first": first["overlap_ratio"],
        "overlap_ratio_last": last["overlap_ratio"],
        "overlap_mass_student_first": first["overlap_mass_student"],
        "overlap_mass_student_last": last["overlap_mass_student"],
        "overlap_mass_teacher_last": last["overlap_mass_teacher"],
        "adv_intersection_last": last["adv_intersection"],
        "entropy_gap_last": last["entropy_gap"],
    }


def experiment_summary(name: str, spec: dict, results: dict[tuple[str, str], dict], log_rows: list[dict]) -> dict:
    """Per benchmark: accuracy before (student), after (trained), teacher, gap recovery."""
    out = {"student": spec["student"], "teacher": spec["teacher"], "section": spec.get("section"),
           "benchmarks": {}, **training_dynamics(log_rows)}
    for b in spec["benchmarks"]:
        before = results[(spec["student"], b)]
        after = results[(name, b)]
        teacher = results[(spec["teacher"], b)]
        acc = {k: r[accuracy_key(r)] for k, r in (("before", before), ("after", after), ("teacher", teacher))}
        out["benchmarks"][b] = {
            "acc_before": acc["before"], "acc_after": acc["after"], "acc_teacher": acc["teacher"],
            "gap_recovery": gap_recovery(acc["before"], acc["after"], acc["teacher"]),
        }
    return out


def experiment_rows(experiments: dict[str, dict]) -> tuple[list[str], list[list[str]]]:
    """One row per experiment and benchmark: before, after, teacher, gap recovery, overlap."""
    rows = []
    for name, e in experiments.items():
        for b, m in e["benchmarks"].items():
            gr = m["gap_recovery"]
            rows.append([name, f"{e['student']} <- {e['teacher']}", b, f"{100 * m['acc_before']:.1f}",
                         f"{100 * m['acc_after']:.1f}", f"{100 * m['acc_teacher']:.1f}",
                         "-" if gr is None else f"{100 * gr:.0f}%",
                         _fmt(e.get("overlap_ratio_first")), _fmt(e.get("overlap_ratio_last"))])
    header = ["experiment", "student <- teacher", "benchmark", "before", "after", "teacher", "gap recovery",
              "overlap first", "overlap last"]
    return header, rows


EXPERIMENTS_NOTE = ("Accuracies are avg@n in percent. Gap recovery = (after - before) / (teacher - before); "
                    "'-' where the teacher is not ahead. Overlap: top-k overlap ratio at the first and last step.")


def experiments_table(experiments: dict[str, dict], title: str = "OPD experiments") -> str:
    return f"# {title}\n\n" + markdown_table(*experiment_rows(experiments)) + f"\n{EXPERIMENTS_NOTE}\n"


def experiments_latex(experiments: dict[str, dict], title: str) -> str:
    return latex_table(*experiment_rows(experiments), caption=f"{title}. {EXPERIMENTS_NOTE}")


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.3f}"


SWEEP_METRICS = (("overlap_ratio_last", "overlap"), ("overlap_mass_student_last", "overlap mass"),
                 ("adv_intersection_last", "overlap adv."), ("entropy_gap_last", "entropy gap"))


def sweep_rows(points: dict[str, dict]) -> tuple[list[str], list[list[str]]]:
    """One row per point and benchmark: what changed, accuracies, gap recovery and the
    token-level metrics at the last step."""
    header = ["point", "settings", "benchmark", "before", "after", "teacher", "gap recovery",
              *(label for _, label in SWEEP_METRICS)]
    rows = []
    for name, p in points.items():
        settings = ", ".join(f"{k}={v}" for k, v in p["overrides"].items())
        for b, m in p["benchmarks"].items():
            gr = m["gap_recovery"]
            rows.append([name, settings, b, f"{100 * m['acc_before']:.1f}", f"{100 * m['acc_after']:.1f}",
                         f"{100 * m['acc_teacher']:.1f}", "-" if gr is None else f"{100 * gr:.0f}%",
                         *(_fmt(p.get(key)) for key, _ in SWEEP_METRICS)])
    return header, rows
