"""Metric plumbing against toy runs whose values are computed by hand."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from vfr.eval import metrics as M

QRELS = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 1, "d": 1}, "q4": {"e": 1}}
RUN = {
    "q1": {"a": 0.9, "b": 0.5},            # relevant at rank 1
    "q2": {"a": 0.9, "c": 0.8, "b": 0.7},  # relevant at rank 3
    "q3": {"x": 0.9, "d": 0.8},            # one of two relevant, at rank 2
    # q4: the searcher returned nothing: counts as 0 everywhere
}


def test_hand_computed_means() -> None:
    s = M.evaluate(QRELS, RUN)
    ndcg_q3 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert s["hit_rate@1"] == pytest.approx(1 / 4)
    assert s["hit_rate@5"] == pytest.approx(3 / 4)
    assert s["hit_rate@10"] == pytest.approx(3 / 4)
    assert s["mrr@10"] == pytest.approx((1 + 1 / 3 + 1 / 2 + 0) / 4)
    assert s["ndcg@10"] == pytest.approx((1 + 1 / math.log2(4) + ndcg_q3 + 0) / 4)
    assert s["recall@5"] == pytest.approx((1 + 1 + 0.5 + 0) / 4)


def test_per_query_and_curve() -> None:
    assert M.per_query(QRELS, RUN, "hit_rate@1").tolist() == [1, 0, 0, 0]
    assert M.recall_curve(QRELS, RUN, [1, 2, 3]) == pytest.approx([0.25, 0.5, 0.75])


def test_inputs_are_not_mutated() -> None:
    q, r = copy.deepcopy(QRELS), copy.deepcopy(RUN)
    M.evaluate(q, r)
    M.compare(q, {"x": r, "y": r})
    assert q == QRELS and r == RUN


def test_pool_documents_to_targets() -> None:
    run = {"q": {"img1|m1": 0.4, "img1|m2": 0.95, "img2|m1": 0.5}}
    pooled = M.to_target_run(run, {"img1|m1": "img1", "img1|m2": "img1", "img2|m1": "img2"})
    assert pooled == {"q": {"img1": 0.95, "img2": 0.5}}
    assert M.to_target_run(run, None) is run


def test_significance_separates_a_clearly_better_run() -> None:
    qrels = {f"q{i}": {"rel": 1} for i in range(60)}
    good = {q: {"rel": 1.0, "x": 0.5} for q in qrels}
    bad = {q: ({"x": 1.0, "rel": 0.5} if i % 2 else {"rel": 1.0, "x": 0.5}) for i, q in enumerate(qrels)}
    p = M.compare(qrels, {"good": good, "bad": bad, "same": copy.deepcopy(good)}, ["hit_rate@1"])
    assert p["good"]["bad"]["hit_rate@1"] < 0.01
    assert p["good"]["same"]["hit_rate@1"] == pytest.approx(1.0)


def test_bootstrap_ci() -> None:
    values = np.array([1.0, 0.0] * 100)
    lo, hi = M.bootstrap_ci(values, seed=0)
    assert lo < 0.5 < hi and 0.05 < hi - lo < 0.2
    assert M.bootstrap_ci(values, seed=0) == (lo, hi)          # deterministic with a seed
    assert M.bootstrap_ci(np.ones(10)) == (1.0, 1.0)           # degenerate but defined
    assert all(math.isnan(x) for x in M.bootstrap_ci(np.array([])))


def _exact_randomisation_p(d: np.ndarray) -> float:
    """Every one of the 2^n sign assignments: the p-value the sampled test estimates."""
    import itertools

    observed = abs(d.sum())
    sums = [abs(np.dot(signs, d)) for signs in itertools.product((-1, 1), repeat=d.size)]
    return float(np.mean(np.asarray(sums) >= observed - 1e-12))


def test_randomisation_test_is_seeded_and_estimates_the_exact_p() -> None:
    rng = np.random.default_rng(3)
    a = rng.integers(0, 2, size=12).astype(float)
    b = np.clip(a + rng.integers(-1, 2, size=12), 0, 1).astype(float)
    assert (b - a).any()
    p = M.paired_test(a, b, permutations=20000, seed=7)
    assert p == M.paired_test(a, b, permutations=20000, seed=7)   # the same inputs, the same p, every time
    assert p == pytest.approx(_exact_randomisation_p(b - a), abs=0.01)
    assert M.paired_test(a, b, permutations=20000, seed=7) == M.paired_test(b, a, permutations=20000, seed=7)


def test_randomisation_floor_and_identical_runs() -> None:
    a, b = np.zeros(60), np.ones(60)
    assert M.paired_test(a, b) == pytest.approx(1 / 1001)          # never 0: (hits + 1) / (permutations + 1)
    assert M.paired_test(a, a.copy()) == 1.0
    assert M.paired_test(np.array([]), np.array([])) == 1.0


def test_student_test_is_scipys_paired_t_test() -> None:
    from scipy import stats

    a = np.array([0.1, 0.5, 0.3, 0.9, 0.4, 0.2])
    b = np.array([0.3, 0.6, 0.2, 1.0, 0.8, 0.5])
    assert M.paired_test(a, b, "student") == pytest.approx(stats.ttest_rel(b, a).pvalue)
    with pytest.raises(ValueError, match="fisher or student"):
        M.paired_test(a, b, "wilcoxon")


def test_compare_and_evaluate_all_give_the_same_reproducible_p_values() -> None:
    qrels = {f"q{i}": {"rel": 1} for i in range(40)}
    good = {q: {"rel": 1.0, "x": 0.5} for q in qrels}
    worse = {q: ({"x": 1.0, "rel": 0.5} if i % 7 == 0 else {"rel": 1.0, "x": 0.5}) for i, q in enumerate(qrels)}
    runs = {"good": good, "worse": worse}
    first = M.compare(qrels, runs)
    assert first == M.compare(qrels, runs)
    assert first["good"]["worse"] == first["worse"]["good"]
    assert M.evaluate_all(qrels, runs, [1, 5])["p_values"] == first
    # 6 of 40 queries lost, none won: the exact p is 2 / 2^6 = 0.031
    assert first["good"]["worse"]["hit_rate@1"] == pytest.approx(2 / 2 ** 6, abs=0.015)


def test_student_test_on_one_query_is_not_nan() -> None:
    assert M.paired_test(np.array([0.0]), np.array([1.0]), "student") == 1.0
    assert M.paired_test(np.zeros(5), np.ones(5), "student") == 0.0   # every query better by the same amount
