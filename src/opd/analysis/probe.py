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


def _packed(tok, prompt_ids: list[list[int]], rollouts, micro_batch_size: int, device):
    """The rollouts in micro-batches, each as ``pack`` lays it out, on ``device``."""
    for start in range(0, len(rollouts), micro_batch_size):
        mb = rollouts[start:start + micro_batch_size]
        yield (t.to(device) for t in pack([prompt_ids[r.prompt_index] for r in mb], [r.token_ids for r in mb],
                                          tok.pad_token_id))


@torch.no_grad()
def teacher_scores(student, teacher, tok, prompt_ids: list[list[int]], rollouts, k: int,
                   micro_batch_size: int = 16, chunk_size: int = 64) -> dict[str, float]:
    """Means over every response position of the token-level metrics (top-k with this k)."""
    s_trunk, s_head = hidden_and_head(student)
    t_trunk, t_head = hidden_and_head(teacher)
    objective = Objective(kind="topk", k=k, metrics_k=k)
    n_tokens = sum(len(r.token_ids) for r in rollouts)
    sums: dict[str, float] = {}
    for ids, mask, flat, targets in _packed(tok, prompt_ids, rollouts, micro_batch_size, s_head.device):
        h_s = s_trunk(input_ids=ids, attention_mask=mask).last_hidden_state
        h_t = t_trunk(input_ids=ids, attention_mask=mask).last_hidden_state
        out = opd_loss(h_s.reshape(-1, h_s.shape[-1])[flat], s_head, h_t.reshape(-1, h_t.shape[-1])[flat],
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
                      micro_batch_size: int = 16, chunk_size: int = 256) -> dict[int, float]:
    """The mean over every response position of the student's own top-k mass. Logits are
    made ``chunk_size`` positions at a time: at 7K-token responses and a 152K vocabulary a
    micro-batch's would not fit."""
    trunk, head = hidden_and_head(student)
    sums, n = dict.fromkeys(ks, 0.0), 0
    for ids, mask, flat, _ in _packed(tok, prompt_ids, rollouts, micro_batch_size, head.device):
        h = trunk(input_ids=ids, attention_mask=mask).last_hidden_state
        h = h.reshape(-1, h.shape[-1])[flat]
        for chunk in h.split(chunk_size):
            for k, mass in topk_mass(chunk @ head.T, ks).items():
                sums[k] += mass.sum().item()
        n += len(flat)
    return {k: v / max(1, n) for k, v in sums.items()}


# The paper's two conditions for OPD to work, and what a teacher that fails one of them did
PREDICTIONS = {
    (True, True): "transfers",            # compatible thinking pattern, something new to teach
    (True, False): "nothing to learn",    # 3.2: a same-pipeline teacher with a higher score
    (False, True): "fails: cold start first",  # 3.1 / 5.1: the capability in another pattern
    (False, False): "fails",
}


def verdict(scores: dict, leads: dict[str, float], min_overlap_ratio: float, max_entropy_gap: float,
            min_lead: float) -> dict:
    """Judge one teacher on each condition. Compatible: at the student's own states the
    teacher's top-k holds at least ``min_overlap_ratio`` of the student's top-k and the
    entropies differ by at most ``max_entropy_gap`` nats. Something to teach: the teacher
    leads the student by at least ``min_lead`` (accuracy, 0-1) on a target benchmark."""
    if scores.get("overlap_ratio") is None:
        return {"compatible": False, "to_teach": None, "predicted": "unusable: another tokenizer"}
    compatible = scores["overlap_ratio"] >= min_overlap_ratio and abs(scores["entropy_gap"]) <= max_entropy_gap
    to_teach = any(lead >= min_lead for lead in leads.values())
    return {"compatible": compatible, "to_teach": to_teach, "predicted": PREDICTIONS[(compatible, to_teach)]}


def rank(scores: dict[str, dict], verdicts: dict[str, dict] | None = None) -> list[str]:
    """Predicted to transfer first, then by the higher top-k overlap, then the smaller
    entropy gap. Teachers that cannot score the student's tokens (another tokenizer)
    come last."""
    verdicts = verdicts or {}
    usable = [t for t, s in scores.items() if s.get("overlap_ratio") is not None]
    usable.sort(key=lambda t: (verdicts.get(t, {}).get("predicted") != "transfers",
                               -scores[t]["overlap_ratio"], scores[t]["entropy_gap"]))
    return usable + [t for t in scores if t not in usable]


def observed_outcome(benchmarks: dict[str, dict], targets: list[str], min_lead: float) -> str:
    """What OPD from a teacher did, from its experiment's summary: ``transfers`` when the
    student gained at least ``min_lead`` on a target benchmark where the teacher led it by
    as much, ``collapse`` when it lost that much on any benchmark, else ``nothing learnt``."""
    gains = [m["acc_after"] - m["acc_before"] for b, m in benchmarks.items()
             if b in targets and m["acc_teacher"] - m["acc_before"] >= min_lead]
    if any(g >= min_lead for g in gains):
        return "transfers"
    if any(m["acc_before"] - m["acc_after"] >= min_lead for m in benchmarks.values()):
        return "collapse"
    return "nothing learnt"


def prediction_holds(predicted: str, outcome: str) -> bool:
    """A teacher predicted to transfer transferred; one predicted not to, did not."""
    return (predicted == "transfers") == (outcome == "transfers")


def _same_prompts(experiment: dict, settings: dict) -> bool:
    """The experiment samples the probe's prompts in its template (a side that does not
    record one of them is not held to it)."""
    return all(experiment[k] == settings[k] for k in ("prompts", "prompt_template") if k in experiment and k in settings)


def check_probe(probe: dict, experiments: dict[str, dict]) -> dict[str, dict]:
    """Each probed teacher's predicted outcome beside what OPD from it did: the
    experiments that distil the probe's student from that teacher on the probe's prompts in
    its template (their first seed's run; the mean over seeds where there are several)."""
    min_lead, targets = probe["verdict_settings"]["min_lead"], probe["verdict_settings"]["benchmarks"]
    settings = probe.get("settings", {})
    out = {}
    for teacher, v in probe["verdicts"].items():
        runs = {name: e for name, e in experiments.items() if not e.get("seed_of")
                and e["student"] == probe["student"] and e["teacher"] == teacher and _same_prompts(e, settings)}
        observed = {}
        for name, e in runs.items():
            over = (e.get("seeds") or {}).get("benchmarks", {})
            benchmarks = {}
            for b, m in e["benchmarks"].items():
                mean = (over.get(b) or {}).get("acc_after")
                benchmarks[b] = {**m, "acc_after": mean["mean"]} if mean else m
            outcome = observed_outcome(benchmarks, targets, min_lead)
            observed[name] = {"outcome": outcome, "holds": prediction_holds(v["predicted"], outcome)}
        out[teacher] = {**v, "experiments": observed}
    return out
