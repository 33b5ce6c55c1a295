"""The sparse (Lucene BM25) and dense (FAISS) backends of a live index, behind the one backend contract.

Both read the newest generation through an `IndexHandle` on every call, so they never serve a document a
writer has deleted once its commit returned.

Sparse: Lucene finds candidates (its statistics count deleted documents and ignore scopes); the forward
index rescores them exactly with the live statistics of the scope (retrieve/bm25.py), and Lucene is asked
for more candidates until a bound proves that no document it has not returned could enter the top k.
Dense: every segment is searched (with a selector for a scope) and the per-segment results are merged.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

import numpy as np

from vfr.retrieve import bm25_batch, hubness, lucene, multivector
from vfr.retrieve.bm25 import Bm25Scorer, bound_ratio, term_stats
from vfr.retrieve.dense import merge_topk, selector
from vfr.retrieve.fields import LUCENE_PREFIX
from vfr.retrieve.snapshot import IndexHandle, Snapshot
from vfr.retrieve.types import Hit, Query, Scope, as_query, hits_from_scores, ranked_hits

MAX_FETCH = 1 << 14  # Lucene candidates at most (only huge runs of tied scores get near it)
TERMS = "bm25_terms"


def _terms(q: Query):
    return q.derived(TERMS, lucene.query_terms)


def _terms_for(snap: Snapshot, q: Query) -> Counter:
    """The query's terms for this index: with BM25 fields each term is a clause per field, so the most
    frequent terms are kept within Lucene's clause limit (the same terms for search and score)."""
    terms = _terms(q)
    n = 1 + len(snap.manifest["config"].get("fields") or ())
    if n > 1 and len(terms) * n > lucene.MAX_CLAUSES:
        terms = Counter(dict(terms.most_common(lucene.MAX_CLAUSES // n)))
    return terms


def _parts(snap: Snapshot, terms: Counter) -> list[tuple[str | None, Counter]]:
    """(field, term boosts) of each scored part: the whole text (None) with the query's term counts, and each
    BM25 field with counts × its weight, rounded to float32 as the Lucene query carries them."""
    out: list[tuple[str | None, Counter]] = [(None, terms)]
    for field, weight in snap.manifest["config"].get("fields") or ():
        out.append((field, Counter({t: float(np.float32(c * float(weight))) for t, c in terms.items()})))
    return out


def _by_segment(where: dict[str, tuple[int, int]]) -> dict[int, list[tuple[str, int]]]:
    """{id: (segment, row)} → {segment: [(id, row)]}."""
    by_seg: dict[int, list[tuple[str, int]]] = {}
    for d, (i, r) in where.items():
        by_seg.setdefault(i, []).append((d, r))
    return by_seg


class SparseBackend:
    """BM25 with exact live statistics; scores equal Lucene's on a fresh build of the scope's documents."""

    def __init__(self, handle: IndexHandle) -> None:
        self.handle = handle

    def search(self, query: Query | str, k: int = 10, scope: Scope | None = None) -> list[Hit]:
        q = as_query(query)
        with self.handle.acquire() as snap:
            return self._search(snap, q, k, scope)

    def batch_search(self, queries: Sequence[Query], k: int = 10, scope: Scope | None = None) -> list[list[Hit]]:
        """Exact top k of each query, scoring the batch against every visible document at once
        (retrieve/bm25_batch.py) instead of one Lucene search and rescoring per query."""
        queries = [as_query(q) for q in queries]
        out: list[list[Hit]] = []
        with self.handle.acquire() as snap:
            for start in range(0, len(queries), bm25_batch.CHUNK):
                chunk = queries[start:start + bm25_batch.CHUNK]
                for pos, vals in bm25_batch.top_k(self.score_matrix(snap, chunk, scope), snap.all_ids, k):
                    out.append(ranked_hits(snap.all_ids[pos].tolist(), vals.tolist()))
        return out

    @staticmethod
    def analyse(queries: Sequence[Query]) -> None:
        """Analyse the queries not analysed yet, with one analyser call."""
        todo = [q for q in queries if not q.has(TERMS)]
        for q, terms in zip(todo, lucene.query_terms_batch([q.text for q in todo]) if todo else []):
            q.set_derived(TERMS, terms)

    def score_matrix(self, snap: Snapshot, queries: Sequence[Query], scope: Scope | None = None) -> np.ndarray:
        """(queries × every row of the snapshot) float32 BM25 scores; 0 where a row does not match or is not
        visible in `scope` (positions as in `snap.all_ids`)."""
        self.analyse(queries)
        terms = [_terms_for(snap, q) for q in queries]
        per_query = [_parts(snap, t) for t in terms]
        config = snap.manifest["config"]
        total = [np.zeros((len(queries), len(seg.ids)), dtype=np.float32) for seg in snap.segments]
        for p, (field, _) in enumerate(per_query[0] if per_query else ()):
            boosts = [parts[p][1] for parts in per_query]
            names = list(dict.fromkeys(t for b in boosts for t in b))
            forward = snap.forward_of(field)
            stats = term_stats(names, forward, snap.stats(scope, field=field))
            bm25_batch.add_part_scores(total, config["k1"], config["b"], boosts, names, stats, forward)
        for acc, mask in zip(total, snap.masks(scope)):
            if not mask.all():
                acc *= mask
        return np.concatenate(total, axis=1) if total else np.zeros((len(queries), 0), dtype=np.float32)

    def score(self, query: Query | str, ids: Sequence[str], scope: Scope | None = None) -> dict[str, float]:
        q = as_query(query)
        with self.handle.acquire() as snap:
            where = snap.locate(ids, scope)
            out = dict.fromkeys(ids, 0.0)
            terms = _terms_for(snap, q)
            if not where or not terms:
                return out
            scores = self._exact(snap, terms, scope, _by_segment(where))
            out.update(scores)
            return out

    def term_scores(self, query: Query | str, ids: Sequence[str], scope: Scope | None = None
                    ) -> dict[str, dict[str, float]]:
        """Each visible id's BM25 score split by analysed query term (terms that add nothing left out)."""
        q = as_query(query)
        with self.handle.acquire() as snap:
            terms = _terms_for(snap, q)
            by_seg = _by_segment(snap.locate(ids, scope))
            if not by_seg or not terms:
                return {d: {} for _, items in by_seg.items() for d, _ in items}
            segs, parts = self._contributions(snap, terms, scope, by_seg)
        names = list(terms)
        return {d: {t: float(v) for t, v in zip(names, row) if v > 0}
                for i, mat in zip(segs, parts) for (d, _), row in zip(by_seg[i], mat)}

    def score_batch(self, queries: Sequence[Query], ids: Sequence[Sequence[str]], scope: Scope | None = None
                    ) -> list[dict[str, float]]:
        """`score` for many queries on one snapshot (the hybrid's batch path)."""
        out = []
        with self.handle.acquire() as snap:
            for q, wanted in zip(queries, ids):
                row = dict.fromkeys(wanted, 0.0)
                terms = _terms_for(snap, as_query(q))
                where = snap.locate(wanted, scope) if terms and wanted else {}
                by_seg = _by_segment(where)
                if by_seg:
                    row.update(self._exact(snap, terms, scope, by_seg))
                out.append(row)
        return out

    def _part_matrices(self, snap: Snapshot, terms, scope: Scope | None, by_seg: dict[int, list[tuple[str, int]]]
                       ) -> tuple[list[int], list[list[np.ndarray]]]:
        """Per scored part (the whole text, then each BM25 field with its weight), per segment in `by_seg`,
        each row's score split by query term, with the live statistics of the part's own field."""
        names = list(terms)
        segs = list(by_seg)
        rows = [np.fromiter((r for _, r in by_seg[i]), dtype=np.int64) for i in segs]
        scorer = Bm25Scorer(snap.manifest["config"]["k1"], snap.manifest["config"]["b"])
        out = []
        for field, boosts in _parts(snap, terms):
            forward = snap.forward_of(field)
            stats = term_stats(names, forward, snap.stats(scope, field=field))
            out.append(scorer.contributions(boosts, [forward[i] for i in segs], stats, rows))
        return segs, out

    def _contributions(self, snap: Snapshot, terms, scope: Scope | None, by_seg: dict[int, list[tuple[str, int]]]
                       ) -> tuple[list[int], list[np.ndarray]]:
        """Per segment, each row's score split by query term (a term's share sums all its parts)."""
        segs, parts = self._part_matrices(snap, terms, scope, by_seg)
        return segs, [sum(mats[1:], mats[0]) for mats in zip(*parts)]

    def _exact(self, snap: Snapshot, terms, scope: Scope | None, by_seg: dict[int, list[tuple[str, int]]]
               ) -> dict[str, float]:
        """BM25 of the whole text plus, with field-aware BM25, Σ w_f · BM25_f (what Lucene's boosted
        per-field clauses sum to)."""
        segs, parts = self._part_matrices(snap, terms, scope, by_seg)
        total = [np.zeros(len(by_seg[i]), dtype=np.float32) for i in segs]
        for mats in parts:
            for acc, mat in zip(total, mats):
                acc += mat.sum(axis=1, dtype=np.float32)
        return {d: float(s) for i, sc in zip(segs, total) for (d, _), s in zip(by_seg[i], sc)}

    def _search(self, snap: Snapshot, q: Query, k: int, scope: Scope | None) -> list[Hit]:
        terms = _terms_for(snap, q)
        fields = [(f, float(w)) for f, w in snap.manifest["config"].get("fields") or ()]
        if not terms or k <= 0:
            return []
        names = list(terms)
        ratio = max(bound_ratio(term_stats(names, snap.forward_of(f), snap.stats(scope, field=f)),
                                term_stats(names, snap.forward_of(f), snap.stats(None, lucene_view=True, field=f)))
                    for f in [None, *(f for f, _ in fields)])  # Σ_f exact_f ≤ max_f R_f · Σ_f lucene_f
        query = snap.lucene.build_query(terms, sorted(scope.collections) if scope is not None else None,
                                        [(LUCENE_PREFIX + f, w) for f, w in fields])
        n = k + max(10, k // 4)
        while True:
            docs, lscores = snap.lucene.top(query, n)
            seg, rows = snap.lucene_rows(docs)
            by_seg: dict[int, list[tuple[str, int]]] = {}
            for i, r in zip(seg.tolist(), rows.tolist()):
                by_seg.setdefault(i, []).append((snap.segments[i].ids[r], r))
            exact = self._exact(snap, terms, scope, by_seg) if docs else {}
            hits = hits_from_scores(exact, k)
            if len(docs) < n or n >= MAX_FETCH:
                return hits
            kth = hits[k - 1].score if len(hits) >= k else float("-inf")
            if ratio * lscores[-1] < kth:  # no unseen document can reach the k-th score
                return hits
            n = min(n * 4, MAX_FETCH)


class DenseBackend:
    """Cosine similarity over the segments' FAISS indexes; queries encoded once by the index's encoder."""

    def __init__(self, handle: IndexHandle, encoder: Any) -> None:
        self.handle = handle
        self.encoder = encoder
        self._key = f"vector:{getattr(getattr(encoder, 'spec', None), 'cache_key', id(encoder))}"
        self._selectors: dict[tuple, list] = {}

    def vectors(self, queries: Sequence[Query]) -> np.ndarray:
        """The queries' vectors, encoding in one batch those not encoded yet."""
        todo = [q for q in queries if not q.has(self._key)]
        if todo:
            for q, v in zip(todo, self.encoder.encode([q.text for q in todo])):
                q.set_derived(self._key, np.asarray(v, dtype=np.float32))
        return np.vstack([q.derived(self._key, None) for q in queries]) if queries else \
            np.zeros((0, 0), dtype=np.float32)

    def search(self, query: Query | str, k: int = 10, scope: Scope | None = None) -> list[Hit]:
        return self.batch_search([as_query(query)], k, scope)[0]

    def batch_search(self, queries: Sequence[Query], k: int = 10, scope: Scope | None = None) -> list[list[Hit]]:
        queries = [as_query(q) for q in queries]
        if not queries:
            return []
        live = [i for i, q in enumerate(queries) if not q.empty]
        out: list[list[Hit]] = [[] for _ in queries]
        if not live or k <= 0:
            return out
        vecs = self.vectors([queries[i] for i in live])
        with self.handle.acquire() as snap:
            for i, hits in zip(live, self.search_vectors(snap, vecs, k, scope)):
                out[i] = hits
        return out

    def allowed(self, snap: Snapshot, scope: Scope | None) -> list:
        """Per segment, the FAISS selector of the rows `scope` may see (None: every live row)."""
        if scope is None:
            return [None] * len(snap.segments)
        key = (snap.generation, scope.key)
        found = self._selectors.get(key)
        if found is None:  # concurrent searches may both build it: same result, no lock on the hot path
            if len(self._selectors) > 64:
                self._selectors.clear()
            found = self._selectors[key] = [selector(np.flatnonzero(m)) for m in snap.masks(scope)]
        return found

    def _allowed_parts(self, snap: Snapshot, scope: Scope | None) -> list:
        if scope is None:
            return [None] * len(snap.segments)
        key = (snap.generation, scope.key, "parts")
        if key not in self._selectors:
            self._selectors[key] = [p.selector(np.flatnonzero(m)) for p, m in zip(snap.parts, snap.masks(scope))]
        return self._selectors[key]

    @staticmethod
    def top(snap: Snapshot, vecs: np.ndarray, k: int, allowed: list
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The best k per query over every segment, (scores, segments, rows) as `merge_topk` gives them: by
        cosine, or by cosine − λ·h(d) with a query bank (retrieve/hubness.py). None without segments."""
        if not snap.segments:
            return None
        if snap.hub:
            return hubness.search(snap, vecs, k, allowed, snap.hub)
        return merge_topk([seg.search(vecs, k, sel) for seg, sel in zip(snap.dense, allowed)], k)

    @staticmethod
    def stored(snap: Snapshot, qvecs: np.ndarray, seg: np.ndarray, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each query vector and the (segment, row) at the same place: its cosine with the stored vector,
        and the row's query-bank hubness offset h(d) (zeros without a bank); one gather per segment."""
        sims = np.empty(len(seg), dtype=np.result_type(qvecs.dtype, np.float32))
        hubs = np.zeros(len(seg), dtype=np.float32)
        for s in np.unique(seg).tolist():
            at = np.flatnonzero(seg == s)
            sims[at] = np.einsum("ij,ij->i", qvecs[at], snap.segments[s].dense.vectors(row[at]))
            if snap.hub:
                hubs[at] = snap.segments[s].hubness[row[at]]
        return sims, hubs

    def search_vectors(self, snap: Snapshot, vecs: np.ndarray, k: int, scope: Scope | None) -> list[list[Hit]]:
        allowed = self.allowed(snap, scope)
        if snap.parts:  # multi-vector: whole-text and best-sentence similarity combined
            weight = float(snap.manifest["config"]["parts_weight"])
            found = multivector.search(snap, vecs, k, allowed, self._allowed_parts(snap, scope), weight, snap.hub)
            return [hits_from_scores({snap.segments[s].ids[r]: v for (s, r), v in f.items()}, k) for f in found]
        best = self.top(snap, vecs, k, allowed)
        if best is None:
            return [[] for _ in range(len(vecs))]
        scores, segs, rows = best
        ids = [snap.segments[i].id_array for i in range(len(snap.segments))]
        out = []
        for q in range(len(vecs)):
            ok = rows[q] >= 0
            found = {ids[s][r]: float(v) for s, r, v in zip(segs[q][ok], rows[q][ok], scores[q][ok])}
            out.append(hits_from_scores(found, k))
        return out

    def score(self, query: Query | str, ids: Sequence[str], scope: Scope | None = None) -> dict[str, float]:
        return self.score_batch([as_query(query)], [ids], scope)[0]

    def score_batch(self, queries: Sequence[Query], ids: Sequence[Sequence[str]], scope: Scope | None = None
                    ) -> list[dict[str, float]]:
        """Cosine of each query with its documents (one gather and one row-wise product for the batch); for a
        multi-vector index, the combined whole-text / best-sentence score."""
        queries = [as_query(q) for q in queries]
        out = [dict.fromkeys(wanted, 0.0) for wanted in ids]
        live = [i for i, q in enumerate(queries) if not q.empty and ids[i]]
        if not live:
            return out
        vecs = self.vectors([queries[i] for i in live])
        with self.handle.acquire() as snap:
            where = snap.locate(list({d for i in live for d in ids[i]}), scope)
            pairs = [(j, i, d, *where[d]) for j, i in enumerate(live) for d in ids[i] if d in where]
            if not pairs:
                return out
            seg = np.fromiter((p[3] for p in pairs), dtype=np.int64, count=len(pairs))
            row = np.fromiter((p[4] for p in pairs), dtype=np.int64, count=len(pairs))
            qv = vecs[np.fromiter((p[0] for p in pairs), dtype=np.int64, count=len(pairs))]
            sims, hubs = self.stored(snap, qv, seg, row)
            if snap.parts:  # multi-vector: (1 - λ) cos(whole) + λ max cos(part)
                best = np.empty_like(sims)
                for j, (_, _, _, s, r) in enumerate(pairs):
                    best[j] = snap.parts[s].max_sim(qv[j], np.array([r]))[0]
                sims = multivector.combined(sims, best, float(snap.manifest["config"]["parts_weight"]))
            if snap.hub:  # query-bank hubness correction
                sims = sims - snap.hub * hubs
            sims = sims.tolist()
        for (_, i, d, _, _), v in zip(pairs, sims):
            out[i][d] = v
        return out
