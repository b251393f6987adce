#!/usr/bin/env python
"""Collect evaluation results into the base-evaluation table (markdown) and summary.json.

Each --eval is MODEL:BENCHMARK:PATH to a metrics JSON written by eval_model.py."""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from opd.analysis.tables import base_eval_table, summary  # noqa: E402
from opd.io import read_json, write_json, write_text  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--eval", action="append", required=True, metavar="MODEL:BENCHMARK:PATH")
    ap.add_argument("--table", required=True, help="output markdown table")
    ap.add_argument("--summary", required=True, help="output summary JSON")
    args = ap.parse_args()
    results = {}
    for item in args.eval:
        model, benchmark, path = item.split(":", 2)
        results[(model, benchmark)] = read_json(path)
    write_text(args.table, base_eval_table(results))
    write_json(args.summary, summary(results))
    print(Path(args.table).read_text())


if __name__ == "__main__":
    main()
