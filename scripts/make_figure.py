#!/usr/bin/env python
"""One training-dynamics figure (PNG): accuracy, overlap ratio and mass, overlap-token
advantage and entropy gap against the step, one line per experiment."""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from opd.analysis.figures import dynamics_figure  # noqa: E402
from opd.io import atomic_open, read_jsonl  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--log", action="append", required=True, metavar="NAME=TRAIN_LOG")
    ap.add_argument("--title", required=True)
    ap.add_argument("--out", required=True, help="PNG")
    args = ap.parse_args()
    logs = {name: read_jsonl(path) for name, path in (item.split("=", 1) for item in args.log)}
    with atomic_open(args.out, "wb") as f:
        dynamics_figure(logs, args.title, f)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
