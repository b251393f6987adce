"""The paper's findings judged on constructed summaries: each verdict follows its rule."""

import copy
import json
import math
import statistics

import pytest
import yaml

from opd.analysis.findings import FINDINGS, judge, judge_findings, run_refs
from opd.analysis.tables import findings_table, with_seeds
from opd.config import ConfigError, validate_config


def run(before: float, after: float, teacher: float = 0.9, first: float = 0.7, last: float = 0.9,
        mass: float = 0.98, student: str = "s", teacher_name: str = "t", other: float | None = None,
        other_teacher: float = 0.5) -> dict:
    """One seed's experiment summary as make_tables writes it; ``other``: the after-accuracy on
    a second benchmark, c (before 0.5 there)."""
    benchmarks = {"b": {"acc_before": before, "acc_after": after, "acc_teacher": teacher, "gap_recovery": None}}
    if other is not None:
        benchmarks["c"] = {"acc_before": 0.5, "acc_after": other, "acc_teacher": other_teacher, "gap_recovery": None}
    return {"student": student, "teacher": teacher_name, "section": None, "benchmarks": benchmarks, "steps": 10,
            "overlap_ratio_first": first, "overlap_ratio_last": last, "overlap_mass_student_first": mass,
            "overlap_mass_student_last": mass}


def summary(**experiments) -> dict:
    """{experiment: [one run per seed]} -> results/summary.json's shape (JSON round trip:
    seeds become strings as on disk), runs of several seeds under ``seeds``."""
    flat, seeds = {}, {}
    for name, runs in experiments.items():
        names = [name] + [f"{name}.seed{i}" for i in range(1, len(runs))]
        flat.update(zip(names, runs))
        if len(runs) > 1:
            seeds[name] = dict(enumerate(names))
    return json.loads(json.dumps({"experiments": with_seeds(flat, seeds)}))


def verdict(name: str, declared: dict, s: dict) -> dict:
    return judge(name, declared, s)


def test_thinking_pattern_holds_when_the_compatible_run_transfers_and_the_other_does_not():
    s = summary(works=[run(0.0, a) for a in (0.50, 0.55, 0.45)], fails=[run(0.0, a) for a in (0.0, 0.02, 0.0)])
    out = verdict("thinking_pattern", {"works": "works", "fails": "fails", "min_gain": 0.1}, s)
    assert out["verdict"] == "holds" and out["why"] == ""
    gain = out["figures"][0]
    assert gain["run"] == "works" and gain["mean"] == pytest.approx(0.5)
    assert gain["sd"] == pytest.approx(statistics.stdev([0.50, 0.55, 0.45])) and gain["seeds"] == 3
    assert out["rule"].endswith("transfers: mean gain over the seeds > 2 sd and > 10 points "
                                "(gain: accuracy after OPD - before)")


@pytest.mark.parametrize("works, fails, why", [
    ((0.50, 0.55, 0.45), (0.30, 0.35, 0.25), "fails transfers too"),
    ((0.08, 0.08, 0.08), (0.0, 0.0, 0.0), "works does not transfer"),    # < 10 points
    ((0.30, 0.0, 0.06), (0.0, 0.0, 0.0), "works does not transfer"),     # 12 points, but sd 16: < 2 sd
])
def test_thinking_pattern_fails_by_its_rule(works, fails, why):
    s = summary(works=[run(0.0, a) for a in works], fails=[run(0.0, a) for a in fails])
    out = verdict("thinking_pattern", {"works": "works", "fails": "fails", "min_gain": 0.1}, s)
    assert (out["verdict"], out["why"]) == ("fails", why)


def test_one_seed_is_too_few_for_a_rule_that_weighs_the_spread_but_the_figures_are_reported():
    s = summary(works=[run(0.0, 0.5)], fails=[run(0.0, 0.0), run(0.0, 0.0)])
    out = verdict("thinking_pattern", {"works": "works", "fails": "fails", "min_gain": 0.1}, s)
    assert out["verdict"] == "too few seeds" and out["why"].startswith("works: one seed; the rule needs 2")
    assert out["figures"][0] == {"run": "works", "label": "gain", "kind": "gain", "mean": 0.5, "sd": None,
                                 "seeds": 1}


def test_a_finding_without_runs_or_whose_runs_are_not_in_the_study_is_not_run():
    s = summary(works=[run(0.0, 0.5)] * 2)
    out = judge_findings({"thinking_pattern": {"works": "works", "fails": "gone", "min_gain": 0.1}}, s)
    assert list(out) == list(FINDINGS)
    assert out["thinking_pattern"]["verdict"] == "not run"
    assert out["thinking_pattern"]["why"] == "not in this study: gone"
    assert out["reverse"]["verdict"] == "not run" and out["reverse"]["rule"] is None
    assert out["reverse"]["why"] == "no runs named (config findings.reverse)"


