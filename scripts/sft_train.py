#!/usr/bin/env python
"""Supervised fine-tuning of a model on teacher answers (the off-policy cold start);
resumable from --run-dir (see opd.train.sft)."""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from opd import distributed  # noqa: E402
from opd.data import render_prompt  # noqa: E402
from opd.io import read_jsonl  # noqa: E402
from opd.models import load_tokenizer  # noqa: E402
from opd.train.checkpoint import export  # noqa: E402
from opd.train.sft import SFTSettings, train  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True, help="model to fine-tune (directory or hub id)")
    ap.add_argument("--data", required=True, help="JSONL rows with problem and response")
    ap.add_argument("--settings", default="{}", help="SFTSettings as JSON")
    ap.add_argument("--template", default="{problem}")
    ap.add_argument("--no-chat", action="store_true")
    ap.add_argument("--trust-remote-code", action="store_true")
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--log-out", required=True)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tok = load_tokenizer(args.model, args.trust_remote_code)
    rows = [{"prompt": render_prompt(tok, r["problem"], args.template, not args.no_chat), "response": r["response"]}
            for r in read_jsonl(args.data, required=("problem", "response"))]
    model, tok, run = train(args.model, rows, SFTSettings(**json.loads(args.settings)), args.run_dir,
                            args.device, args.trust_remote_code)
    export(model, tok, run, args.out, args.log_out)
    if run.dist.main:
        print(f"wrote {args.out}")
    distributed.shutdown()


if __name__ == "__main__":
    main()
