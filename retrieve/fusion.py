"""Rank fusion: pure functions over runs ({query: {doc: score}}), plus the hybrid's configuration.

`rrf` uses ranks only; `convex` combines normalised scores with weights. A document missing from
one run gets that run's lowest normalised score for the query (stated, not silent: the hybrid
searcher avoids it altogether by scoring every candidate on both sides).
"""
from __future__ import annotations

import math

import numpy as np
from dataclasses import asdict, dataclass
from typing import Literal, Sequence

from vfr.retrieve.types import Run

Norm = Literal["minmax", "zscore"]


MAX_WEIGHT = 1e6  # larger weights add nothing (only their ratio matters) and could overflow a fused score


@dataclass(frozen=True)
class FusionConfig:
    """How the hybrid combines sparse and dense. Defaults chosen on COCO val (docs/fusion.md)."""

    method: Literal["convex", "rrf"] = "convex"
    weights: tuple[float, float] = (0.1, 0.9)  # (sparse, dense)
    norm: Norm = "zscore"
    rrf_k: int = 60
    depth: int = 100

    def __post_init__(self) -> None:
        if self.method not in ("convex", "rrf"):
            raise ValueError(f"unknown fusion {self.method!r}: use convex or rrf")
        if self.norm not in ("minmax", "zscore"):
            raise ValueError(f"unknown normalisation {self.norm!r}: use minmax or zscore")
        if len(self.weights) != 2 or not all(math.isfinite(w) and 0 <= w <= MAX_WEIGHT for w in self.weights) \
                or sum(self.weights) <= 0:
            raise ValueError(f"weights must be two finite numbers from 0 to {MAX_WEIGHT:g} (sparse, dense) with a "
                             "positive sum")
        if self.depth < 1 or self.rrf_k < 0:
            raise ValueError("depth must be >= 1 and rrf_k >= 0")

    def to_dict(self) -> dict:
        return asdict(self)


# A list whose spread is below this share of its largest magnitude (at least 1) counts as constant. Scores of
# equal texts can differ in their last float bits (another segment, another batch shape); without the
# tolerance the z-score would blow that noise up to ±1 and let it decide a ranking.
CONSTANT_SPREAD = 1e-6


def _constant(spread: float | np.ndarray, magnitude: float | np.ndarray) -> bool | np.ndarray:
    return spread <= CONSTANT_SPREAD * np.maximum(1.0, magnitude)


def normalise(scores: dict[str, float], norm: Norm) -> dict[str, float]:
    """Min-max to [0, 1] or z-score; a constant list (within CONSTANT_SPREAD) maps to 1.0 (min-max) or 0.0
    (z-score)."""
    if not scores:
        return {}
    values = list(scores.values())
    magnitude = max(abs(v) for v in values)
    if norm == "minmax":
        lo, hi = min(values), max(values)
        span = hi - lo
        flat = _constant(span, magnitude)
        return {d: (1.0 if flat else (s - lo) / span) for d, s in scores.items()}
    if norm == "zscore":
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
        flat = _constant(std, magnitude)
        return {d: (0.0 if flat else (s - mean) / std) for d, s in scores.items()}
    raise ValueError(f"unknown normalisation {norm!r}")


def rrf(runs: Sequence[Run], k: int = 60) -> Run:
    """Reciprocal-rank fusion: score(d) = Σ 1 / (k + rank(d)), ranks from 1, ties broken by doc id."""
    fused: Run = {}
    for run in runs:
        for qid, scores in run.items():
            ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
            acc = fused.setdefault(qid, {})
            for rank, (doc, _) in enumerate(ranked, start=1):
                acc[doc] = acc.get(doc, 0.0) + 1.0 / (k + rank)
    return fused


