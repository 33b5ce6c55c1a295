"""Types shared by search, fusion and evaluation (the TREC / ranx shape)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

Run = dict[str, dict[str, float]]
"""query id → {doc id → score}; what every searcher returns in batch and what eval consumes."""


@dataclass(frozen=True, slots=True)
class Document:
    id: str
    text: str


@dataclass(frozen=True, slots=True)
class Hit:
    id: str
    score: float
    rank: int


class Searcher(Protocol):
    """One contract for every backend: sparse, dense and hybrid."""

    def search(self, query: str, k: int = 10) -> list[Hit]: ...

    def batch_search(self, queries: dict[str, str], k: int = 10) -> Run: ...


def hits_from_scores(scores: dict[str, float], k: int) -> list[Hit]:
    """Rank a {doc: score} mapping (ties broken by id so runs are deterministic)."""
    ordered = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
    return [Hit(id=d, score=float(s), rank=i + 1) for i, (d, s) in enumerate(ordered)]


def run_from_hits(results: dict[str, Sequence[Hit]]) -> Run:
    return {qid: {h.id: h.score for h in hits} for qid, hits in results.items()}


def clean_text(text: str) -> str:
    """Make arbitrary user text safe for Java and tokenizers: no NULs, no lone surrogates."""
    return text.replace("\x00", " ").encode("utf-8", "replace").decode("utf-8")
