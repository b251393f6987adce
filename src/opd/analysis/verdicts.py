"""The probe's verdicts on teachers, and what OPD from each then did: plain functions of
the probe's scores and the study's summary, without torch, so that the tables job (whose
environment has no torch) can check the probe's predictions.
"""

from __future__ import annotations


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
