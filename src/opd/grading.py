"""Grade model answers against gold answers with math-verify, under a hard time limit.

math-verify's own timeouts use ``SIGALRM``, which cannot interrupt a long computation
inside C code (``\\boxed{9^{9^{9^{9}}}}`` makes sympy build a huge integer). So answers
that are not an exact string match are checked in a worker process that is killed and
restarted when it overruns: one bad answer costs at most ``timeout_s`` and is marked
``timeout``, and grading goes on.
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import time
from dataclasses import dataclass

STARTUP_TIMEOUT_S = 120.0
MAX_TIMEOUT_S = 3600.0  # no answer needs an hour


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


def _serve(math_timeout: int) -> None:
    """The worker: one JSON ``[gold, answer]`` per line in, one ``[status, value]`` line out."""
    replies, sys.stdout = sys.stdout, sys.stderr  # a stray print must not corrupt a reply
    from math_verify import parse, verify

    # math-verify builds its parsers on the first call (a few hundred ms): not an answer's cost
    verify(parse("\\boxed{1}"), parse("\\boxed{\\frac{2}{2}}"))
    print('"ready"', file=replies, flush=True)
    for line in sys.stdin:
        gold, answer = json.loads(line)
        try:
            g = parse(f"\\boxed{{{gold}}}", parsing_timeout=math_timeout)
            p = parse(f"\\boxed{{{answer}}}", parsing_timeout=math_timeout)
            reply = ["ok", bool(g and p and verify(g, p, timeout_seconds=math_timeout))]
        except Exception as e:  # math-verify raises on some inputs; a grade must come back
            reply = ["error", repr(e)[:200]]
        print(json.dumps(reply), file=replies, flush=True)


class Grader:
    """Use as a context manager; ``grade(response, gold)`` returns a :class:`Grade`.

    The worker is this file run as a script, not a ``multiprocessing`` child: a spawned
    child re-imports the caller's main module (torch, transformers: seconds of CPU) on
    every restart, and a forked one would inherit torch's threads."""

    def __init__(self, timeout_s: float = 5.0, max_answer_chars: int = 1000):
        if not 0 < timeout_s <= MAX_TIMEOUT_S:
            raise ValueError(f"grading timeout_s must be in (0, {MAX_TIMEOUT_S:g}], got {timeout_s}")
        self.timeout_s = timeout_s
        self.max_answer_chars = max_answer_chars
        self._proc: subprocess.Popen | None = None
        self._pending = b""

    def __enter__(self) -> "Grader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self) -> None:
        math_timeout = max(1, int(self.timeout_s))
        # -P: this file's folder (opd/io.py, opd/config.py ...) must not shadow the standard library
        self._proc = subprocess.Popen([sys.executable, "-P", __file__, str(math_timeout)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        self._pending = b""
        # imports are not charged to the first answer's time limit
        if self._reply(STARTUP_TIMEOUT_S) != "ready":
            self._kill()
            raise RuntimeError("the grading worker did not start")

    def _reply(self, timeout: float):
        """The worker's next line, decoded; None if none came within ``timeout`` or it died."""
        deadline = time.monotonic() + timeout
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:  # EOF: the worker died (e.g. out of memory)
                return None
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return json.loads(line)

    def close(self) -> None:
        """Stop the worker; safe to call at any point, also when it never started."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()  # end of input: the worker returns
            proc.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        proc.stdout.close()

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                pipe.close()

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
        if self._proc is None or self._proc.poll() is not None:
            self._start()
        try:
            request = memoryview((json.dumps([gold, answer]) + "\n").encode())
            while request:  # an unbuffered pipe may take a long answer in parts
                request = request[self._proc.stdin.write(request):]
        except OSError:  # the worker died since its last answer
            self._kill()
            return Grade(False, "error", answer[:100])
        reply = self._reply(max(0.0, self.timeout_s - spent))
        if reply is None:  # over the limit, or the worker died: restart it next time
            timed_out = self._proc.poll() is None
            self._kill()
            return Grade(False, "timeout" if timed_out else "error", answer[:100])
        status, value = reply
        if status == "error":
            return Grade(False, "error", answer[:100])
        return Grade(value, "ok", answer[:100])


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
