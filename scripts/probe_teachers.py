#!/usr/bin/env python
"""Teacher compatibility probe: rank candidate teachers for a student before training,
by the token-level metrics at the student's own rollouts (see opd.analysis.probe). Writes
a JSON (scores, ranking, each teacher's accuracy lead from the base evaluation) and a
markdown table."""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from opd.analysis.probe import student_rollouts, student_topk_mass, teacher_scores  # noqa: E402
from opd.analysis.verdicts import rank, verdict  # noqa: E402
from opd.analysis.tables import markdown_table, yes_no  # noqa: E402
from opd.chat import DEFAULT, add_chat_option, teacher_chats  # noqa: E402
from opd.data import prompt_token_ids, read_problems  # noqa: E402
from opd.io import read_json, write_json, write_text  # noqa: E402
from opd.models import load_model, load_tokenizer, same_tokenizer  # noqa: E402
from opd.rollout import SamplingParams  # noqa: E402

COLUMNS = (("overlap_ratio", "overlap ratio"), ("overlap_mass_student", "overlap mass (student)"),
           ("adv_intersection", "overlap-token adv."), ("entropy_gap", "entropy gap"),
           ("sampled_reward", "teacher log-prob lead"))
MASS_KS = (1, 4, 16, 64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--student", required=True, help="NAME=PATH")
    ap.add_argument("--teacher", action="append", required=True, help="NAME=PATH (repeatable)")
    ap.add_argument("--prompts", required=True)
    ap.add_argument("--settings", required=True,
                    help="JSON: num_prompts, n, temperature, max_new_tokens, k, seed, verdict")
    ap.add_argument("--template", default="{problem}")
    add_chat_option(ap, "--chat", "the student")
    ap.add_argument("--teacher-chat", action="append", default=[], metavar="NAME=MODE",
                    help="how a teacher is prompted where not at its chat template's default (repeatable)")
    ap.add_argument("--accuracy", action="append", default=[], metavar="MODEL:BENCHMARK:PATH",
                    help="base-evaluation metrics, for each teacher's accuracy lead")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--trust-remote-code", action="store_true", help="the student's own remote code")
    ap.add_argument("--trusted-teacher", action="append", default=[], metavar="NAME",
                    help="a teacher whose own config entry allows its remote code (repeatable)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    ap.add_argument("--table", required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    settings = json.loads(args.settings)
    try:
        chats = teacher_chats(args.teacher_chat)
    except ValueError as e:
        ap.error(str(e))
    stray = sorted(set(chats) - {item.split("=", 1)[0] for item in args.teacher})
    if stray:
        ap.error(f"--teacher-chat names no --teacher: {', '.join(stray)}")
    student_name, student_path = args.student.split("=", 1)
    trust = args.trust_remote_code
    tok = load_tokenizer(student_path, trust)
    student = load_model(student_path, args.dtype, args.device, trust)
    problems = read_problems(args.prompts)[: settings["num_prompts"]]
    prompt_ids = prompt_token_ids(tok, problems, args.template, args.chat)
    rollouts = student_rollouts(student, tok, prompt_ids, SamplingParams(
        settings["n"], settings["temperature"], 1.0, settings["max_new_tokens"], settings["seed"]), batch_size=64)
    mass = student_topk_mass(student, tok, prompt_ids, rollouts, MASS_KS, temperature=settings["temperature"])
    scores = {}
    for item in args.teacher:
        name, path = item.split("=", 1)
        teacher_trust = name in args.trusted_teacher
        teacher_tok = load_tokenizer(path, teacher_trust)
        if not same_tokenizer(tok, teacher_tok):
            scores[name] = {"error": "different tokenizer: the teacher cannot score the student's tokens"}
            continue
        own = prompt_token_ids(teacher_tok, problems, args.template, chats.get(name, DEFAULT))
        teacher = load_model(path, args.dtype, args.device, teacher_trust)
        scores[name] = teacher_scores(student, teacher, tok, prompt_ids, rollouts, settings["k"],
                                      temperature=settings["temperature"],
                                      teacher_prompt_ids=None if own == prompt_ids else own)
        del teacher
    accuracy = {}
    for item in args.accuracy:
        model, benchmark, path = item.split(":", 2)
        m = read_json(path)
        accuracy.setdefault(benchmark, {})[model] = m[f"avg@{m['samples_per_problem']}"]
    leads = {t: {b: acc[t] - acc[student_name] for b, acc in accuracy.items() if t in acc and student_name in acc}
             for t in scores}
    judge = {**settings["verdict"], "benchmarks": settings["verdict"]["benchmarks"] or sorted(accuracy)}
    verdicts = {t: verdict(scores[t], {b: v for b, v in leads[t].items() if b in judge["benchmarks"]},
                           judge["min_overlap_ratio"], judge["max_entropy_gap"], judge["min_lead"]) for t in scores}
    ranking = rank(scores, verdicts)
    write_json(args.out, {"student": student_name, "settings": settings, "ranking": ranking, "scores": scores,
                          "accuracy_lead": leads, "verdicts": verdicts, "verdict_settings": judge,
                          "student_topk_mass": mass, "vocabulary": len(tok)})
    benchmarks = sorted(accuracy)
    rows = [[str(i + 1), t, *(f"{scores[t][key]:.3f}" if scores[t].get(key) is not None else "-" for key, _ in COLUMNS),
             *(f"{100 * leads[t][b]:+.1f}" if b in leads[t] else "-" for b in benchmarks),
             yes_no(verdicts[t]["compatible"]), yes_no(verdicts[t]["to_teach"]), verdicts[t]["predicted"]]
            for i, t in enumerate(ranking)]
    header = ["rank", "teacher", *(label for _, label in COLUMNS), *(f"lead on {b}" for b in benchmarks),
              "compatible", "something to teach", "predicted"]
    write_text(args.table, f"# Teacher compatibility probe: student {student_name}\n\n"
               + markdown_table(header, rows)
               + f"\nMetrics (top-{settings['k']}) at {len(rollouts)} student rollouts on {len(problems)} prompts, "
               "before any training. Lead: the teacher's base accuracy minus the student's, in points. "
               f"Compatible: overlap ratio >= {judge['min_overlap_ratio']} and |entropy gap| <= "
               f"{judge['max_entropy_gap']} nats; something to teach: a lead of at least {100 * judge['min_lead']:g} "
               f"points on {', '.join(judge['benchmarks']) or 'a benchmark'}. Ranked: predicted to transfer first, "
               "then by overlap ratio, then entropy gap.\n"
               + f"\nThe student's own top-k mass at those positions ({len(tok)}-token vocabulary): "
               + ", ".join(f"top-{k} {100 * m:.1f}%" for k, m in mass.items()) + ".\n")
    print(Path(args.table).read_text())


if __name__ == "__main__":
    main()
