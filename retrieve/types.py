"""Types shared by search, fusion, indexing and evaluation (the TREC / ranx shape), and the backend contract.

Every backend (Lucene BM25, FAISS dense, the hybrid of any two, a sharded backend) implements `Backend`:
`search`, `batch_search` and `score`, all over `Query` objects, optionally limited to a `Scope` (a set of
collections). Writable backends add `upsert`, `delete` and `commit() -> generation`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol, Sequence, runtime_checkable

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


@dataclass(frozen=True, slots=True)
class IndexDoc:
    """One document as an index stores it: text to analyse, its vector (already encoded, L2-normalised),
    the collection it belongs to, and the payload shown with hits (the description, never pixels)."""

    id: str
    text: str
    vector: Any = None  # np.ndarray of shape (dim,), float32
    collection: str | None = None
    payload: dict | None = None
    parts: Any = None   # multi-vector indexes: (n_parts, dim) float32 vectors of its sentences (retrieve/multivector.py)
    hubness: float | None = None  # indexes with a query bank: the document's hubness offset (retrieve/hubness.py)


class Query:
    """A query and what backends derive from it (analysed terms, an embedding), computed once and shared
    by every backend a hybrid calls, so composition costs no repeated work."""

    __slots__ = ("text", "id", "_derived")

    def __init__(self, text: str, id: str | None = None) -> None:
        self.text = text
        self.id = id
        self._derived: dict[str, Any] = {}

    def derived(self, key: str, compute: Callable[[str], Any]) -> Any:
        """The representation `key` of this query, computed by `compute(text)` on first use."""
        if key not in self._derived:
            self._derived[key] = compute(self.text)
        return self._derived[key]

    def set_derived(self, key: str, value: Any) -> None:
        self._derived[key] = value

    def has(self, key: str) -> bool:
        return key in self._derived

    @property
    def empty(self) -> bool:
        return not self.text.strip()

    def __repr__(self) -> str:
        return f"Query({self.text!r})"


@dataclass(frozen=True, slots=True)
class Scope:
    """Which collections a search may see. Statistics (BM25 idf, average length) are those of the scope
    alone, so a scoped search equals a search over an index holding only those collections."""

    collections: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(cls, collections: Iterable[str] | str | None) -> "Scope | None":
        if collections is None:
            return None
        names = [collections] if isinstance(collections, str) else list(collections)
        return cls(frozenset(names))

    @property
    def key(self) -> tuple[str, ...]:
        return tuple(sorted(self.collections))


def as_query(q: "Query | str") -> Query:
    return q if isinstance(q, Query) else Query(q)


@runtime_checkable
class Backend(Protocol):
    """The read contract: one for sparse, dense, hybrid and sharded backends. Optional: `batch_k(k) -> int`,
    equal for every k whose top k are the first k of one ranking, so that a search batcher may answer them
    with one batch search (retrieve/search_batching.py; the hybrid has it)."""

    def search(self, query: Query | str, k: int = 10, scope: Scope | None = None) -> list[Hit]: ...

    def batch_search(self, queries: Sequence[Query], k: int = 10, scope: Scope | None = None
                     ) -> list[list[Hit]]: ...

    def score(self, query: Query | str, ids: Sequence[str], scope: Scope | None = None) -> dict[str, float]: ...


@runtime_checkable
class WritableBackend(Backend, Protocol):
    """Changes become visible to searches at `commit`, which returns the new generation."""

    def upsert(self, docs: Sequence[IndexDoc]) -> None: ...

    def delete(self, ids: Iterable[str]) -> None: ...

    def commit(self) -> int: ...


Searcher = Backend  # the name used before the live engine


def hits_from_scores(scores: dict[str, float], k: int) -> list[Hit]:
    """Rank a {doc: score} mapping (ties broken by id so runs are deterministic)."""
    ordered = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
    return ranked_hits([d for d, _ in ordered], [s for _, s in ordered])


def ranked_hits(ids: Sequence[str], scores: Sequence[float]) -> list[Hit]:
    """Hits for ids already in rank order (best first), with their scores."""
    return [Hit(id=d, score=float(s), rank=i + 1) for i, (d, s) in enumerate(zip(ids, scores))]


def run_from_hits(results: dict[str, Sequence[Hit]]) -> Run:
    return {qid: {h.id: h.score for h in hits} for qid, hits in results.items()}


def clean_text(text: str) -> str:
    """Make arbitrary user text safe for Java and tokenizers: no NULs, no lone surrogates."""
    return text.replace("\x00", " ").encode("utf-8", "replace").decode("utf-8")


def batch_run(backend: Backend, queries: "dict[str, str]", k: int = 10, scope: Scope | None = None) -> Run:
    """`batch_search` of {query id: text} as a Run (the TREC / ranx shape eval and benchmarks use)."""
    batch = [Query(text, qid) for qid, text in queries.items()]
    return {q.id: {h.id: h.score for h in hits} for q, hits in zip(batch, backend.batch_search(batch, k, scope))}
