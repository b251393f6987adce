#!/usr/bin/env python
"""Ablation sweeps. `point`: one point's accuracies before/after/teacher, gap recovery and
token-level metrics (JSON), with their spread when the point ran with several seeds.
`table`: a sweep's points as markdown, LaTeX and JSON."""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from opd.analysis.tables import experiment_summary, latex_table, markdown_table, sweep_rows, with_seeds  # noqa: E402
from opd.io import read_json, read_jsonl, write_json, write_text  # noqa: E402


def point(args) -> None:
    spec = json.loads(args.spec)
    results = {}
    for item in args.eval:
        model, benchmark, path = item.split(":", 2)
        results[(model, benchmark)] = read_json(path)
    runs, summaries = {}, {}
    for item in args.run:
        seed, experiment, log = item.split(":", 2)
        runs[seed] = experiment
        summaries[experiment] = experiment_summary(experiment, spec, results, read_jsonl(log))
    experiment = next(iter(runs.values()))
    summary = with_seeds(summaries, {experiment: runs} if len(runs) > 1 else {})[experiment]
    out = {"experiment": experiment, "overrides": spec["overrides"], **summary}
    if len(runs) > 1:
        out["per_seed"] = {seed: summaries[run] for seed, run in runs.items()}
    write_json(args.out, out)


def table(args) -> None:
    points = {Path(p).stem: read_json(p) for p in args.point}
    header, rows = sweep_rows(points)
    caption = f"Sweep {args.sweep} (base experiment {args.base}): avg@n in percent; metrics at the last step."
    write_text(args.markdown, f"# Sweep {args.sweep}\n\n{caption}\n\n" + markdown_table(header, rows))
    write_text(args.latex, latex_table(header, rows, caption))
    write_json(args.json, {"sweep": args.sweep, "base": args.base, "points": points})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("point")
    p.add_argument("--run", action="append", required=True, metavar="SEED:EXPERIMENT:LOG",
                   help="the point's experiment and its train_log.jsonl, once per seed (the first seed first)")
    p.add_argument("--spec", required=True, help="JSON {student, teacher, section, benchmarks, overrides}")
    p.add_argument("--eval", action="append", required=True, metavar="MODEL:BENCHMARK:PATH")
    p.add_argument("--out", required=True)
    t = sub.add_parser("table")
    t.add_argument("--sweep", required=True)
    t.add_argument("--base", required=True)
    t.add_argument("--point", action="append", required=True, help="point JSON (repeatable)")
    t.add_argument("--markdown", required=True)
    t.add_argument("--latex", required=True)
    t.add_argument("--json", required=True)
    args = ap.parse_args()
    {"point": point, "table": table}[args.command](args)


if __name__ == "__main__":
    main()
