"""IR metrics through ranx (not hand-written), seeded paired significance tests, bootstrap intervals.

R@k follows the cross-modal retrieval convention (CLIP, SigLIP papers): a query succeeds when any
relevant item is in its top k, i.e. ranx `hit_rate@k`. With one relevant item (text→image) this is
plain recall@k; with five relevant captions (image→text) it is what the literature calls R@k, while
ranx `recall@k` (fraction of the five found) is kept in the JSON as `recall@k`.
"""
from __future__ import annotations

import warnings
from typing import Any, Mapping, Sequence

import numpy as np

from vfr.retrieve.types import Run

Qrels = Mapping[str, Mapping[str, int]]

METRICS = ("hit_rate@1", "hit_rate@5", "hit_rate@10", "mrr@10", "ndcg@10")
EXTRA_METRICS = ("recall@5", "recall@10")
LABELS = {"hit_rate@1": "R@1", "hit_rate@5": "R@5", "hit_rate@10": "R@10", "mrr@10": "MRR@10",
          "ndcg@10": "nDCG@10", "recall@5": "recall@5", "recall@10": "recall@10"}


def _ranx():
    warnings.filterwarnings("ignore", module="ranx")
    warnings.filterwarnings("ignore", message=".*unsafe cast.*")
    import ranx

    return ranx


def _qrels(qrels: Qrels):
    ranx = _ranx()
    return ranx.Qrels({q: {d: int(r) for d, r in docs.items()} for q, docs in qrels.items()})


def _run(run: Run, qrels: Qrels, name: str):
    """A ranx Run over exactly the judged queries: a query the searcher returned nothing for scores 0."""
    ranx = _ranx()
    copy = {q: {d: float(s) for d, s in run.get(q, {}).items()} for q in qrels}
    empty = [q for q, docs in copy.items() if not docs]
    for q in empty:  # ranx cannot hold an empty ranking: a sentinel doc that is never relevant
        copy[q] = {"__no_result__": 0.0}
    return ranx.Run(copy, name=name)


def to_target_run(run: Run, doc_target: Mapping[str, str] | None) -> Run:
    """Several documents per target (one image, many descriptions): a target scores its best document."""
    if not doc_target:
        return run
    out: Run = {}
    for q, docs in run.items():
        pooled: dict[str, float] = {}
        for d, s in docs.items():
            t = doc_target.get(d, d)
            if t not in pooled or s > pooled[t]:
                pooled[t] = s
        out[q] = pooled
    return out


def evaluate(qrels: Qrels, run: Run, metrics: Sequence[str] = METRICS + EXTRA_METRICS) -> dict[str, float]:
    """Mean of each metric over every judged query (unanswered queries count as 0)."""
    ranx = _ranx()
    scores = ranx.evaluate(_qrels(qrels), _run(run, qrels, "run"), list(metrics))
    if isinstance(scores, float | np.floating):
        scores = {metrics[0]: scores}
    return {m: float(v) for m, v in scores.items()}


def per_query(qrels: Qrels, run: Run, metric: str) -> np.ndarray:
    """Per-query values of one metric, in sorted query-id order (for bootstrap and plots)."""
    return _per_query(_qrels(qrels), _run(run, qrels, "run"), [metric])[metric]


def recall_curve(qrels: Qrels, run: Run, ks: Sequence[int]) -> list[float]:
    """R@k (hit rate) for each k; the recall@k plot."""
    scores = evaluate(qrels, run, [f"hit_rate@{k}" for k in ks])
    return [scores[f"hit_rate@{k}"] for k in ks]


def paired_test(a: np.ndarray, b: np.ndarray, test: str = "fisher", permutations: int = 1000,
                seed: int = 42) -> float:
    """Two-sided p-value that paired per-query values `a` and `b` have the same mean.

    `fisher`: the paired randomisation test (Smucker et al., CIKM 2007): each query's two values swap with
    probability 1/2, and p is the share of `permutations` random swaps whose |mean difference| reaches the
    observed one, counted as (hits + 1) / (permutations + 1) so an estimate is never 0 (Phipson & Smyth
    2010; 1,000 permutations put the floor near 0.001). The swaps come from one numpy generator seeded by
    `seed`, so the same inputs always give the same p (ranx draws in parallel threads and does not).
    `student`: the paired t-test (scipy). Identical inputs give p = 1.
    """
    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    if d.size == 0 or not d.any():
        return 1.0
    if test == "student":
        from scipy import stats

        if d.size < 2:  # one query: no variance to test against
            return 1.0
        if np.ptp(d) == 0:  # every query differs by the same amount: t is infinite
            return 0.0
        return float(stats.ttest_rel(b, a).pvalue)
    if test != "fisher":
        raise ValueError(f"unknown paired test {test!r}: fisher or student")
    observed = abs(d.sum())
    tolerance = 1e-9 * np.abs(d).sum()  # sums of the same terms in another order may differ in the last bits
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, permutations, 250):  # bounded memory on large query sets
        signs = rng.integers(0, 2, size=(min(250, permutations - start), d.size), dtype=np.int8) * 2 - 1
        hits += int(np.count_nonzero(np.abs(signs @ d) >= observed - tolerance))
    return (hits + 1) / (permutations + 1)


