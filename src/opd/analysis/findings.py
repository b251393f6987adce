"""The paper's findings judged on one run of the study: for each, the figures this run gives
(mean ± sd over the seeds run), the rule that decides it, and the verdict.

The config's ``findings`` names the experiments that play each part (which run should
transfer, which should not, ...); the rules are plain functions of ``results/summary.json``,
without torch, so the tables job (whose environment has none) applies them.
docs/findings.md states each rule and why.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from .seed_stats import SD_MULTIPLE, Stat, Undecided, apart, one, pts, too_few, transfers

HOLDS, FAILS, TOO_FEW_SEEDS, NOT_RUN, UNDECIDED = "holds", "fails", "too few seeds", "not run", "undecided"
# the keys of a finding's declaration that name experiments (``pairs``: {aligned, misaligned} each)
RUN_ROLES = ("works", "fails", "same_pipeline", "to_base", "to_larger", "without", "with", "runs", "pairs",
             "sampled", "topk", "top1")
PAIR_ROLES = ("aligned", "misaligned")


class Study:
    """Lookups into results/summary.json: per-seed accuracies and metrics of an experiment."""

    def __init__(self, summary: dict, benchmarks: list[str]):
        self.summary, self.benchmarks = summary, benchmarks

    def experiment(self, name: str) -> dict:
        return self.summary["experiments"][name]

    def _benchmarks(self, name: str) -> list[str]:
        return self.benchmarks or list(self.experiment(name)["benchmarks"])

    def _fixed(self, name: str, key: str, every: bool) -> float:
        e = self.experiment(name)
        chosen = list(e["benchmarks"]) if every else self._benchmarks(name)
        return statistics.fmean(e["benchmarks"][b][key] for b in chosen)

    def before(self, name: str, every: bool = False) -> float:
        """The student's accuracy before OPD (mean over the benchmarks; ``every``: all the run's)."""
        return self._fixed(name, "acc_before", every)

    def teacher(self, name: str, every: bool = False) -> float:
        return self._fixed(name, "acc_teacher", every)

    def after(self, name: str) -> Stat:
        """Accuracy after OPD per seed, the mean over the benchmarks."""
        e = self.experiment(name)
        over = (e.get("seeds") or {}).get("benchmarks") or {}
        per_b = {b: over[b]["acc_after"]["per_seed"] if b in over else {"-": e["benchmarks"][b]["acc_after"]}
                 for b in self._benchmarks(name)}
        seeds = next(iter(per_b.values()))
        return Stat(name, "after", {s: statistics.fmean(v[s] for v in per_b.values()) for s in seeds})

    def gain(self, name: str) -> Stat:
        """After minus before, per seed."""
        before = self.before(name)
        return Stat(name, "gain", {s: v - before for s, v in self.after(name).per_seed.items()}, "gain")

    def metric(self, name: str, key: str, label: str) -> Stat:
        """A token-level metric of the training log (``overlap_ratio_last``...), per seed."""
        e = self.experiment(name)
        over = (e.get("seeds") or {}).get(key)
        if over:
            return Stat(name, label, over["per_seed"], "ratio")
        if e.get(key) is None:
            raise Undecided(f"{name} logged no {key}")
        return one(name, label, e[key], "ratio")

    def auroc(self, name: str) -> Stat:
        """The per-rollout mean reward's AUROC for correctness, per seed (each seed's own run)."""
        e = self.experiment(name)
        analysis = self.summary.get("analyses", {}).get("rollout_auroc", {})
        values = {}
        for seed, run in (e.get("seed_runs") or {"-": name}).items():
            value = (analysis.get(run) or {}).get("auroc_mean_reward")
            if value is None:
                raise Undecided(f"{run} has no AUROC (its rollouts were all right or all wrong, or none was logged)")
            values[seed] = value
        return Stat(name, "AUROC", values, "ratio")


# --- the rules: each takes the declaration and the study, returns (figures, verdict, why) ------


def rule_thinking_pattern(d: dict, s: Study):
    works, fails = s.gain(d["works"]), s.gain(d["fails"])
    figures = [works, fails]
    if why := too_few(works, fails):
        return figures, TOO_FEW_SEEDS, why
    if not transfers(works, d["min_gain"]):
        return figures, FAILS, f"{works.run} does not transfer"
    if transfers(fails, d["min_gain"]):
        return figures, FAILS, f"{fails.run} transfers too"
    return figures, HOLDS, ""


def rule_new_knowledge(d: dict, s: Study):
    works, same = s.gain(d["works"]), s.gain(d["same_pipeline"])
    lead = one(d["same_pipeline"], "teacher's lead before OPD, all benchmarks",
               s.teacher(d["same_pipeline"], every=True) - s.before(d["same_pipeline"], every=True), "gain")
    figures = [works, lead, same]
    if why := too_few(works, same):
        return figures, TOO_FEW_SEEDS, why
    if lead.mean <= 0:
        return figures, FAILS, f"{same.run}'s teacher does not score above its student"
    if transfers(same, d["min_gain"]):
        return figures, FAILS, f"{same.run} transfers"
    if not transfers(works, d["min_gain"]):
        return figures, FAILS, f"{works.run} does not transfer"
    return figures, HOLDS, ""


def rule_reverse(d: dict, s: Study):
    to_base, to_larger = d["to_base"], d["to_larger"]
    pre = one(s.experiment(to_base)["teacher"], "pre-RL checkpoint", s.teacher(to_base))
    start = one(to_base, "student before", s.before(to_base))
    base, larger = s.after(to_base), s.after(to_larger)
    figures = [start, pre, base, larger]
    tol = d["tolerance"]
    if start.mean - pre.mean <= d["min_gain"]:
        return figures, FAILS, f"the student starts {pts(start.mean - pre.mean)} points above its pre-RL checkpoint"
    for run in (base, larger):
        if abs(run.mean - pre.mean) > tol:
            return figures, FAILS, f"{run.run} ends {pts(run.mean - pre.mean)} points from the pre-RL checkpoint"
    if abs(base.mean - larger.mean) > tol:
        return figures, FAILS, f"the two runs end {pts(abs(base.mean - larger.mean))} points apart"
    return figures, HOLDS, ""


def rule_alignment(d: dict, s: Study):
    figures, checks = [], []
    for run in d["runs"]:
        first = s.metric(run, "overlap_ratio_first", "overlap ratio, first step")
        last = s.metric(run, "overlap_ratio_last", "overlap ratio, last step")
        mass = s.metric(run, "overlap_mass_student_last", "overlap mass (student), last step")
        rise = Stat(run, "overlap ratio rise", {k: last.per_seed[k] - first.per_seed[k] for k in last.per_seed}, "ratio")
        figures += [first, last, mass]
        checks.append((rise, mass))
    if why := too_few(*(rise for rise, _ in checks)):
        return figures, TOO_FEW_SEEDS, why
    for rise, mass in checks:
        if not rise.mean > max(0.0, SD_MULTIPLE * rise.sd):
            return figures, FAILS, f"{rise.run}'s overlap ratio rises {rise.mean:+.3f} ± {rise.sd:.3f}"
        if mass.mean < d["min_overlap_mass"]:
            return figures, FAILS, f"the shared set holds {mass.mean:.3f} of {mass.run}'s mass"
    return figures, HOLDS, ""


def rule_cold_start(d: dict, s: Study):
    without, with_ = s.gain(d["without"]), s.gain(d["with"])
    figures = [without, with_]
    if why := too_few(without, with_):
        return figures, TOO_FEW_SEEDS, why
    if transfers(without, d["min_gain"]):
        return figures, FAILS, f"{without.run} transfers without a cold start: nothing to recover"
    if not transfers(with_, d["min_gain"]):
        return figures, FAILS, f"{with_.run} does not transfer"
    return figures, HOLDS, ""


def rule_prompt_alignment(d: dict, s: Study):
    pairs = [(s.gain(p["aligned"]), s.gain(p["misaligned"])) for p in d["pairs"]]
    figures = [g for pair in pairs for g in pair]
    if why := too_few(*figures):
        return figures, TOO_FEW_SEEDS, why
    for aligned, misaligned in pairs:
        if not apart(aligned, misaligned, d["min_gain"]):
            return figures, FAILS, f"{aligned.run} gains {pts(aligned.mean - misaligned.mean)} points more than " \
                                   f"{misaligned.run}"
    return figures, HOLDS, ""


def rule_long_horizon(d: dict, s: Study):
    name = d["continuation"]
    rows = [r for r in s.summary["continuations"][name]["rows"] if r["teacher_advantage"] is not None]
    figures = [one(name, f"teacher's advantage after {r['prefix_tokens']} tokens", r["teacher_advantage"], "gain")
               for r in sorted(rows, key=lambda r: r["prefix_tokens"])]
    if len(figures) < 2:
        raise Undecided(f"{name} has continuations at fewer than two prefix lengths")
    drop = figures[0].mean - figures[-1].mean
    if drop <= d["min_drop"]:
        return figures, FAILS, f"the advantage falls {pts(drop)} points"
    return figures, HOLDS, ""


def rule_sampled_token(d: dict, s: Study):
    sampled = s.gain(d["sampled"])
    topk = [s.gain(name) for name in d["topk"]]
    top1 = s.gain(d["top1"]) if d.get("top1") else None
    figures = [sampled, *topk, *([top1] if top1 else [])]
    if top1 and (why := too_few(sampled, top1)):
        return figures, TOO_FEW_SEEDS, why
    for t in topk:
        if abs(sampled.mean - t.mean) > d["tolerance"]:
            return figures, FAILS, f"{sampled.run} and {t.run} gain {pts(abs(sampled.mean - t.mean))} points apart"
    if top1 and not apart(sampled, top1):
        return figures, FAILS, f"{top1.run} is not below {sampled.run}"
    return figures, HOLDS, ""


def rule_reward_auroc(d: dict, s: Study):
    figures = [s.auroc(run) for run in d["runs"]]
    if why := too_few(*figures):
        return figures, TOO_FEW_SEEDS, why
    for a in figures:
        if a.mean < d["min_auroc"] or not a.mean - 0.5 > SD_MULTIPLE * a.sd:
            return figures, FAILS, f"{a.run}: AUROC {a.mean:.3f} ± {a.sd:.3f}"
    return figures, HOLDS, ""


TRANSFERS = "transfers: mean gain over the seeds > 2 sd and > {min_gain} points (gain: accuracy after OPD - before)"


@dataclass(frozen=True)
class Finding:
    paper: str    # the paper's number or section
    claim: str
    rule: str     # the rule in words; {key} are the declaration's thresholds
    judge: object


FINDINGS = {
    "thinking_pattern": Finding(
        "1", "OPD succeeds only when student and teacher share a compatible thinking pattern",
        "holds if the compatible teacher's run (works) transfers and the other pattern's (fails) does not; "
        + TRANSFERS, rule_thinking_pattern),
    "new_knowledge": Finding(
        "2", "a same-pipeline teacher with a higher score transfers little: the teacher needs something new",
        "holds if the same-pipeline teacher scores above its student before OPD (mean over all the run's "
        "benchmarks) yet its run (same_pipeline) does not transfer, while the run from a teacher with a new "
        "capability (works) does; " + TRANSFERS, rule_new_knowledge),
    "reverse": Finding(
        "3", "reverse distillation to the student's pre-RL checkpoint and to a larger same-family model pulls it "
        "back to the pre-RL level, alike",
        "holds if the student starts > {min_gain} points above its pre-RL checkpoint (to_base's teacher), and both "
        "runs end within {tolerance} points of that checkpoint and of each other (means over the seeds; one seed "
        "suffices)", rule_reverse),
    "alignment": Finding(
        "4", "successful OPD aligns progressively on high-probability tokens; a small shared set holds 97-99% of "
        "the mass (overlap ratio ~72% -> >91%)",
        "holds if in every run the top-k overlap ratio rises from the first step to the last by more than 2 sd of "
        "the seeds' rises, and the shared top-k set holds >= {min_overlap_mass} of the student's probability at "
        "the last step (mean over the seeds)", rule_alignment),
    "cold_start": Finding(
        "5.1", "an off-policy cold start (SFT on the teacher's outputs) recovers OPD from an incompatible teacher",
        "holds if the run without the cold start (without) does not transfer and the run from the cold-started "
        "student (with) does; " + TRANSFERS, rule_cold_start),
    "prompt_alignment": Finding(
        "5.2", "teacher-aligned prompts (template and content) recover failing OPD",
        "holds if in every pair the run on teacher-aligned prompts gains more than the run on misaligned prompts, "
        "by > 2 sd of the difference (sqrt(sd1^2 + sd2^2)) and > {min_gain} points", rule_prompt_alignment),
    "long_horizon": Finding(
        "6", "the dense token reward gets less reliable the deeper the student's prefix",
        "holds if the teacher's advantage over the student, each continuing the student's own prefixes, is lower "
        "at the longest prefix than at the shortest by > {min_drop} points (one run: no seeds)", rule_long_horizon),
    "sampled_token": Finding(
        "ablation", "the sampled-token objective is about as good as top-k for k >= 4; top-1 is worse",
        "holds if the sampled-token run's mean gain is within {tolerance} points of each top-k run's (topk), and "
        "the top-1 run (top1, if named) gains less than the sampled-token run by > 2 sd of the difference",
        rule_sampled_token),
    "reward_auroc": Finding(
        "ablation", "the per-rollout mean reward predicts correctness (AUROC 0.73-0.75)",
        "holds if in every run the AUROC of the per-rollout mean reward for the verifier's verdict is >= "
        "{min_auroc} (mean over the seeds) and above chance (0.5) by > 2 sd", rule_reward_auroc),
}
POINT_KEYS = ("min_gain", "tolerance", "min_drop")  # thresholds in accuracy points (0-1 in the config)


def rule_text(name: str, d: dict) -> str:
    return FINDINGS[name].rule.format(**{k: f"{100 * v:g}" if k in POINT_KEYS else f"{v:g}"
                                         for k, v in d.items() if isinstance(v, (int, float))})


def run_refs(d: dict) -> list[tuple[list, str]]:
    """(key path within the declaration, experiment) of every run a declaration names."""
    out = []
    for key in RUN_ROLES:
        value = d.get(key)
        if isinstance(value, str):
            out.append(([key], value))
        for i, item in enumerate(value if isinstance(value, list) else []):
            if isinstance(item, dict):
                out += [([key, i, role], item[role]) for role in PAIR_ROLES]
            else:
                out.append(([key, i], item))
    return out


def judge(name: str, d: dict | None, summary: dict) -> dict:
    """One finding: its figures, rule and verdict on this summary, with the reason when it
    does not hold."""
    f = FINDINGS[name]
    if d is not None:  # the roles in their order (the DAG passes the declaration with its keys sorted)
        d = {**{k: d[k] for k in (*RUN_ROLES, "continuation") if k in d}, **d}
    out = {"paper": f.paper, "claim": f.claim, "declared": d, "figures": [], "rule": None, "verdict": NOT_RUN,
           "why": ""}
    if d is None:
        out["why"] = f"no runs named (config findings.{name})"
        return out
    out["rule"] = rule_text(name, d)
    missing = [run for _, run in run_refs(d) if run not in summary.get("experiments", {})]
    if "continuation" in d and d["continuation"] not in summary.get("continuations", {}):
        missing.append(d["continuation"])
    if missing:
        out["why"] = f"not in this study: {', '.join(dict.fromkeys(missing))}"
        return out
    try:
        figures, out["verdict"], out["why"] = f.judge(d, Study(summary, d.get("benchmarks") or []))
        out["figures"] = [x.figure() for x in figures]
    except Undecided as e:
        out["verdict"], out["why"] = UNDECIDED, str(e)
    return out


def judge_findings(declared: dict, summary: dict) -> dict:
    """Every finding of the paper, in its order; those the config does not declare are not run."""
    return {name: judge(name, declared.get(name), summary) for name in FINDINGS}


def declaration_error(config: dict, seed_copies: set[str]) -> str | None:
    """What is wrong with ``config.findings``, naming the key: a run that names a model,
    benchmark or other non-experiment, or one seed's copy of an experiment; a continuation
    that names something else; a benchmark the study or a named run does not have. A name
    the study lacks altogether is no error: that finding is reported as not run."""
    kinds = {"models": "model", "sft": "cold start", "benchmarks": "benchmark", "prompt_sets": "prompt set",
             "sweeps": "sweep", "probes": "probe", "continuations": "continuation"}
    others = {name: word for kind, word in kinds.items() for name in config.get(kind, {})}
    experiments = config["experiments"]
    for name, d in config.get("findings", {}).items():
        key = f"config.findings.{name}"
        for i, b in enumerate(d.get("benchmarks", [])):
            if b not in config["benchmarks"]:
                return f"{key}.benchmarks.{i}: no benchmark named {b!r}"
        for path, run in run_refs(d):
            where = ".".join([key, *map(str, path)])
            if run in seed_copies:
                return f"{where}: {run!r} is one seed's run; name its experiment (every seed run counts)"
            if run not in experiments and run in others:
                return f"{where}: {run!r} is a {others[run]}, not an experiment"
            have = (experiments.get(run) or {}).get("benchmarks") or list(config["benchmarks"])
            lacking = [b for b in d.get("benchmarks", []) if b not in have]
            if lacking:
                return f"{where}: experiment {run!r} is not evaluated on {', '.join(lacking)} ({key}.benchmarks)"
        c = d.get("continuation")
        if c is not None and c not in config.get("continuations", {}) and (c in experiments or c in others):
            kind = "an experiment" if c in experiments else f"a {others[c]}"
            return f"{key}.continuation: {c!r} is {kind}, not a continuation"
    return None
