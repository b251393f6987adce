#!/usr/bin/env python
"""Build a model from a recipe (JSON): a toy model pretrained on the toy task (--toy), or a
tiny model of a real architecture around a real Qwen tokenizer (--tiny). Hub and local
models need no preparation: the rules load them in place."""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from opd.chat import add_chat_option  # noqa: E402
from opd.io import atomic_dir, write_json  # noqa: E402
from opd.models import load_tokenizer  # noqa: E402
from opd.tiny import TinyRecipe, build_tiny_model  # noqa: E402
from opd.toy.pretrain import ToyRecipe, pretrain  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tokenizer", required=True, help="directory of the toy tokenizer")
    kind = ap.add_mutually_exclusive_group(required=True)
    kind.add_argument("--toy", help="toy recipe as JSON (see config/README.md)")
    kind.add_argument("--tiny", help="tiny recipe as JSON (see config/README.md)")
    add_chat_option(ap, whose="the model (its training prompts)")
    ap.add_argument("--out", required=True, help="output model directory")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    recipe = ToyRecipe(**json.loads(args.toy)) if args.toy else TinyRecipe(**json.loads(args.tiny))
    tokenizer = load_tokenizer(args.tokenizer)
    with atomic_dir(args.out) as tmp:
        summary = (pretrain(tokenizer, recipe, tmp, chat=args.chat) if args.toy
                   else build_tiny_model(recipe, tokenizer, tmp, chat=args.chat))
        write_json(Path(tmp) / "pretrain_summary.json", {"recipe": recipe.__dict__, "chat": args.chat.mode,
                                                          **summary})
    loss = "untrained" if summary["final_loss"] is None else f"final loss {summary['final_loss']:.4f}"
    print(f"wrote {args.out}: {summary['parameters']} parameters, {loss}, {summary['seconds']:.0f} s")


if __name__ == "__main__":
    main()
