"""Teacher compatibility probe: score candidate teachers against a student before any
training, from the student's own rollouts on a sample of prompts.

At each state the student visits, the paper's token-level metrics compare the two
next-token distributions: top-k overlap ratio and mass, overlap-token advantage, the
entropy gap, and the teacher's log-probability lead on the student's tokens. A teacher
whose top-k agrees with the student's (high overlap, small entropy gap) is the kind that
OPD could use; one that disagrees at the start is the kind that failed in the paper.
The probe costs one rollout batch and one forward pass per teacher. A teacher reads the
student's responses after its own rendering of each prompt (its chat mode), as in OPD.
"""

from __future__ import annotations

import itertools

import torch

from ..losses import opd_loss
from ..objective import Objective, metric_means
from ..models import hidden_and_head
from ..rollout import SamplingParams
from ..rollout.hf import HFBackend
from ..batching import pack


@torch.no_grad()
def student_rollouts(student, tok, prompt_ids: list[list[int]], sampling: SamplingParams, batch_size: int):
    student.eval()
    return HFBackend(student, tok, batch_size=batch_size, progress=False).generate(prompt_ids, sampling)


def _packed(tok, prompt_ids: list[list[int]], rollouts, micro_batch_size: int, device):
    """The rollouts in micro-batches, each as ``pack`` lays it out, on ``device``."""
    for start in range(0, len(rollouts), micro_batch_size):
        mb = rollouts[start:start + micro_batch_size]
        yield tuple(t.to(device) for t in pack([prompt_ids[r.prompt_index] for r in mb], [r.token_ids for r in mb],
                                               tok.pad_token_id))


@torch.no_grad()
def teacher_scores(student, teacher, tok, prompt_ids: list[list[int]], rollouts, k: int,
                   micro_batch_size: int = 16, chunk_size: int = 64, temperature: float = 1.0,
                   teacher_prompt_ids: list[list[int]] | None = None) -> dict[str, float]:
    """Means over every response position of the token-level metrics (top-k with this k), the
    student scored at the ``temperature`` its rollouts were sampled at. The teacher reads each
    response after ``teacher_prompt_ids`` (its own rendering of the prompts) where given."""
    s_trunk, s_head = hidden_and_head(student)
    t_trunk, t_head = hidden_and_head(teacher)
    objective = Objective(kind="topk", k=k, metrics_k=k, student_temperature=temperature)
    n_tokens = sum(len(r.token_ids) for r in rollouts)
    sums: dict[str, float] = {}
    own = (itertools.repeat(None) if teacher_prompt_ids is None
           else _packed(tok, teacher_prompt_ids, rollouts, micro_batch_size, s_head.device))
    for (ids, mask, flat, targets), teacher_in in zip(_packed(tok, prompt_ids, rollouts, micro_batch_size,
                                                              s_head.device), own):
        t_ids, t_mask, t_flat, _ = teacher_in or (ids, mask, flat, targets)
        h_s = s_trunk(input_ids=ids, attention_mask=mask).last_hidden_state
        h_t = t_trunk(input_ids=t_ids, attention_mask=t_mask).last_hidden_state
        out = opd_loss(h_s.reshape(-1, h_s.shape[-1])[flat], s_head, h_t.reshape(-1, h_t.shape[-1])[t_flat],
                       t_head, targets, objective, 1.0 / max(1, n_tokens), chunk_size)
        for key, value in out.metric_sums.items():
            sums[key] = sums.get(key, 0.0) + value
    scores = {**metric_means(sums), "positions": n_tokens}
    return scores


def topk_mass(logits: torch.Tensor, ks: tuple[int, ...]) -> dict[int, torch.Tensor]:
    """Per position (rows of ``logits``), the probability held by the k likeliest tokens: how
    much of the distribution a top-k objective sees (97-99% at k=16 in the paper)."""
    probs = torch.softmax(logits.float(), dim=-1)
    top = probs.topk(min(max(ks), probs.shape[-1]), dim=-1).values.cumsum(-1)
    return {k: top[:, min(k, top.shape[-1]) - 1] for k in ks}


@torch.no_grad()
def student_topk_mass(student, tok, prompt_ids: list[list[int]], rollouts, ks: tuple[int, ...],
                      micro_batch_size: int = 16, chunk_size: int = 256, temperature: float = 1.0) -> dict[int, float]:
    """The mean over every response position of the student's own top-k mass (at the
    ``temperature`` it sampled at). Logits are
    made ``chunk_size`` positions at a time: at 7K-token responses and a 152K vocabulary a
    micro-batch's would not fit."""
    trunk, head = hidden_and_head(student)
    sums, n = dict.fromkeys(ks, 0.0), 0
    for ids, mask, flat, _ in _packed(tok, prompt_ids, rollouts, micro_batch_size, head.device):
        h = trunk(input_ids=ids, attention_mask=mask).last_hidden_state
        h = h.reshape(-1, h.shape[-1])[flat]
        for chunk in h.split(chunk_size):
            for k, mass in topk_mass(chunk @ head.T / temperature, ks).items():
                sums[k] += mass.sum().item()
        n += len(flat)
    return {k: v / max(1, n) for k, v in sums.items()}
