#!/usr/bin/env python
"""Write local stand-ins for the hub datasets config/paper.yaml reads, each in its own
repository layout (opd.hub_layouts), under OUT/<owner>/<name>: the rehearsal's data."""
import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from opd.hub_layouts import LAYOUTS, write_mirror  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="rehearsal/hub", help="directory of the mirrors (default: rehearsal/hub)")
    args = ap.parse_args()
    for hub_id in LAYOUTS:
        target = Path(args.out) / hub_id
        if target.exists():
            shutil.rmtree(target)
        write_mirror(hub_id, args.out)
        print(f"wrote {target}")


if __name__ == "__main__":
    main()
