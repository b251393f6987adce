"""The base-evaluation table and ``results/summary.json``."""

from __future__ import annotations

import re
import statistics


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


def hub_revisions(records: dict[str, dict]) -> str:
    """The commit each hub model and dataset was (``{config key: download record}``), as the
    tables' closing lines: a table traced to the weights and data that made it."""
    if not records:
        return ""
    rows = [[key, r["repo"], r["commit"]] for key, r in sorted(records.items())]
    return "\nHub repositories, at these commits:\n\n" + markdown_table(["config", "repository", "commit"], rows)


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


def spread(per_seed: dict) -> dict | None:
    """Mean, sample standard deviation (0 for one seed), min and max of one value over
    seeds; None when a seed has no value (e.g. a gap recovery without a teacher lead)."""
    values = list(per_seed.values())
    if not values or any(v is None for v in values):
        return None
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"per_seed": dict(per_seed), "mean": statistics.fmean(values), "sd": sd, "min": min(values),
            "max": max(values)}


SEED_METRICS = ("acc_after", "gap_recovery")


def over_seeds(runs: dict[int, dict]) -> dict:
    """{seed: experiment summary} -> each accuracy, gap recovery and last-step token-level
    metric with its per-seed values and spread (see :func:`spread`)."""
    first = next(iter(runs.values()))
    out = {"runs": len(runs), "benchmarks": {
        b: {key: spread({s: r["benchmarks"][b][key] for s, r in runs.items()}) for key in SEED_METRICS}
        for b in first["benchmarks"]}}
    for key in first:
        if key.endswith(("_first", "_last")) and isinstance(first[key], (int, float)):
            out[key] = spread({s: r.get(key) for s, r in runs.items()})
    return out


def with_seeds(experiments: dict[str, dict], seed_runs: dict[str, dict]) -> dict[str, dict]:
    """Each experiment with seeds gets ``seeds``: its runs' spread (:func:`over_seeds`) and
    ``seed_runs``; the other seeds' runs are marked ``seed_of`` (tables show them in their
    experiment's row, summary.json keeps them whole)."""
    out = {name: dict(e) for name, e in experiments.items()}
    for name, runs in seed_runs.items():
        out[name]["seed_runs"] = {str(s): run for s, run in runs.items()}
        out[name]["seeds"] = over_seeds({s: experiments[run] for s, run in runs.items()})
        for run in list(runs.values())[1:]:
            out[run]["seed_of"] = name
    return out


def _pm(stats: dict | None, value, scale: float = 100, digits: int = 1, unit: str = "") -> str:
    """``mean ± sd`` over seeds when there are several, else the single value."""
    if stats is not None and len(stats["per_seed"]) > 1:
        return f"{scale * stats['mean']:.{digits}f} ± {scale * stats['sd']:.{digits}f}{unit}"
    return "-" if value is None else f"{scale * value:.{digits}f}{unit}"


def experiment_rows(experiments: dict[str, dict]) -> tuple[list[str], list[list[str]]]:
    """One row per experiment and benchmark: before, after, teacher, gap recovery, overlap;
    mean ± sd over an experiment's seeds, whose other runs have no rows of their own."""
    rows = []
    for name, e in experiments.items():
        if e.get("seed_of"):
            continue
        seeds = e.get("seeds") or {}
        for b, m in e["benchmarks"].items():
            over = seeds.get("benchmarks", {}).get(b, {})
            rows.append([name, f"{e['student']} <- {e['teacher']}", b, f"{100 * m['acc_before']:.1f}",
                         _pm(over.get("acc_after"), m["acc_after"]), f"{100 * m['acc_teacher']:.1f}",
                         _pm(over.get("gap_recovery"), m["gap_recovery"], digits=0, unit="%"),
                         _fmt(e.get("overlap_ratio_first")),
                         _pm(seeds.get("overlap_ratio_last"), e.get("overlap_ratio_last"), 1, 3),
                         str(seeds.get("runs", 1))])
    header = ["experiment", "student <- teacher", "benchmark", "before", "after", "teacher", "gap recovery",
              "overlap first", "overlap last", "seeds"]
    return header, rows


