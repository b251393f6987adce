#!/usr/bin/env python
"""Write a benchmark or prompt set as JSONL ({"id", "problem", "answer"}) from a toy
generator, a local JSONL file, or a dataset read with the `datasets` library (a hub commit's snapshot,
or a local directory laid out as a hub repository), as its config entry (JSON) says; problems
that appear in any --exclude file are dropped: exact matches, then (with --dedup) near
duplicates by n-gram or embedding similarity (opd.dedup). A training set is then checked
against every --benchmark by normalised content (opd.overlap): prompts holding an excluded
benchmark's problem are dropped, any other benchmark's stops the job unless the entry has
allow_benchmark_overlap."""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from opd.data import dataset_problems, local_problems, read_problems, toy_problems  # noqa: E402
from opd.dedup import deduplicate  # noqa: E402
from opd.io import write_json, write_jsonl  # noqa: E402
from opd.overlap import decontaminate  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--name", required=True)
    ap.add_argument("--spec", required=True, help="the benchmark's config entry as JSON")
    ap.add_argument("--out", required=True, help="output JSONL")
    ap.add_argument("--exclude", action="append", default=[], help="JSONL whose problems are removed")
    ap.add_argument("--dedup", default='{"method": "exact"}', help="JSON: method, threshold, ngram, model")
    ap.add_argument("--benchmark", action="append", default=[], metavar="NAME=JSONL",
                    help="a benchmark the set must not hold problems of (repeatable)")
    ap.add_argument("--template", action="append", default=[],
                    help="a prompt template taken off the benchmarks' problems before comparing (repeatable)")
    ap.add_argument("--drop-repeats", action="store_true",
                    help="drop the later copies of a problem written twice (a training set), instead of refusing it")
    ap.add_argument("--report", help="JSON with counts before and after deduplication")
    args = ap.parse_args()
    spec = json.loads(args.spec)
    repeats = [] if args.drop_repeats else None
    keys = dict(problem_key=spec["problem_key"], answer_key=spec["answer_key"], id_key=spec["id_key"],
                where=spec["where"], template=spec["strip_template"], repeats=repeats)
    if "toy" in spec:
        toy = spec["toy"]
        rows = toy_problems(toy["seed"], toy["count"], toy["min_digits"], toy["max_digits"], args.name,
                            toy["max_digit"], toy["require_digit_above"])
    elif "path" in spec and Path(spec["path"]).is_file():
        rows = local_problems(spec["path"], **keys)
    else:  # a hub commit's snapshot in the cache, or a local mirror of a hub repository
        rows = dataset_problems(spec.get("snapshot") or spec["path"], spec["split"], subset=spec["subset"],
                                name=spec.get("hub"), **keys)
    if repeats:
        examples = "; ".join(f"{at} (id {i!r}) repeats {first_at} (id {first!r})"
                             for at, i, first_at, first in repeats[:2])
        print(f"warning: {args.name}: {len(repeats)} problems written twice were dropped, e.g. {examples}",
              file=sys.stderr)
    excluded = [p for path in args.exclude for p in read_problems(path)]
    kept, report = deduplicate(rows, excluded, **json.loads(args.dedup))
    if repeats is not None:
        report["repeated_problems_dropped"] = len(repeats)
    if args.benchmark:
        benchmarks = dict(item.split("=", 1) for item in args.benchmark)
        kept, report["benchmark_overlap"] = decontaminate(
            args.name, kept, {name: read_problems(path) for name, path in benchmarks.items()},
            {name for name, path in benchmarks.items() if path in args.exclude}, args.template,
            allow=spec.get("allow_benchmark_overlap", False))
    if not kept:  # training on nothing would divide by zero at the first step
        sys.exit(f"{args.name}: every one of its {len(rows)} problems is among the excluded sets "
                 f"({', '.join(args.exclude)}); nothing is left to train or evaluate on")
    write_jsonl(args.out, kept)
    if args.report:
        write_json(args.report, report)
    print(f"wrote {args.out}: {len(kept)} problems ({len(rows) - len(kept)} removed as duplicates or benchmark "
          "problems)")


if __name__ == "__main__":
    main()
