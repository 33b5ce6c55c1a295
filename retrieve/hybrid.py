"""Hybrid search: over-fetch `depth` candidates from BM25 and from dense, score every candidate on
both sides exactly (no substituted scores for documents one side did not return), then fuse."""
from __future__ import annotations

from typing import Sequence

from vfr.retrieve.dense import FaissSearcher
from vfr.retrieve.fusion import FusionConfig, fuse
from vfr.retrieve.sparse import LuceneSearcher
from vfr.retrieve.types import Hit, Run, hits_from_scores


class HybridSearcher:
    def __init__(self, sparse: LuceneSearcher, dense: FaissSearcher, fusion: FusionConfig | None = None) -> None:
        self.sparse = sparse
        self.dense = dense
        self.fusion = fusion or FusionConfig()

    def candidates(self, query: str, qvec, extra: Sequence[str] = (), dense_hits: list[Hit] | None = None,
                   sparse_hits: list[Hit] | None = None) -> tuple[dict, dict]:
        """Sparse and dense scores of the union of both sides' top-`depth` (plus `extra` ids)."""
        depth = self.fusion.depth
        if sparse_hits is None:
            sparse_hits = self.sparse.search(query, depth)
        sparse = {h.id: h.score for h in sparse_hits}
        if dense_hits is None:
            dense_hits = self.dense.search_vectors(qvec, depth)[0]
        dense = {h.id: h.score for h in dense_hits}
        if self.fusion.method == "convex":  # rank fusion needs no exact scores for the other side
            union = list(dict.fromkeys([*sparse, *dense, *extra]))
            missing_sparse = [d for d in union if d not in sparse]
            missing_dense = [d for d in union if d not in dense]
            if missing_sparse:
                sparse.update(self.sparse.score(query, missing_sparse))
            if missing_dense:
                dense.update(self.dense.score_vector(qvec, missing_dense))
        return sparse, dense

    def _fused(self, query: str, qvec, extra: Sequence[str] = (), dense_hits: list[Hit] | None = None,
               sparse_hits: list[Hit] | None = None) -> dict[str, float]:
        sparse, dense = self.candidates(query, qvec, extra, dense_hits, sparse_hits)
        return fuse([{"q": sparse}, {"q": dense}], self.fusion).get("q", {})

    def search(self, query: str, k: int = 10) -> list[Hit]:
        # Lucene searches on its own thread while torch encodes the query (both release the GIL):
        # the BM25 side then costs almost nothing on the critical path.
        sparse_hits = self.sparse.search_in_background(query, self.fusion.depth)
        qvec = self.dense.encode([query])
        return hits_from_scores(self._fused(query, qvec, sparse_hits=sparse_hits()), k)

    def batch_search(self, queries: dict[str, str], k: int = 10) -> Run:
        qids = list(queries)
        if not qids:
            return {}
        texts = [queries[q] for q in qids]
        # Lucene works through the batch on its own thread while this one encodes, then fuses
        sparse_hits = self.sparse.search_many_in_background(texts, self.fusion.depth)
        vecs = self.dense.encode(texts)
        dense_hits = self.dense.search_vectors(vecs, self.fusion.depth)  # one batched FAISS search
        out: Run = {}
        for qid, vec, dh, sh in zip(qids, vecs, dense_hits, sparse_hits):
            fused = self._fused(queries[qid], vec[None, :], dense_hits=dh, sparse_hits=sh)
            out[qid] = {h.id: h.score for h in hits_from_scores(fused, k)}
        return out

    def score(self, query: str, doc_ids: Sequence[str]) -> dict[str, float]:
        """Fused score of the given documents, normalised against this query's candidate lists."""
        fused = self._fused(query, self.dense.encode([query]), extra=doc_ids)
        return {d: fused.get(d, 0.0) for d in doc_ids}