def test_the_gain_is_the_mean_over_the_declared_benchmarks_or_each_runs_own():
    s = summary(works=[run(0.0, 0.4, other=0.3), run(0.0, 0.6, other=0.5)],
                fails=[run(0.0, 0.0, other=0.5)] * 2)
    declared = {"works": "works", "fails": "fails", "min_gain": 0.1}
    only_b = verdict("thinking_pattern", {**declared, "benchmarks": ["b"]}, s)["figures"][0]
    both = verdict("thinking_pattern", {**declared, "benchmarks": []}, s)["figures"][0]
    assert only_b["mean"] == pytest.approx(0.5)
    assert both["mean"] == pytest.approx(statistics.fmean([(0.4 + (0.3 - 0.5)) / 2, (0.6 + 0.0) / 2]))


def test_new_knowledge_needs_a_teacher_that_scores_higher_yet_teaches_nothing():
    works = [run(0.0, a) for a in (0.5, 0.45)]
    same = [run(0.0, a, teacher=t, other=0.5) for a, t in ((0.0, 0.0), (0.01, 0.0))]
    declared = {"works": "works", "same_pipeline": "same", "benchmarks": ["b"], "min_gain": 0.1}
    out = verdict("new_knowledge", declared, summary(works=works, same=same))
    # the teacher's lead is read over all the run's benchmarks: b 0.0 - 0.0, c 0.5 - 0.5
    assert out["figures"][1]["mean"] == 0.0
    assert (out["verdict"], out["why"]) == ("fails", "same's teacher does not score above its student")
    same = [run(0.0, a, teacher=0.0, other=0.5, other_teacher=0.9) for a in (0.0, 0.01)]
    assert verdict("new_knowledge", declared, summary(works=works, same=same))["verdict"] == "holds"


def test_reverse_returns_to_the_pre_rl_checkpoint_with_one_seed_enough():
    declared = {"to_base": "base", "to_larger": "larger", "min_gain": 0.1, "tolerance": 0.05}

    def reverse(start, base_after, larger_after, pre=0.1):
        return summary(base=[run(start, a, teacher=pre, teacher_name="pre") for a in base_after],
                       larger=[run(start, a, teacher=0.2) for a in larger_after])

    out = verdict("reverse", declared, reverse(0.5, [0.12], [0.14]))
    assert out["verdict"] == "holds"
    assert [(f["run"], f["label"]) for f in out["figures"]] == [("base", "student before"), ("pre", "pre-RL checkpoint"),
                                                                ("base", "after"), ("larger", "after")]
    assert verdict("reverse", declared, reverse(0.5, [0.12, 0.10], [0.30, 0.26]))["why"] == \
        "larger ends 18.0 points from the pre-RL checkpoint"
    assert verdict("reverse", declared, reverse(0.15, [0.1], [0.1]))["why"] == \
        "the student starts 5.0 points above its pre-RL checkpoint"
    assert verdict("reverse", declared, reverse(0.5, [0.06], [0.14]))["why"] == "the two runs end 8.0 points apart"


def test_alignment_needs_the_overlap_to_rise_beyond_the_seeds_spread_and_the_shared_set_to_hold_the_mass():
    declared = {"runs": ["r"], "min_overlap_mass": 0.95}
    rising = summary(r=[run(0, 0.5, first=f, last=l) for f, l in ((0.70, 0.91), (0.72, 0.92), (0.71, 0.93))])
    assert verdict("alignment", declared, rising)["verdict"] == "holds"
    noisy = summary(r=[run(0, 0.5, first=f, last=l) for f, l in ((0.70, 0.90), (0.72, 0.62), (0.71, 0.83))])
    out = verdict("alignment", declared, noisy)
    rises = [0.20, -0.10, 0.12]
    assert out["verdict"] == "fails"
    assert out["why"] == f"r's overlap ratio rises {statistics.fmean(rises):+.3f} ± {statistics.stdev(rises):.3f}"
    thin = summary(r=[run(0, 0.5, first=0.7, last=0.9 + i / 100, mass=0.9) for i in range(3)])
    assert verdict("alignment", declared, thin)["why"] == "the shared set holds 0.900 of r's mass"
    unlogged = summary(r=[{k: v for k, v in run(0, 0.5).items() if not k.startswith("overlap")}])
    out = verdict("alignment", declared, unlogged)
    assert (out["verdict"], out["why"]) == ("undecided", "r logged no overlap_ratio_first")


