"""Rank fusion: pure functions over runs ({query: {doc: score}}), plus the hybrid's configuration.

`rrf` uses ranks only; `convex` combines normalised scores with weights. A document missing from
one run gets that run's lowest normalised score for the query (stated, not silent: the hybrid
searcher avoids it altogether by scoring every candidate on both sides).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal, Sequence

from vfr.retrieve.types import Run

Norm = Literal["minmax", "zscore"]


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
        if len(self.weights) != 2 or any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
            raise ValueError("weights must be two non-negative numbers (sparse, dense) with a positive sum")
        if self.depth < 1 or self.rrf_k < 0:
            raise ValueError("depth must be >= 1 and rrf_k >= 0")

    def to_dict(self) -> dict:
        return asdict(self)


def normalise(scores: dict[str, float], norm: Norm) -> dict[str, float]:
    """Min-max to [0, 1] or z-score; a constant list maps to 1.0 (min-max) or 0.0 (z-score)."""
    if not scores:
        return {}
    values = list(scores.values())
    if norm == "minmax":
        lo, hi = min(values), max(values)
        span = hi - lo
        return {d: ((s - lo) / span if span > 0 else 1.0) for d, s in scores.items()}
    if norm == "zscore":
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
        return {d: ((s - mean) / std if std > 0 else 0.0) for d, s in scores.items()}
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
