#!/usr/bin/env python
"""Write a toy world's tokenizer (tokenizer.json + chat template): characters or subword."""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from opd.io import atomic_dir  # noqa: E402
from opd.toy.tokenizer import KINDS, save_tokenizer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--kind", choices=KINDS, default="characters")
    ap.add_argument("--out", required=True, help="output directory")
    args = ap.parse_args()
    with atomic_dir(args.out) as tmp:
        tok = save_tokenizer(tmp, args.kind)
    print(f"wrote {args.out}: {len(tok)} tokens")


if __name__ == "__main__":
    main()
