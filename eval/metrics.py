"""IR metrics through ranx (not hand-written), paired significance tests, bootstrap intervals.

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
    ranx = _ranx()
    values = ranx.evaluate(_qrels(qrels), _run(run, qrels, "run"), metric, return_mean=False)
    return np.asarray(values, dtype=float)


def recall_curve(qrels: Qrels, run: Run, ks: Sequence[int]) -> list[float]:
    """R@k (hit rate) for each k; the recall@k plot."""
    scores = evaluate(qrels, run, [f"hit_rate@{k}" for k in ks])
    return [scores[f"hit_rate@{k}"] for k in ks]


def compare(qrels: Qrels, runs: Mapping[str, Run], metrics: Sequence[str] = METRICS,
            test: str = "fisher", permutations: int = 1000, seed: int = 42) -> dict[str, dict[str, dict[str, float]]]:
    """Paired significance test for every pair of runs on every metric.

    `fisher` is the paired randomisation (permutation) test, the IR standard; `student` the paired
    t-test. Returns {run a: {run b: {metric: p-value}}}; no multiple-comparison correction.
    """
    if len(runs) < 2:
        return {}
    ranx = _ranx()
    q = _qrels(qrels)
    report = ranx.compare(q, [_run(r, qrels, name) for name, r in runs.items()], list(metrics),
                          stat_test=test, n_permutations=permutations, random_seed=seed, max_p=0.05)
    raw = report.to_dict()
    return {a: {b: {m: float(p) for m, p in ps.items()} for b, ps in raw[a]["comparisons"].items()}
            for a in runs}


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
    for name, r in ranx_runs.items():
        scores = ranx.evaluate(q, r, wanted)
        out["metrics"][name] = {m: float(scores[m]) for m in (*METRICS, *EXTRA_METRICS)}
        out["curves"][name] = {"k": list(curve_ks), "r": [float(scores[m]) for m in curve]}
        hits = np.asarray(ranx.evaluate(q, r, "hit_rate@1", return_mean=False), dtype=float)
        out["r1_ci95"][name] = list(bootstrap_ci(hits, seed=seed))
    out["p_values"] = {}
    if len(ranx_runs) > 1:
        report = ranx.compare(q, list(ranx_runs.values()), list(METRICS), stat_test=test, n_permutations=1000,
                              random_seed=42, max_p=0.05)
        raw = report.to_dict()
        out["p_values"] = {a: {b: {m: float(p) for m, p in ps.items()} for b, ps in raw[a]["comparisons"].items()}
                           for a in ranx_runs}
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
