#!/usr/bin/env python
"""Supervised fine-tuning of a model on teacher answers (the off-policy cold start);
resumable from --run-dir (see opd.train.sft)."""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from opd import distributed, process  # noqa: E402
from opd.chat import add_chat_option  # noqa: E402
from opd.data import render_prompt  # noqa: E402
from opd.io import read_jsonl  # noqa: E402
from opd.models import load_tokenizer  # noqa: E402
from opd.train.checkpoint import export  # noqa: E402
from opd.train.sft import SFTSettings, synthetic_pairs, train  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True, help="model to fine-tune (directory or hub id)")
    ap.add_argument("--data", help="JSONL rows with problem and response")
    ap.add_argument("--synthetic-examples", type=int, help="instead of --data: this many random examples of "
                    "max_length tokens (the canary: the job's real cost without its data)")
    ap.add_argument("--settings", default="{}", help="SFTSettings as JSON")
    ap.add_argument("--template", default="{problem}")
    add_chat_option(ap, whose="the student")
    ap.add_argument("--trust-remote-code", action="store_true")
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--out", help="final model directory; none for a canary run")
    ap.add_argument("--log-out", required=True)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    process.set_threads(args.threads)
    tok = load_tokenizer(args.model, args.trust_remote_code)
    settings = SFTSettings(**json.loads(args.settings))
    if args.synthetic_examples:
        rows = synthetic_pairs(tok, args.synthetic_examples, settings.max_length, settings.seed)
    elif args.data:
        rows = [{"prompt": render_prompt(tok, r["problem"], args.template, args.chat),
                 "response": r["response"]} for r in read_jsonl(args.data, required=("problem", "response"))]
    else:
        ap.error("give --data or --synthetic-examples")
    model, tok, run = train(args.model, rows, settings, args.run_dir, args.device, args.trust_remote_code)
    export(model, tok, run, args.out, args.log_out, settings.keep_final_checkpoint)
    if run.dist.main:
        print(f"wrote {args.out}")
    distributed.shutdown()


if __name__ == "__main__":
    main()
