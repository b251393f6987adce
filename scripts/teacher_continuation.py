#!/usr/bin/env python
"""Teacher continuation from student prefixes (see opd.analysis.continuation): per prefix
length, the student's and the teacher's accuracy continuing the student's own partial
answers, and the teacher's advantage (JSON and markdown)."""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from opd.analysis.continuation import continuation_study  # noqa: E402
from opd.analysis.tables import markdown_table  # noqa: E402
from opd.chat import add_chat_option  # noqa: E402
from opd.data import prompt_token_ids, read_problems  # noqa: E402
from opd.grading import Grader  # noqa: E402
from opd.io import write_json, write_text  # noqa: E402
from opd.models import load_model, load_tokenizer, same_tokenizer  # noqa: E402
from opd.rollout import SamplingParams, make_backend  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--student", required=True, help="NAME=PATH")
    ap.add_argument("--teacher", required=True, help="NAME=PATH")
    ap.add_argument("--benchmark", required=True, help="problems JSONL")
    ap.add_argument("--settings", required=True, help="JSON: prefix_tokens, num_problems, n, temperature, top_p, "
                                                       "max_new_tokens, seed")
    ap.add_argument("--template", default="{problem}")
    add_chat_option(ap, "--chat", "the student")
    add_chat_option(ap, "--teacher-chat", "the teacher (its own rendering of each prompt)")
    ap.add_argument("--grading", default="{}")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--trust-remote-code", action="store_true", help="the student's own remote code")
    ap.add_argument("--teacher-trust-remote-code", action="store_true", help="the teacher's own remote code")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    ap.add_argument("--table", required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    s = json.loads(args.settings)
    (student_name, student_path), (teacher_name, teacher_path) = (x.split("=", 1) for x in (args.student, args.teacher))
    tok = load_tokenizer(student_path, args.trust_remote_code)
    teacher_tok = load_tokenizer(teacher_path, args.teacher_trust_remote_code)
    if not same_tokenizer(tok, teacher_tok):
        raise SystemExit(f"{teacher_name} and {student_name} have different tokenizers: the teacher cannot "
                         "continue the student's tokens")
    backends = [make_backend("hf", load_model(p, args.dtype, args.device, trust), tok, batch_size=args.batch_size,
                             progress=False)
                for p, trust in ((student_path, args.trust_remote_code), (teacher_path, args.teacher_trust_remote_code))]
    problems = read_problems(args.benchmark)[: s["num_problems"]]
    sampling = SamplingParams(s["n"], s["temperature"], s["top_p"], s["max_new_tokens"], s["seed"])
    with Grader(**json.loads(args.grading)) as grader:
        rows = continuation_study(*backends, tok, problems, prompt_token_ids(tok, problems, args.template, args.chat),
                                  prompt_token_ids(teacher_tok, problems, args.template, args.teacher_chat),
                                  s["prefix_tokens"], sampling, grader)
    write_json(args.out, {"student": student_name, "teacher": teacher_name, "settings": s, "rows": rows})

    def pct(x):
        return "-" if x is None else f"{100 * x:.1f}"

    table = [[str(r["prefix_tokens"]), str(r["prefixes"]), pct(r["student_accuracy"]), pct(r["teacher_accuracy"]),
              "-" if r["teacher_advantage"] is None else f"{100 * r['teacher_advantage']:+.1f}"] for r in rows]
    write_text(args.table, f"# Teacher continuation: {teacher_name} from {student_name}'s prefixes\n\n"
               + markdown_table(["prefix tokens", "prefixes", "student", "teacher", "teacher advantage"], table)
               + f"\nAccuracy (percent) of {s['n']} continuations per prefix of the student's own answer; the "
               "advantage is the teacher's minus the student's, in points.\n")
    print(Path(args.table).read_text())


if __name__ == "__main__":
    main()
