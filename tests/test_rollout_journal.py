"""The cold start's teacher rollouts in journalled chunks: a killed run's rerun samples
only what is missing, and the final file equals an uninterrupted run's, however many
workers shared the chunks."""

import json
import signal
import subprocess
import sys

from opd.data import toy_problems
from opd.io import write_jsonl
from opd.rollout import Rollout
from opd.rollout.journal import Journal, chunk_seed, chunks, collected
from workflow_utils import ROOT, job_env

SCRIPT = ROOT / "scripts/teacher_rollouts.py"


def test_chunk_seeds_keep_the_run_seed_for_the_first_chunk_and_differ_after():
    assert chunk_seed(7, 0) == 7
    seeds = {chunk_seed(7, c) for c in range(1, 200)}
    assert len(seeds) == 199 and all(0 <= s < 2**31 for s in seeds) and chunk_seed(8, 1) != chunk_seed(7, 1)
    assert [list(r) for r in chunks(5, 2)] == [[0, 1], [2, 3], [4]]


def test_a_line_cut_short_is_dropped_and_other_settings_start_afresh(tmp_path):
    j = Journal(tmp_path, {"seed": 0})
    j.record(0, [Rollout(0, 0, [1, 2], "stop")])
    j.record(1, [Rollout(1, 0, [3], "length")])
    with open(j.path, "a") as f:
        f.write('{"chunk": 2, "rollouts": [{"prompt_ind')  # killed mid-write
    again = Journal(tmp_path, {"seed": 0})
    assert sorted(again.done) == [0, 1] and again.done[1][0].token_ids == [3]
    again.record(2, [Rollout(2, 0, [4], "stop")])
    assert [r.prompt_index for r in collected(tmp_path, {"seed": 0}, 3, 1)] == [0, 1, 2]
    assert Journal(tmp_path, {"seed": 1}).done == {}  # another seed: nothing reused


def sampled(work) -> list[tuple]:
    """Every rollout the journals hold, in prompt order."""
    fingerprint = json.loads((work / "worker0.jsonl").read_text().splitlines()[0])["fingerprint"]
    return [(r.prompt_index, r.token_ids, r.finish_reason) for r in collected(work, fingerprint, 30, 3)]


# The script itself, run so that it SIGKILLs itself as soon as its journal holds this many
# chunks: a kill at a known point of the run, however fast the machine samples (a test that
# polled the journal from outside saw a fast machine finish all 10 chunks before its kill).
KILLED_AFTER = """
import os, runpy, signal, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(sys.argv[1])), os.pardir, "src"))  # the script's own
from opd.rollout import journal
record = journal.Journal.record
def record_then_die(self, chunk, rollouts):
    record(self, chunk, rollouts)
    if len(self.done) >= int(os.environ["KILL_AFTER_CHUNKS"]):
        os.kill(os.getpid(), signal.SIGKILL)
journal.Journal.record = record_then_die
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run(tmp_path, teacher, prompts, name, *extra, kill_after_chunks=None):
    cmd = [sys.executable, str(SCRIPT), "--teacher", str(teacher), "--prompts", str(prompts), "--chat", "bare",
           "--sampling", json.dumps({"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 12, "seed": 3}),
           "--batch-size", "4", "--chunk-size", "3", "--device", "cpu", "--work-dir", str(tmp_path / name / "work"),
           "--out", str(tmp_path / name / "rollouts.jsonl"), "--report", str(tmp_path / name / "report.json"), *extra]
    env = job_env()
    if kill_after_chunks is not None:
        cmd = [sys.executable, "-c", KILLED_AFTER, *cmd[1:]]
        env["KILL_AFTER_CHUNKS"] = str(kill_after_chunks)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if kill_after_chunks is not None:
        assert done.returncode == -signal.SIGKILL, done.stdout[-2000:] + done.stderr[-3000:]
    else:
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def test_a_killed_run_resumes_and_ends_as_an_uninterrupted_run_on_one_or_two_workers(tmp_path, tiny_model_dir):
    prompts = tmp_path / "prompts.jsonl"
    write_jsonl(prompts, toy_problems(4, 30, 1, 3, "p"))  # 30 prompts, 10 chunks of 3
    run(tmp_path, tiny_model_dir, prompts, "plain")
    plain = (tmp_path / "plain/rollouts.jsonl").read_text(), sampled(tmp_path / "plain/work")
    assert len(plain[1]) == 30  # (a tiny model boxes no answer: the filter keeps none of them)

    run(tmp_path, tiny_model_dir, prompts, "killed", kill_after_chunks=3)
    journal = tmp_path / "killed/work/worker0.jsonl"
    with open(journal, "a") as f:
        f.write('{"chunk": 3, "rollouts": [{"prompt_ind')  # as if the kill had cut a line short
    done_before = 3
    assert not (tmp_path / "killed/rollouts.jsonl").exists()
    rerun = run(tmp_path, tiny_model_dir, prompts, "killed")
    assert rerun.stdout.count("rollouts\n") == 10 - done_before  # only the missing chunks sampled
    assert ((tmp_path / "killed/rollouts.jsonl").read_text(), sampled(tmp_path / "killed/work")) == plain

    run(tmp_path, tiny_model_dir, prompts, "two", "--workers", "2")
    assert sorted(p.name for p in (tmp_path / "two/work").iterdir()) == ["worker0.jsonl", "worker1.jsonl"]
    assert ((tmp_path / "two/rollouts.jsonl").read_text(), sampled(tmp_path / "two/work")) == plain