def test_cold_start_recovers_when_only_the_cold_started_run_transfers():
    declared = {"without": "plain", "with": "cold", "min_gain": 0.1}
    plain = [run(0.0, a) for a in (0.0, 0.01)]
    assert verdict("cold_start", declared, summary(plain=plain, cold=[run(0.1, a) for a in (0.4, 0.45)]))["verdict"] \
        == "holds"
    assert verdict("cold_start", declared, summary(plain=plain, cold=[run(0.1, a) for a in (0.15, 0.17)]))["why"] \
        == "cold does not transfer"


def test_prompt_alignment_compares_each_pair_against_the_spread_of_the_difference():
    declared = {"pairs": [{"aligned": "a", "misaligned": "m"}], "min_gain": 0.1}
    a, m = (0.40, 0.44, 0.36), (0.20, 0.30, 0.10)
    out = verdict("prompt_alignment", declared, summary(a=[run(0, x) for x in a], m=[run(0, x) for x in m]))
    # 20 points apart; 2 * sqrt(0.04^2 + 0.10^2) = 21.5 points
    assert 2 * math.hypot(statistics.stdev(a), statistics.stdev(m)) > 0.2
    assert (out["verdict"], out["why"]) == ("fails", "a gains 20.0 points more than m")
    m = (0.20, 0.22, 0.18)
    assert verdict("prompt_alignment", declared,
                   summary(a=[run(0, x) for x in a], m=[run(0, x) for x in m]))["verdict"] == "holds"


def continuation(advantages: dict) -> dict:
    return {"continuations": {"c": {"rows": [{"prefix_tokens": k, "teacher_advantage": v}
                                             for k, v in advantages.items()]}}, "experiments": {}}


def test_long_horizon_reads_the_teachers_advantage_from_the_shortest_to_the_longest_prefix():
    declared = {"continuation": "c", "min_drop": 0.1}
    out = verdict("long_horizon", declared, continuation({16: 0.0, 0: 0.9, 4: 0.4, 32: None}))
    assert out["verdict"] == "holds"
    assert [f["label"] for f in out["figures"]] == [f"teacher's advantage after {n} tokens" for n in (0, 4, 16)]
    assert verdict("long_horizon", declared, continuation({0: 0.3, 16: 0.25}))["why"] == "the advantage falls 5.0 points"
    assert verdict("long_horizon", declared, continuation({0: 0.3, 16: None}))["verdict"] == "undecided"
    assert verdict("long_horizon", declared, {"experiments": {}})["verdict"] == "not run"


def test_sampled_token_is_level_with_top_k_and_above_top_1():
    declared = {"sampled": "s", "topk": ["k4", "k16"], "tolerance": 0.1}
    runs = {"s": (0.30, 0.28), "k4": (0.25, 0.27), "k16": (0.35, 0.37), "k1": (0.05, 0.07)}
    s = summary(**{n: [run(0, x) for x in v] for n, v in runs.items()})
    assert verdict("sampled_token", declared, s)["verdict"] == "holds"
    assert verdict("sampled_token", {**declared, "top1": "k1"}, s)["verdict"] == "holds"
    assert verdict("sampled_token", {**declared, "top1": "k4"}, s)["why"] == "k4 is not below s"
    assert verdict("sampled_token", {**declared, "tolerance": 0.05}, s)["why"] == "s and k16 gain 7.0 points apart"
    one_seed = summary(s=[run(0, 0.3)], k4=[run(0, 0.25)], k16=[run(0, 0.35)], k1=[run(0, 0.05)])
    assert verdict("sampled_token", declared, one_seed)["verdict"] == "holds"  # no spread weighed
    assert verdict("sampled_token", {**declared, "top1": "k1"}, one_seed)["verdict"] == "too few seeds"


def test_reward_auroc_reads_each_seeds_own_run():
    s = summary(r=[run(0, 0.5)] * 3)
    declared = {"runs": ["r"], "min_auroc": 0.65}
    s["analyses"] = {"rollout_auroc": {"r": {"auroc_mean_reward": 0.74}, "r.seed1": {"auroc_mean_reward": 0.72},
                                       "r.seed2": {"auroc_mean_reward": 0.76}}}
    out = verdict("reward_auroc", declared, s)
    assert out["verdict"] == "holds" and out["figures"][0]["mean"] == pytest.approx(0.74)
    assert verdict("reward_auroc", {**declared, "min_auroc": 0.75}, s)["why"] == "r: AUROC 0.740 ± 0.020"
    s["analyses"]["rollout_auroc"]["r.seed2"]["auroc_mean_reward"] = None
    assert verdict("reward_auroc", declared, s)["verdict"] == "undecided"


