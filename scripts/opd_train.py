#!/usr/bin/env python
"""On-policy distillation of a student from a teacher (resumable; see opd.train.opd)."""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from opd import distributed, process  # noqa: E402
from opd.chat import add_chat_option  # noqa: E402
from opd.data import read_problems  # noqa: E402
from opd.losses import Objective  # noqa: E402
from opd.train.checkpoint import export  # noqa: E402
from opd.train.opd import OPDSettings, train  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--student", required=True, help="student model directory or hub id")
    ap.add_argument("--teacher", required=True, help="teacher model directory or hub id")
    ap.add_argument("--prompts", required=True, help="training prompts JSONL")
    ap.add_argument("--benchmark", action="append", default=[], metavar="NAME=JSONL",
                    help="validation benchmark (repeatable)")
    ap.add_argument("--val-limit", type=int, help="validate on the first N problems of each benchmark (the canary)")
    ap.add_argument("--settings", default="{}", help="OPDSettings as JSON")
    ap.add_argument("--objective", default="{}", help="Objective as JSON")
    ap.add_argument("--template", default="{problem}")
    add_chat_option(ap, "--chat", "the student")
    add_chat_option(ap, "--teacher-chat", "the teacher (its own rendering of each prompt)")
    ap.add_argument("--grading", default="{}")
    ap.add_argument("--run-dir", required=True, help="checkpoints; kept across retries")
    ap.add_argument("--out", help="final model directory (HF format); none for a canary run")
    ap.add_argument("--log-out", required=True, help="copy of the per-step JSONL log")
    ap.add_argument("--teacher-dtype", default="float32")
    ap.add_argument("--student-dtype", default="float32", help="the student's own dtype: vLLM rollouts use it")
    ap.add_argument("--trust-remote-code", action="store_true", help="the student's own remote code")
    ap.add_argument("--teacher-trust-remote-code", action="store_true", help="the teacher's own remote code")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    process.set_threads(args.threads)
    process.set_determinism(args.device)
    benchmarks = {}
    for item in args.benchmark:
        name, path = item.split("=", 1)
        benchmarks[name] = read_problems(path)[:args.val_limit]
    settings = OPDSettings(**json.loads(args.settings))
    student, tok, run = train(
        args.student, args.teacher, read_problems(args.prompts), benchmarks,
        settings, Objective(**json.loads(args.objective)), args.run_dir,
        template=args.template, chat=args.chat, teacher_chat=args.teacher_chat, grading=json.loads(args.grading),
        device=args.device, teacher_dtype=args.teacher_dtype,
        student_dtype=args.student_dtype, trust_remote_code=args.trust_remote_code,
        teacher_trust_remote_code=args.teacher_trust_remote_code, prompts_source=f"prompt set {args.prompts}",
    )
    export(student, tok, run, args.out, args.log_out, settings.keep_final_checkpoint)
    if run.dist.main:
        print(f"wrote {args.out or 'no model'} and {args.log_out}")
    distributed.shutdown()


if __name__ == "__main__":
    main()
