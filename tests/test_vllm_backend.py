"""The vLLM backend without vLLM: importing the project never needs it, asking for it
says how to get it, and its output conversion keeps ids, finish reasons and logprobs."""

import importlib.util
import subprocess
import sys
from types import SimpleNamespace

import pytest

from opd.rollout import make_backend
from opd.rollout.vllm import to_rollouts


def test_nothing_imports_vllm():
    code = ("import sys; import opd.rollout, opd.rollout.vllm, opd.train.opd, opd.evaluation; "
            "print('vllm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed")
def test_asking_for_vllm_without_it_says_how_to_install():
    with pytest.raises(ImportError, match=r"opd-workflow\[gpu\]"):
        make_backend("vllm", "some/model")


def test_request_outputs_become_rollouts_in_prompt_order():
    def completion(ids, reason, lps):
        return SimpleNamespace(token_ids=ids, finish_reason=reason,
                               logprobs=[{t: SimpleNamespace(logprob=lp)} for t, lp in zip(ids, lps)])

    outputs = [SimpleNamespace(outputs=[completion([5, 2], "stop", [-0.1, -0.2]),
                                        completion([7, 7, 7], "length", [-1.0, -1.5, -2.0])]),
               SimpleNamespace(outputs=[completion([2], "stop", [-0.3])])]
    rollouts = to_rollouts(outputs, logprobs=True)
    assert [(r.prompt_index, r.sample_index, r.token_ids, r.finish_reason) for r in rollouts] == [
        (0, 0, [5, 2], "stop"), (0, 1, [7, 7, 7], "length"), (1, 0, [2], "stop")]
    assert rollouts[1].logprobs == [-1.0, -1.5, -2.0]
    assert to_rollouts(outputs, logprobs=False)[0].logprobs is None
