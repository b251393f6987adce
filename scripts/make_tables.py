#!/usr/bin/env python
"""Collect evaluations and training logs into the tables (markdown) and summary.json.

--eval MODEL:BENCHMARK:PATH gives a metrics JSON of eval_model.py; --experiments is a JSON
object {name: {student, teacher, section, benchmarks, log}} of the OPD experiments, --seeds
{experiment: {seed: run}} of those run with several seeds, --findings the config's
declaration of which experiments bear on each of the paper's findings."""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from opd.analysis.findings import judge_findings  # noqa: E402
from opd.analysis.verdicts import check_probe  # noqa: E402
from opd.analysis.tables import (  # noqa: E402
    base_eval_table,
    experiment_summary,
    experiments_latex,
    experiments_table,
    findings_table,
    hub_revisions,
    probe_table,
    summary,
    with_seeds,
)
from opd.io import read_json, read_jsonl, write_json, write_text  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--eval", action="append", required=True, metavar="MODEL:BENCHMARK:PATH")
    ap.add_argument("--base", action="append", default=[], metavar="MODEL:BENCHMARK",
                    help="pairs of the base-evaluation table (default: every --eval)")
    ap.add_argument("--experiments", default="{}", help="JSON, see above")
    ap.add_argument("--seeds", default="{}", help="JSON, see above")
    ap.add_argument("--table", required=True, help="output markdown: base evaluation")
    ap.add_argument("--experiments-table", help="output markdown: OPD experiments")
    ap.add_argument("--summary", required=True, help="output summary JSON")
    ap.add_argument("--section", action="append", default=[], metavar="NAME=EXP1,EXP2",
                    help="a paper section's experiments: section_NAME.md and .tex in --section-dir")
    ap.add_argument("--section-dir", default="results/tables")
    ap.add_argument("--probe-table", help="output markdown: each probe's predictions beside the OPD outcomes")
    ap.add_argument("--findings", default="{}", help="JSON: the config's findings")
    ap.add_argument("--findings-table", help="output markdown: each of the paper's findings judged on this run")
    ap.add_argument("--attach", action="append", default=[], metavar="KIND.NAME=JSON",
                    help="another result (sweep, probe, analysis) to include in the summary")
    args = ap.parse_args()
    results = {}
    for item in args.eval:
        model, benchmark, path = item.split(":", 2)
        results[(model, benchmark)] = read_json(path)
    base_pairs = [tuple(p.split(":", 1)) for p in args.base] or list(results)
    base = {pair: results[pair] for pair in base_pairs}
    out = summary(base)
    experiments = with_seeds({name: experiment_summary(name, spec, results, read_jsonl(spec["log"]))
                              for name, spec in json.loads(args.experiments).items()}, json.loads(args.seeds))
    out["experiments"] = experiments
    for item in args.attach:
        key, path = item.split("=", 1)
        kind, name = key.split(".", 1)
        out.setdefault(kind, {})[name] = read_json(path)
    revisions = hub_revisions(out.get("hub", {}))
    write_text(args.table, base_eval_table(base) + revisions)
    if args.experiments_table:
        write_text(args.experiments_table, experiments_table(experiments) + revisions)
    for item in args.section:
        name, members = item.split("=", 1)
        part = {e: experiments[e] for e in members.split(",")}
        title = f"Section {name}" if name != "none" else "Experiments without a section"
        write_text(Path(args.section_dir) / f"section_{name}.md", experiments_table(part, title))
        write_text(Path(args.section_dir) / f"section_{name}.tex", experiments_latex(part, title))
    for probe in out.get("probes", {}).values():
        probe["outcomes"] = check_probe(probe, experiments)
    if args.probe_table:
        write_text(args.probe_table, probe_table(out.get("probes", {})))
    out["findings"] = judge_findings(json.loads(args.findings), out)
    if args.findings_table:
        write_text(args.findings_table, findings_table(out["findings"]))
    write_json(args.summary, out)
    print(Path(args.table).read_text())


if __name__ == "__main__":
    main()
