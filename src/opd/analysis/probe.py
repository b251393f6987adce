"""Teacher compatibility probe: score candidate teachers against a student before any
training, from the student's own rollouts on a sample of prompts.

At each state the student visits, the paper's token-level metrics compare the two
next-token distributions: top-k overlap ratio and mass, overlap-token advantage, the
entropy gap, and the teacher's log-probability lead on the student's tokens. A teacher
whose top-k agrees with the student's (high overlap, small entropy gap) is the kind that
OPD could use; one that disagrees at the start is the kind that failed in the paper.
The probe costs one rollout batch and one forward pass per teacher.
"""

from __future__ import annotations

import torch

from ..losses import Objective, metric_means, opd_loss
from ..models import hidden_and_head
from ..rollout import SamplingParams
from ..rollout.hf import HFBackend
from ..train.opd import pack


@torch.no_grad()
def student_rollouts(student, tok, prompt_ids: list[list[int]], sampling: SamplingParams, batch_size: int):
    student.eval()
    return HFBackend(student, tok, batch_size=batch_size, progress=False).generate(prompt_ids, sampling)


@torch.no_grad()
def teacher_scores(student, teacher, tok, prompt_ids: list[list[int]], rollouts, k: int,
                   micro_batch_size: int = 16, chunk_size: int = 64) -> dict[str, float]:
    """Means over every response position of the token-level metrics (top-k with this k)."""
    s_trunk, s_head = hidden_and_head(student)
    t_trunk, t_head = hidden_and_head(teacher)
    objective = Objective(kind="topk", k=k, metrics_k=k)
    n_tokens = sum(len(r.token_ids) for r in rollouts)
    sums: dict[str, float] = {}
    for start in range(0, len(rollouts), micro_batch_size):
        mb = rollouts[start:start + micro_batch_size]
        ids, mask, flat, targets = pack([prompt_ids[r.prompt_index] for r in mb], [r.token_ids for r in mb],
                                        tok.pad_token_id)
        dev = s_head.device
        ids, mask, flat, targets = ids.to(dev), mask.to(dev), flat.to(dev), targets.to(dev)
        h_s = s_trunk(input_ids=ids, attention_mask=mask).last_hidden_state
        h_t = t_trunk(input_ids=ids, attention_mask=mask).last_hidden_state
        out = opd_loss(h_s.reshape(-1, h_s.shape[-1])[flat], s_head, h_t.reshape(-1, h_t.shape[-1])[flat],
                       t_head, targets, objective, 1.0 / max(1, n_tokens), chunk_size)
        for key, value in out.metric_sums.items():
            sums[key] = sums.get(key, 0.0) + value
    scores = {**metric_means(sums), "positions": n_tokens}
    return scores


def rank(scores: dict[str, dict]) -> list[str]:
    """Most compatible first: the higher top-k overlap, then the smaller entropy gap.
    Teachers that cannot score the student's tokens (another tokenizer) come last."""
    usable = [t for t, s in scores.items() if s.get("overlap_ratio") is not None]
    usable.sort(key=lambda t: (-scores[t]["overlap_ratio"], scores[t]["entropy_gap"]))
    return usable + [t for t in scores if t not in usable]
