"""Grade model answers against gold answers with math-verify, under a hard time limit.

math-verify's own timeouts use ``SIGALRM``, which cannot interrupt a long computation
inside C code (``\\boxed{9^{9^{9^{9}}}}`` makes sympy build a huge integer). So answers
that are not an exact string match are checked in a worker process that is killed and
restarted when it overruns: one bad answer costs at most ``timeout_s`` and is marked
``timeout``, and grading goes on.
"""

from __future__ import annotations

import multiprocessing as mp
import re
import time
from dataclasses import dataclass

STARTUP_TIMEOUT_S = 120.0
MAX_TIMEOUT_S = 3600.0  # beyond it the pipe's poll overflows; no answer needs an hour


_BRACES = re.compile(r"\\boxed\{|[{}]")


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` whose braces balance, or None.

    One pass over the braces with a stack of open ones: linear in the text, so a
    degenerate response (``\\boxed{`` repeated for 30K tokens) costs milliseconds.
    """
    stack: list[int | None] = []  # for each open brace: where its boxed content starts, or None
    best = None
    for m in _BRACES.finditer(text):
        if m.group() == "}":
            if stack and (start := stack.pop()) is not None and (best is None or start > best[0]):
                best = (start, m.start())
        else:
            stack.append(m.end() if m.group() != "{" else None)
    return None if best is None else text[best[0]:best[1]].strip()


_INTEGER = re.compile(r"[+-]?\d{1,100}")


def _normalise(answer: str) -> str:
    return "".join(answer.split()).rstrip(".").replace("\\!", "")


@dataclass(frozen=True)
class Grade:
    correct: bool
    status: str  # ok | no_answer | too_long | timeout | error
    answer: str | None


def _worker(conn, math_timeout: int) -> None:
    from math_verify import parse, verify

    # math-verify builds its parsers on the first call (a few hundred ms): not an answer's cost
    verify(parse("\\boxed{1}"), parse("\\boxed{\\frac{2}{2}}"))
    conn.send("ready")
    while True:
        msg = conn.recv()
        if msg is None:
            return
        gold, answer = msg
        try:
            g = parse(f"\\boxed{{{gold}}}", parsing_timeout=math_timeout)
            p = parse(f"\\boxed{{{answer}}}", parsing_timeout=math_timeout)
            conn.send(("ok", bool(g and p and verify(g, p, timeout_seconds=math_timeout))))
        except Exception as e:  # math-verify raises on some inputs; a grade must come back
            conn.send(("error", repr(e)[:200]))


class Grader:
    """Use as a context manager; ``grade(response, gold)`` returns a :class:`Grade`."""

    def __init__(self, timeout_s: float = 5.0, max_answer_chars: int = 1000):
        if not 0 < timeout_s <= MAX_TIMEOUT_S:
            raise ValueError(f"grading timeout_s must be in (0, {MAX_TIMEOUT_S:g}], got {timeout_s}")
        self.timeout_s = timeout_s
        self.max_answer_chars = max_answer_chars
        self._ctx = mp.get_context("spawn")  # never fork a process that holds torch threads
        self._proc = None
        self._conn = None

    def __enter__(self) -> "Grader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self) -> None:
        parent, child = self._ctx.Pipe()
        math_timeout = max(1, int(self.timeout_s))
        self._proc = self._ctx.Process(target=_worker, args=(child, math_timeout), daemon=True)
        self._proc.start()
        self._conn = parent
        # imports are not charged to the first answer's time limit
        try:
            ready = parent.poll(STARTUP_TIMEOUT_S) and parent.recv() == "ready"
        except EOFError:
            ready = False
        if not ready:
            self._kill()
            raise RuntimeError("the grading worker did not start")

    def close(self) -> None:
        """Stop the worker; safe to call at any point, also when it never started."""
        proc, self._proc = self._proc, None
        if proc is None or proc.pid is None:  # not started (or start() itself failed)
            return
        try:
            self._conn.send(None)
            proc.join(timeout=2)
        except (BrokenPipeError, OSError):
            pass
        if proc.is_alive():
            proc.kill()
            proc.join()

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.pid is not None:
            proc.kill()
            proc.join()

    def grade(self, response: str, gold: str) -> Grade:
        """The extraction is charged to the same time limit as the check; starting a
        worker (after a timeout killed the last one) is not."""
        t0 = time.monotonic()
        answer = extract_boxed(response)
        if answer is None:
            return Grade(False, "no_answer", None)
        if len(answer) > self.max_answer_chars:
            return Grade(False, "too_long", answer[:100])
        a, g = _normalise(answer), _normalise(gold)
        if a == g:
            return Grade(True, "ok", answer)
        if _INTEGER.fullmatch(a) and _INTEGER.fullmatch(g):  # no CAS needed for two integers
            return Grade(int(a) == int(g), "ok", answer)
        spent = time.monotonic() - t0
        if self._proc is None or not self._proc.is_alive():
            self._start()
        self._conn.send((gold, answer))
        if not self._conn.poll(max(0.0, self.timeout_s - spent)):
            self._kill()
            return Grade(False, "timeout", answer[:100])
        try:
            status, value = self._conn.recv()
        except EOFError:  # the worker died (e.g. out of memory): restart it next time
            self._kill()
            return Grade(False, "error", answer[:100])
        if status == "error":
            return Grade(False, "error", answer[:100])
        return Grade(value, "ok", answer[:100])