def test_the_table_states_runs_figures_rule_and_verdict_per_finding():
    s = summary(works=[run(0.0, a) for a in (0.50, 0.55, 0.45)], fails=[run(0.0, 0.0)] * 3)
    table = findings_table(judge_findings(  # keys sorted, as the DAG passes them
        {"thinking_pattern": {"benchmarks": ["b"], "fails": "fails", "min_gain": 0.1, "works": "works"}}, s))
    row = next(line for line in table.splitlines() if line.startswith("| 1 |"))
    assert row.startswith("| 1 | thinking_pattern | OPD succeeds only when student and teacher share a compatible "
                          "thinking pattern | works: works; fails: fails; on b | works gain +50.0 ± 5.0; "
                          "fails gain +0.0 ± 0.0 | holds if ")
    assert row.endswith("| **holds** |")
    assert "| 3 | reverse | " in table and "| **not run**: no runs named (config findings.reverse) |" in table




def test_the_toy_world_declares_its_findings_with_the_rules_defaults(toy, schema):
    cfg = validate_config(toy, schema)
    assert cfg["findings"]["thinking_pattern"] == {"works": "opd_new_skill", "fails": "opd_other_format",
                                                   "benchmarks": ["new_digits"], "min_gain": 0.1}
    assert cfg["findings"]["alignment"]["min_overlap_mass"] == 0.95
    assert "prompt_alignment" not in cfg["findings"]  # config/recipes_5_2.yaml's


@pytest.mark.parametrize("edit, message", [
    (lambda f: f.update(finding_9={}), "unknown key config.findings.finding_9"),
    (lambda f: f["thinking_pattern"].pop("fails"), "missing key config.findings.thinking_pattern.fails"),
    (lambda f: f["thinking_pattern"].update(works="student"),
     "config.findings.thinking_pattern.works: 'student' is a model, not an experiment"),
    (lambda f: f["alignment"].update(runs=["opd_new_skill.seed1"]),
     "config.findings.alignment.runs.0: 'opd_new_skill.seed1' is one seed's run; name its experiment"),
    (lambda f: f["reverse"].update(benchmarks=["hard"]), "config.findings.reverse.benchmarks.0: no benchmark named"),
    (lambda f: f["long_horizon"].update(continuation="opd_new_skill"),
     "config.findings.long_horizon.continuation: 'opd_new_skill' is an experiment, not a continuation"),
    (lambda f: f["reward_auroc"].update(min_auroc=0.4), "config.findings.reward_auroc.min_auroc"),
    (lambda f: f.update(prompt_alignment={"pairs": [{"aligned": "opd_new_skill"}]}),
     "missing key config.findings.prompt_alignment.pairs.0.misaligned"),
])
def test_a_bad_declaration_stops_the_run_naming_the_key(toy, schema, edit, message):
    cfg = copy.deepcopy(toy)
    edit(cfg["findings"])
    with pytest.raises(ConfigError) as err:
        validate_config(cfg, schema)
    assert message in str(err.value)


def test_a_run_not_evaluated_on_the_findings_benchmarks_is_refused(toy, schema):
    toy["experiments"]["opd_new_skill"]["benchmarks"] = ["shared"]
    with pytest.raises(ConfigError, match="thinking_pattern.works: experiment 'opd_new_skill' is not evaluated on "
                                          "new_digits"):
        validate_config(toy, schema)


def test_a_run_the_study_lacks_is_no_error_since_its_finding_is_reported_not_run(toy, schema):
    toy["findings"]["sampled_token"]["topk"] = ["objective.top4", "objective_k.top16"]  # ablation_topk.yaml's
    validate_config(toy, schema)


@pytest.mark.parametrize("study, addition", [("config.yaml", None), ("config.yaml", "recipes_5_2.yaml"),
                                             ("config.yaml", "ablation_topk.yaml"),
                                             ("config.yaml", "subword_world.yaml"),
                                             ("config.yaml", "coldstart_format.yaml"), ("paper.yaml", None),
                                             ("rehearsal.yaml", None)])
def test_every_run_the_shipped_configs_name_is_in_their_study(root, schema, study, addition):
    cfg = yaml.safe_load((root / "config" / study).read_text())
    if addition:
        for kind, entries in yaml.safe_load((root / "config" / addition).read_text()).items():
            cfg[kind] = {**cfg[kind], **entries} if isinstance(entries, dict) else entries
    cfg = validate_config(json.loads(json.dumps(cfg)), schema)
    assert cfg["findings"]
    for name, declared in cfg["findings"].items():
        assert [run for _, run in run_refs(declared) if run not in cfg["experiments"]] == [], name
        assert declared.get("continuation", next(iter(cfg["continuations"]))) in cfg["continuations"], name