EXPERIMENTS_NOTE = ("Accuracies are avg@n in percent. Gap recovery = (after - before) / (teacher - before); "
                    "'-' where the teacher is not ahead. Overlap: top-k overlap ratio at the first and last step. "
                    "With several seeds: mean ± sample standard deviation over the seeds' runs "
                    "(overlap first: the first seed's).")


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
    token-level metrics at the last step (mean ± sd over the point's seeds)."""
    header = ["point", "settings", "benchmark", "before", "after", "teacher", "gap recovery",
              *(label for _, label in SWEEP_METRICS), "seeds"]
    rows = []
    for name, p in points.items():
        settings = ", ".join(f"{k}={v}" for k, v in p["overrides"].items())
        seeds = p.get("seeds") or {}
        for b, m in p["benchmarks"].items():
            over = seeds.get("benchmarks", {}).get(b, {})
            rows.append([name, settings, b, f"{100 * m['acc_before']:.1f}",
                         _pm(over.get("acc_after"), m["acc_after"]), f"{100 * m['acc_teacher']:.1f}",
                         _pm(over.get("gap_recovery"), m["gap_recovery"], digits=0, unit="%"),
                         *(_pm(seeds.get(key), p.get(key), 1, 3) for key, _ in SWEEP_METRICS),
                         str(seeds.get("runs", 1))])
    return header, rows


def yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


def probe_table(probes: dict[str, dict]) -> str:
    """Each probe's verdicts beside what OPD from each teacher did (``outcomes`` of
    :func:`opd.analysis.verdicts.check_probe`)."""
    rows = []
    for name, probe in probes.items():
        for teacher in probe["ranking"]:
            o = probe["outcomes"][teacher]
            runs = o["experiments"] or {"-": {"outcome": "not run", "holds": None}}
            for experiment, seen in runs.items():
                rows.append([name, teacher, yes_no(o["compatible"]), yes_no(o["to_teach"]), o["predicted"],
                             experiment, seen["outcome"], yes_no(seen["holds"])])
    header = ["probe", "teacher", "compatible", "something to teach", "predicted", "experiment", "outcome",
              "prediction holds"]
    return ("# Teacher probes: predictions and outcomes\n\n" + markdown_table(header, rows)
            + "\nOutcome of OPD from that teacher (the mean over seeds where there are several): transfers (a gain "
            "of at least the probe's min_lead on a target benchmark the teacher leads), collapse (a loss as large "
            "on any benchmark) or nothing learnt. The prediction holds when a teacher predicted to transfer did and "
            "one predicted not to did not.\n")


def figure_text(f: dict) -> str:
    """``run label mean ± sd``: accuracies in percent (gains signed), ratios as they are; no ±
    for a value of one seed."""
    scale, digits, sign = (1, 3, "") if f["kind"] == "ratio" else (100, 1, "+" if f["kind"] == "gain" else "")
    value = f"{scale * f['mean']:{sign}.{digits}f}"
    if f["sd"] is not None:
        value += f" ± {scale * f['sd']:.{digits}f}"
    return f"{f['run']} {f['label']} {value}"


def declared_text(d: dict | None) -> str:
    """The runs a finding names, role by role, and the benchmarks its accuracies average."""
    if d is None:
        return "-"
    parts = []
    for role, value in d.items():
        if isinstance(value, str):
            parts.append(f"{role}: {value}")
        elif role == "pairs":
            parts += [f"{p['aligned']} vs {p['misaligned']}" for p in value]
        elif role != "benchmarks" and isinstance(value, list):
            parts.append(f"{role}: {', '.join(value)}")
    if "benchmarks" in d:
        parts.append(f"on {', '.join(d['benchmarks'])}" if d["benchmarks"] else "on each run's benchmarks")
    return "; ".join(parts)


def findings_table(findings: dict[str, dict]) -> str:
    """Each of the paper's findings: the runs that bear on it, this run's figures, the rule,
    and the verdict (:func:`opd.analysis.findings.judge_findings`)."""
    rows = [[f["paper"], name, f["claim"], declared_text(f["declared"]),
             "; ".join(figure_text(x) for x in f["figures"]) or "-", f["rule"] or "-",
             f"**{f['verdict']}**" + (f": {f['why']}" if f["why"] else "")]
            for name, f in findings.items()]
    header = ["#", "finding", "the paper", "runs", "this run", "rule", "verdict"]
    return ("# The paper's findings, judged on this run\n\n" + markdown_table(header, rows)
            + "\nThis run: accuracies in percent, mean over the finding's benchmarks, then mean ± sample standard "
            "deviation over the seeds run (a value without ± is one seed's, or measured once); gain = accuracy "
            "after OPD - before. Verdicts: holds or fails by the rule; too few seeds where the rule weighs a "
            "difference against the seeds' spread and a run has one seed; not run where the config names no runs "
            "for the finding or they are not in this study; undecided where the run lacks a value the rule needs. "
            "docs/findings.md gives each rule and why.\n")
