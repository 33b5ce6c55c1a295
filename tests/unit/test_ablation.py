"""eval/ablation.py: paired comparison of two runs on the same queries (ranx, no JVM)."""
import pytest

from vfr.eval.ablation import markdown, paired_diff


def test_a_better_variant_has_a_positive_difference_and_a_small_p():
    qrels = {f"q{i}": {f"d{i}": 1} for i in range(200)}
    base = {f"q{i}": {f"d{i}": 1.0 if i % 2 else 0.5, "x": 0.9} for i in range(200)}   # right first on odd
    variant = {f"q{i}": {f"d{i}": 1.0 if i % 10 else 0.5, "x": 0.9} for i in range(200)}  # on 90%
    r = paired_diff(qrels, base, variant)
    assert r["base"]["hit_rate@1"] == pytest.approx(0.5) and r["variant"]["hit_rate@1"] == pytest.approx(0.9)
    assert r["diff_r1"] == pytest.approx(0.4) and r["ci95"][0] > 0.3 and r["p"] < 0.01
    table = markdown("t", [{"change": "c", "benchmark": "b", "task": "t2i", "retriever": "hybrid", **r}])
    assert "| +40.0 (" in table and "| significant |" in table


def test_identical_runs_are_not_significant():
    qrels = {f"q{i}": {f"d{i}": 1} for i in range(50)}
    run = {f"q{i}": {f"d{i}": 1.0 if i % 3 else 0.1, "x": 0.5} for i in range(50)}
    r = paired_diff(qrels, run, run)
    assert r["diff_r1"] == 0 and r["ci95"] == [0.0, 0.0] and r["p"] >= 0.05