def convex(runs: Sequence[Run], weights: Sequence[float], norm: Norm = "zscore") -> Run:
    """Σ w_i · normalised score_i(d). A doc absent from run i gets run i's minimum normalised score."""
    if len(runs) != len(weights):
        raise ValueError(f"{len(runs)} runs but {len(weights)} weights")
    fused: Run = {}
    qids = {q for run in runs for q in run}
    for qid in qids:
        normed = [normalise(run.get(qid, {}), norm) for run in runs]
        docs = {d for n in normed for d in n}
        floor = [min(n.values()) if n else 0.0 for n in normed]
        fused[qid] = {d: sum(w * n.get(d, f) for w, n, f in zip(weights, normed, floor)) for d in docs}
    return fused


def fuse(runs: Sequence[Run], config: FusionConfig) -> Run:
    if config.method == "rrf":
        return rrf(runs, config.rrf_k)
    return convex(runs, config.weights, config.norm)


def fuse_batch(sparse: Sequence[dict[str, float]], dense: Sequence[dict[str, float]], config: FusionConfig
               ) -> list[dict[str, float]]:
    """Fuse a batch of queries' two candidate lists with array operations (no per-query Python loop
    for convex fusion). For convex fusion each query's two dicts should score the same documents (the
    hybrid scores every candidate on both sides); a document missing from one side gets that side's
    lowest normalised score, as `convex` does."""
    if config.method == "rrf":
        return [rrf([{"q": s}, {"q": d}], config.rrf_k).get("q", {}) for s, d in zip(sparse, dense)]
    docs = [list(dict.fromkeys([*s, *d])) for s, d in zip(sparse, dense)]
    sizes = np.fromiter((len(x) for x in docs), dtype=np.int64, count=len(docs))
    if not sizes.sum():
        return [{} for _ in docs]
    qidx = np.repeat(np.arange(len(docs)), sizes)
    normed = []
    for side in (sparse, dense):
        present = np.fromiter((d in side[q] for q, ds in enumerate(docs) for d in ds), dtype=bool, count=len(qidx))
        values = np.fromiter((side[q].get(d, 0.0) for q, ds in enumerate(docs) for d in ds), dtype=np.float64,
                             count=len(qidx))
        normed.append(normalise_grouped(values, present, qidx, len(docs), config.norm))
    fused = config.weights[0] * normed[0] + config.weights[1] * normed[1]
    out, start = [], 0
    for ds, n in zip(docs, sizes.tolist()):
        out.append(dict(zip(ds, fused[start:start + n].tolist())))
        start += n
    return out


def normalise_grouped(values: np.ndarray, present: np.ndarray, qidx: np.ndarray, groups: int, norm: Norm
                       ) -> np.ndarray:
    """`normalise` per query over the present values; absent entries get the query's minimum."""
    counts = np.bincount(qidx, weights=present, minlength=groups)
    safe = np.maximum(counts, 1)
    magnitude = np.zeros(groups)
    np.maximum.at(magnitude, qidx[present], np.abs(values[present]))
    if norm == "zscore":
        mean = np.bincount(qidx, weights=np.where(present, values, 0.0), minlength=groups) / safe
        dev = np.where(present, values - mean[qidx], 0.0)
        std = np.sqrt(np.bincount(qidx, weights=dev * dev, minlength=groups) / safe)
        ok = ~_constant(std, magnitude)
        out = np.where(ok[qidx], (values - mean[qidx]) / np.where(ok, std, 1.0)[qidx], 0.0)
    elif norm == "minmax":
        lo = np.full(groups, np.inf)
        hi = np.full(groups, -np.inf)
        np.minimum.at(lo, qidx[present], values[present])
        np.maximum.at(hi, qidx[present], values[present])
        span = hi - lo
        ok = np.isfinite(span) & ~_constant(np.where(np.isfinite(span), span, 0.0), magnitude)
        out = np.where(ok[qidx], (values - np.where(np.isfinite(lo), lo, 0.0)[qidx]) / np.where(ok, span, 1.0)[qidx],
                       1.0)
    else:
        raise ValueError(f"unknown normalisation {norm!r}")
    floor = np.full(groups, np.inf)
    np.minimum.at(floor, qidx[present], out[present])
    floor = np.where(np.isfinite(floor), floor, 0.0)
    return np.where(present, out, floor[qidx])
