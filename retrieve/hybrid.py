"""Hybrid search: any two backends composed through the backend contract only.

Over-fetch `depth` candidates from each side, score every candidate on both sides exactly (`score`, so
there are no substituted scores for documents one side did not return), then fuse (retrieve/fusion.py).
The first backend's search runs on a Lucene pool thread while the second encodes the query (both release
the GIL), so the sparse side costs almost nothing on the critical path.
"""
from __future__ import annotations

from typing import Sequence

from vfr.retrieve.fusion import FusionConfig, fuse_batch
from vfr.retrieve.types import Backend, Hit, Query, Scope, as_query, hits_from_scores


class HybridBackend:
    def __init__(self, sparse: Backend, dense: Backend, fusion: FusionConfig | None = None,
                 background=None) -> None:
        self.sparse, self.dense = sparse, dense
        self.fusion = fusion or FusionConfig()
        self._background = background  # submit(fn, *args) -> Future, for the first side; None: inline

    def _first_side(self, fn, *args):
        if self._background is None:
            result = fn(*args)
            return lambda: result
        return self._background(fn, *args).result

    def candidates(self, q: Query, scope: Scope | None, sparse_hits: list[Hit], dense_hits: list[Hit],
                   extra: Sequence[str] = ()) -> tuple[dict[str, float], dict[str, float]]:
        """Both sides' scores of the union of their candidates (and `extra` ids)."""
        sparse = {h.id: h.score for h in sparse_hits}
        dense = {h.id: h.score for h in dense_hits}
        if self.fusion.method == "convex":  # rank fusion needs no exact scores for the other side
            union = list(dict.fromkeys([*sparse, *dense, *extra]))
            missing_sparse = [d for d in union if d not in sparse]
            missing_dense = [d for d in union if d not in dense]
            if missing_sparse:
                sparse.update(self.sparse.score(q, missing_sparse, scope))
            if missing_dense:
                dense.update(self.dense.score(q, missing_dense, scope))
        return sparse, dense

    def search(self, query: Query | str, k: int = 10, scope: Scope | None = None) -> list[Hit]:
        q = as_query(query)
        if q.empty or k <= 0:
            return []
        depth = max(self.fusion.depth, k)
        sparse_hits = self._first_side(self.sparse.search, q, depth, scope)
        dense_hits = self.dense.search(q, depth, scope)
        sparse, dense = self.candidates(q, scope, sparse_hits(), dense_hits)
        return hits_from_scores(fuse_batch([sparse], [dense], self.fusion)[0], k)

    def batch_k(self, k: int) -> int:
        """Searches for any k up to the fusion depth fuse the same candidates (each side's top `depth`), so each
        one's top k is the first k of one ranking (ties broken by id): a batcher may answer them all with one
        search at the largest of their k (retrieve/search_batching.py). A larger k has candidates of its own."""
        return self.fusion.depth if 0 < k <= self.fusion.depth else k

    def batch_search(self, queries: Sequence[Query], k: int = 10, scope: Scope | None = None) -> list[list[Hit]]:
        queries = [as_query(q) for q in queries]
        if not queries:
            return []
        sparse, dense = self.candidate_scores(queries, max(self.fusion.depth, k), scope,
                                              exact=self.fusion.method == "convex")
        fused = fuse_batch(sparse, dense, self.fusion)
        return [hits_from_scores(f, k) if not q.empty else [] for q, f in zip(queries, fused)]

    def candidate_scores(self, queries: Sequence[Query], depth: int, scope: Scope | None = None,
                         exact: bool = True) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
        """Each query's `depth` candidates from both sides and, with `exact`, every candidate of the union
        scored on both sides (one call per side). Fusion settings can then be compared on the same
        candidates without searching again (retrieve/tuning.py)."""
        queries = [as_query(q) for q in queries]
        sparse_all = self._first_side(self.sparse.batch_search, queries, depth, scope)
        dense_all = self.dense.batch_search(queries, depth, scope)
        sparse = [{h.id: h.score for h in hits} for hits in sparse_all()]
        dense = [{h.id: h.score for h in hits} for hits in dense_all]
        if exact:
            union = [list(dict.fromkeys([*s, *d])) for s, d in zip(sparse, dense)]
            self._fill(self.sparse, queries, sparse, union, scope)
            self._fill(self.dense, queries, dense, union, scope)
        return sparse, dense

    @staticmethod
    def _fill(side: Backend, queries: Sequence[Query], scores: list[dict[str, float]], union: list[list[str]],
              scope: Scope | None) -> None:
        """Add the side's exact scores of each query's candidates it did not return itself."""
        missing = [[d for d in u if d not in s] for s, u in zip(scores, union)]
        if not any(missing):
            return
        batch = getattr(side, "score_batch", None)
        found = batch(queries, missing, scope) if batch else [side.score(q, m, scope) if m else {}
                                                               for q, m in zip(queries, missing)]
        for s, f in zip(scores, found):
            s.update(f)

    def score(self, query: Query | str, ids: Sequence[str], scope: Scope | None = None) -> dict[str, float]:
        """Fused score of the given documents, normalised against this query's candidate lists."""
        q = as_query(query)
        if q.empty:
            return dict.fromkeys(ids, 0.0)
        depth = self.fusion.depth
        sparse, dense = self.candidates(q, scope, self.sparse.search(q, depth, scope),
                                        self.dense.search(q, depth, scope), extra=ids)
        fused = fuse_batch([sparse], [dense], self.fusion)[0]
        return {d: fused.get(d, 0.0) for d in ids}
