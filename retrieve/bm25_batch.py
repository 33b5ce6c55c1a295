"""Exact BM25 of a whole batch of queries against every visible document, from the forward index's postings.

The single-query path asks Lucene for candidates and rescores them (backends.SparseBackend); for a batch
that is one JNI round trip and one rescoring per query. Here each distinct term of the batch has its
saturated frequencies computed once per segment and scored part, from the forward index's postings (its
transpose, built once per segment), and added to the score row of every query that has the term. The formula and statistics are the
forward index's (retrieve/bm25.py), so scores equal the single path's up to float rounding; the top k is
taken with the same tie rule (score, then id).
"""
from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np
from scipy import sparse as sp

from vfr.retrieve.bm25 import ForwardSegment, TermStats
from vfr.retrieve.topk import block_bound

CHUNK = 64  # queries per product: bounds the dense (queries × rows) score block


def postings(seg: ForwardSegment) -> sp.csr_matrix:
    """(terms × rows) term counts of the segment, built on first use and kept with it."""
    found = getattr(seg, "_postings", None)
    if found is None:
        found = seg._postings = seg.tf.T.tocsr()  # type: ignore[attr-defined]
        found.sort_indices()
    return found


def add_part_scores(out: Sequence[np.ndarray], k1: float, b: float, boosts: Sequence[Counter], names: list[str],
                    stats: TermStats, segments: Sequence[ForwardSegment]) -> None:
    """Add one scored part's BM25 scores to `out[i]` (queries × rows of segment i, float32), for queries
    whose analysed terms (term → boost) are `boosts` and whose terms together are `names` (`stats` computed
    for them). One pass per (query, term) over the term's postings: a batch shares each term's saturated
    frequencies, and the work is the postings the queries really touch."""
    if not names or stats.doc_count == 0:
        return
    col = {t: j for j, t in enumerate(names)}
    idf = stats.idf().astype(np.float32)
    k1, b, avgdl = np.float32(k1), np.float32(b), np.float32(stats.avgdl)
    users: dict[int, list[tuple[int, np.float32]]] = {}
    for i, terms in enumerate(boosts):
        for t, c in terms.items():
            users.setdefault(col[t], []).append((i, np.float32(c) * idf[col[t]]))
    for acc, seg in zip(out, segments):
        if not seg.rows:
            continue
        post = postings(seg)
        norm_inv = np.float32(1) / (k1 * ((np.float32(1) - b) + b * seg.qlengths / avgdl))
        for j, who in users.items():
            c = seg.vocab.get(names[j], -1)
            if c < 0:
                continue
            lo, hi = post.indptr[c], post.indptr[c + 1]
            rows = post.indices[lo:hi]
            sat = np.float32(1) - np.float32(1) / (np.float32(1) + post.data[lo:hi] * norm_inv[rows])
            for i, w in who:
                acc[i, rows] += w * sat




def top_k(scores: np.ndarray, ids: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per row of `scores` (queries × documents, 0 = no match or not visible), the positions and scores of
    the k best positive entries, ordered by score then id (as `hits_from_scores` orders).

    A lower bound of each row's k-th score comes from block maxima (the k-th largest of k blocks' maxima
    is at most the k-th largest entry), so only entries above it are sorted."""
    n_q, n = scores.shape
    if k <= 0 or not n:
        return [(np.zeros(0, np.int64), np.zeros(0, np.float32)) for _ in range(n_q)]
    bound = np.maximum(block_bound(scores, k, 0.0), np.float32(0))
    out = []
    for row, t in zip(scores, bound.tolist()):
        cand = np.flatnonzero(row >= t) if t > 0 else np.flatnonzero(row > 0)
        vals = row[cand]
        if len(cand) > k:  # most candidates are far below the k-th: keep the k best (and ties) first
            keep = vals >= np.partition(vals, len(cand) - k)[len(cand) - k]
            cand, vals = cand[keep], vals[keep]
        order = np.argsort(-vals, kind="stable")
        if len(np.unique(vals)) < len(vals):  # ties: by id, as `hits_from_scores` breaks them
            order = np.lexsort((ids[cand].astype(str), -vals))
        order = order[:k]
        pos = cand[order]
        out.append((pos, row[pos]))
    return out
