#!/usr/bin/env python
"""Per-rollout mean reward (log q - log p) as a predictor of correctness: the AUROC for each
OPD experiment over every rollout of its training log (markdown and JSON)."""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from opd.analysis.auroc import rollout_auroc  # noqa: E402
from opd.analysis.tables import markdown_table  # noqa: E402
from opd.io import read_jsonl, write_json, write_text  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--log", action="append", required=True, metavar="EXPERIMENT=TRAIN_LOG")
    ap.add_argument("--table", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    results = {name: rollout_auroc(read_jsonl(path)) for name, path in (x.split("=", 1) for x in args.log)}

    def fmt(x):
        return "-" if x is None else f"{x:.3f}"

    rows = [[name, str(r["rollouts"]), f"{r['correct'] / max(1, r['rollouts']):.3f}", fmt(r["auroc_mean_reward"]),
             fmt(r["auroc_shortness"])] for name, r in results.items()]
    write_text(args.table, "# Per-rollout mean reward as a correctness predictor\n\n"
               + markdown_table(["experiment", "rollouts", "accuracy", "AUROC mean reward", "AUROC shortness"], rows)
               + "\nOver every training rollout: AUROC of the mean token reward log q - log p (and of the negative "
               "length, a baseline) for the verifier's correct vs wrong answers; '-' where one class is empty.\n")
    write_json(args.out, results)


if __name__ == "__main__":
    main()
