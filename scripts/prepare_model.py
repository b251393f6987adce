#!/usr/bin/env python
"""Pretrain a toy model from a recipe (JSON). Hub and local models need no preparation:
the rules load them in place."""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from opd.io import atomic_dir, write_json  # noqa: E402
from opd.models import load_tokenizer  # noqa: E402
from opd.toy.pretrain import ToyRecipe, pretrain  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tokenizer", required=True, help="directory of the toy tokenizer")
    ap.add_argument("--recipe", required=True, help="toy recipe as JSON (see config/README.md)")
    ap.add_argument("--out", required=True, help="output model directory")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    recipe = ToyRecipe(**json.loads(args.recipe))
    tokenizer = load_tokenizer(args.tokenizer)
    with atomic_dir(args.out) as tmp:
        summary = pretrain(tokenizer, recipe, tmp)
        write_json(Path(tmp) / "pretrain_summary.json", {"recipe": recipe.__dict__, **summary})
    print(f"wrote {args.out}: {summary['parameters']} parameters, final loss "
          f"{summary['final_loss']:.4f}, {summary['seconds']:.0f} s")


if __name__ == "__main__":
    main()
