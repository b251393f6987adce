"""The spread over seeds that the tables and summary.json report."""

import statistics

import pytest

from opd.analysis.tables import experiments_table, over_seeds, spread, sweep_rows, with_seeds


def run(after: float, overlap: float) -> dict:
    return {"student": "s", "teacher": "t", "section": "3.1", "overlap_ratio_first": 0.5,
            "overlap_ratio_last": overlap, "steps": 10,
            "benchmarks": {"b": {"acc_before": 0.1, "acc_after": after, "acc_teacher": 0.9,
                                 "gap_recovery": (after - 0.1) / 0.8}}}


def test_spread_is_the_sample_standard_deviation_with_every_seed_kept():
    values = {0: 0.6, 1: 0.4, 2: 0.5}
    s = spread(values)
    assert s["per_seed"] == values and s["mean"] == pytest.approx(0.5)
    assert s["sd"] == pytest.approx(statistics.stdev(values.values()))
    assert (s["min"], s["max"]) == (0.4, 0.6)
    assert spread({0: 0.3})["sd"] == 0.0
    assert spread({0: 0.3, 1: None}) is None


def test_over_seeds_covers_accuracy_gap_recovery_and_last_step_metrics():
    out = over_seeds({0: run(0.5, 0.9), 1: run(0.3, 0.8)})
    assert out["runs"] == 2
    assert out["benchmarks"]["b"]["acc_after"]["mean"] == pytest.approx(0.4)
    assert out["benchmarks"]["b"]["gap_recovery"]["per_seed"] == {0: pytest.approx(0.5), 1: pytest.approx(0.25)}
    assert out["overlap_ratio_last"]["mean"] == pytest.approx(0.85)
    assert "steps" not in out


def test_tables_show_mean_and_sd_in_one_row_per_experiment():
    experiments = with_seeds({"e": run(0.5, 0.9), "e.seed1": run(0.3, 0.8), "f": run(0.2, 0.7)},
                             {"e": {0: "e", 1: "e.seed1"}})
    assert experiments["e.seed1"]["seed_of"] == "e" and experiments["e"]["seed_runs"] == {"0": "e", "1": "e.seed1"}
    table = experiments_table(experiments)
    assert "| e.seed1 |" not in table
    assert "| e | s <- t | b | 10.0 | 40.0 ± 14.1 | 90.0 | 38 ± 18% | 0.500 | 0.850 ± 0.071 | 2 |" in table
    assert "| f | s <- t | b | 10.0 | 20.0 | 90.0 | 12% | 0.500 | 0.700 | 1 |" in table
    point = {**run(0.5, 0.9), "overrides": {"objective.kind": "sampled"},
             "seeds": over_seeds({0: run(0.5, 0.9), 1: run(0.3, 0.8)})}
    _, rows = sweep_rows({"sampled": point})
    assert rows[0][4] == "40.0 ± 14.1" and rows[0][-1] == "2"