def _p_values(per_query: Mapping[str, Mapping[str, np.ndarray]], metrics: Sequence[str], test: str,
              permutations: int, seed: int) -> dict[str, dict[str, dict[str, float]]]:
    """{run a: {run b: {metric: p}}} for every ordered pair of runs; the test is symmetric, so each pair once."""
    names = list(per_query)
    out: dict[str, dict[str, dict[str, float]]] = {a: {} for a in names}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            ps = {m: paired_test(per_query[a][m], per_query[b][m], test, permutations, seed) for m in metrics}
            out[a][b] = ps
            out[b][a] = dict(ps)
    return out


def _per_query(q, ranx_run, metrics: Sequence[str]) -> dict[str, np.ndarray]:
    values = _ranx().evaluate(q, ranx_run, list(metrics), return_mean=False)
    if not isinstance(values, dict):
        values = {metrics[0]: values}
    return {m: np.asarray(v, dtype=float) for m, v in values.items()}


def compare(qrels: Qrels, runs: Mapping[str, Run], metrics: Sequence[str] = METRICS,
            test: str = "fisher", permutations: int = 1000, seed: int = 42) -> dict[str, dict[str, dict[str, float]]]:
    """Paired significance test (`paired_test`) for every pair of runs on every metric.

    Returns {run a: {run b: {metric: p-value}}}; no multiple-comparison correction.
    """
    if len(runs) < 2:
        return {}
    q = _qrels(qrels)
    per_query = {name: _per_query(q, _run(r, qrels, name), metrics) for name, r in runs.items()}
    return _p_values(per_query, metrics, test, permutations, seed)


def evaluate_all(qrels: Qrels, runs: Mapping[str, Run], curve_ks: Sequence[int], test: str = "fisher",
                 seed: int = 0) -> dict[str, Any]:
    """Everything a retrieval task reports, converting each run to ranx once (large runs convert slowly):
    means, R@1 bootstrap intervals, the R@k curve and paired p-values between runs."""
    ranx = _ranx()
    q = _qrels(qrels)
    ranx_runs = {name: _run(run, qrels, name) for name, run in runs.items()}
    curve = [f"hit_rate@{k}" for k in curve_ks]
    wanted = list(dict.fromkeys([*METRICS, *EXTRA_METRICS, *curve]))
    out: dict[str, Any] = {"metrics": {}, "r1_ci95": {}, "curves": {}}
    per_query = {}
    for name, r in ranx_runs.items():
        scores = ranx.evaluate(q, r, wanted)
        out["metrics"][name] = {m: float(scores[m]) for m in (*METRICS, *EXTRA_METRICS)}
        out["curves"][name] = {"k": list(curve_ks), "r": [float(scores[m]) for m in curve]}
        per_query[name] = _per_query(q, r, METRICS)
        out["r1_ci95"][name] = list(bootstrap_ci(per_query[name]["hit_rate@1"], seed=seed))
    out["p_values"] = _p_values(per_query, METRICS, test, 1000, 42) if len(per_query) > 1 else {}
    return out


def bootstrap_ci(values: np.ndarray, confidence: float = 0.95, resamples: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-query values (e.g. R@1 hits)."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return float("nan"), float("nan")
    if np.all(values == values[0]):  # degenerate: every resample has the same mean
        return float(values[0]), float(values[0])
    res = stats.bootstrap((values,), np.mean, confidence_level=confidence, n_resamples=resamples,
                          method="percentile", rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def accuracy_ci(correct: np.ndarray, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval for an accuracy (compositional tasks)."""
    return bootstrap_ci(correct, confidence, seed=seed)
