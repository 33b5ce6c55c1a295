"""Multi-vector dense (an index option: `IndexConfig.parts`): each document is also indexed as its parts.

Descriptions run to 100–200 words while queries are 8–15; one vector for the whole text blurs the one
detail a query asks about. With `parts="sentences"` every document's sentences (at most MAX_PARTS) are
encoded too, and a document scores

    s(q, d) = (1 − λ) · cos(q, d) + λ · max_p cos(q, p),      λ = `IndexConfig.parts_weight`

Files beside the whole-text vectors of a segment: `parts.faiss` (an IndexIDMap2 whose ids are part numbers)
and `parts.offsets.npy` (row r owns parts offsets[r]:offsets[r+1]). A part is deleted with its row: a
tombstoned row's parts are removed from (flat) or filtered out of (HNSW) the parts index, and a scope is a
selector of the parts of its live rows; merging copies the live rows' part vectors.

Search is exact for flat indexes: the best n whole-text vectors and the best n parts give candidates, each
scored exactly (its whole vector and all its parts), and a bound — no unseen document can score above
(1 − λ) · (n-th whole score) + λ · (n-th part score) — says when the top k is proven; otherwise n grows.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np

from vfr.retrieve.dense import DenseSegment, selector

FILE, OFFSETS = "parts.faiss", "parts.offsets.npy"
MAX_PARTS = 32
KINDS = ("", "sentences")
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")


def split_parts(text: str) -> list[str]:
    """A document's parts: its sentences (at most MAX_PARTS; the rest joins the last), never none."""
    parts = [p.strip() for p in _SENTENCE_END.split(text.strip()) if p.strip()]
    if len(parts) > MAX_PARTS:
        parts = parts[:MAX_PARTS - 1] + [" ".join(parts[MAX_PARTS - 1:])]
    return parts or [text]


def write_parts(folder: Path, part_vectors: Sequence[np.ndarray], kind: str, hnsw_m: int) -> None:
    """Write each row's part vectors (row i: an (n_i, dim) array, n_i ≥ 1)."""
    from vfr.retrieve.dense import write_dense

    counts = np.fromiter((len(v) for v in part_vectors), dtype=np.int64, count=len(part_vectors))
    if (counts < 1).any():
        raise ValueError("every document needs at least one part vector")
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    dim = part_vectors[0].shape[1] if len(part_vectors) else 1
    matrix = np.vstack(part_vectors) if len(part_vectors) else np.zeros((0, dim), np.float32)
    write_dense(folder, matrix, kind, hnsw_m, file=FILE)
    np.save(folder / OFFSETS, offsets, allow_pickle=False)


class PartsSegment:
    """One segment's part vectors, loaded; `with_tombstones` gives the view without deleted rows' parts."""

    def __init__(self, folder: Path, kind: str) -> None:
        self.offsets = np.load(folder / OFFSETS, allow_pickle=False)
        self.dense = DenseSegment(folder, kind, file=FILE)
        self.rows = len(self.offsets) - 1
        if self.dense.rows != self.offsets[-1]:
            raise ValueError(f"{folder / FILE} holds {self.dense.rows} parts, offsets say {self.offsets[-1]}")
        self.row_of = np.repeat(np.arange(self.rows, dtype=np.int64), np.diff(self.offsets))

    def parts_of(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        if not len(rows):
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([np.arange(self.offsets[r], self.offsets[r + 1]) for r in rows])

    def with_tombstones(self, dead_rows: np.ndarray) -> "PartsSegment":
        view = object.__new__(PartsSegment)
        view.offsets, view.rows, view.row_of = self.offsets, self.rows, self.row_of
        view.dense = self.dense.with_tombstones(self.parts_of(dead_rows))
        return view

    def vectors_of(self, rows: np.ndarray) -> list[np.ndarray]:
        return [self.dense.matrix[self.offsets[r]:self.offsets[r + 1]] for r in rows]

    def max_sim(self, q: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """max over each row's parts of cos(q, part)."""
        rows = np.asarray(rows, dtype=np.int64)
        if not len(rows):
            return np.zeros(0, dtype=np.float32)
        starts, ends = self.offsets[rows], self.offsets[rows + 1]
        take = np.concatenate([np.arange(a, b) for a, b in zip(starts, ends)])
        sims = self.dense.matrix[take] @ q
        return np.maximum.reduceat(sims, np.concatenate([[0], np.cumsum(ends - starts)[:-1]]))

    def selector(self, live_rows: np.ndarray):
        return selector(self.parts_of(live_rows))


def combined(whole: np.ndarray, part: np.ndarray, weight: float) -> np.ndarray:
    return ((1 - weight) * whole + weight * part).astype(np.float32)


def search(snap, vecs: np.ndarray, k: int, row_sel: list, part_sel: list, weight: float, hub: float = 0.0
           ) -> list[dict[tuple[int, int], float]]:
    """Per query, the combined score of every candidate (segment, row): a superset of the exact top k
    (flat indexes). A document no list returned can exist in segment s only if both of s's lists are full,
    and then scores at most (1 − λ) · (s's n-th whole score) + λ · (s's n-th part score): when the k-th
    candidate beats that bound in every segment, the top k is proven; else n grows. `hub` > 0: scores
    less hub · h(d) (retrieve/hubness.py), and bounds less hub · (the segment's smallest h)."""
    out: list[dict[tuple[int, int], float]] = [{} for _ in range(len(vecs))]
    todo, n = list(range(len(vecs))), max(2 * k, 20)
    while todo:
        qv = vecs[todo]
        whole = [seg.search(qv, n, sel) for seg, sel in zip(snap.dense, row_sel)]
        parts = [ps.dense.search(qv, n, sel) for ps, sel in zip(snap.parts, part_sel)]
        retry = []
        for j, qi in enumerate(todo):
            scores, bound = {}, -np.inf
            for s, ((ws, wr), (ps, pr)) in enumerate(zip(whole, parts)):
                rows = np.union1d(wr[j][wr[j] >= 0], snap.parts[s].row_of[pr[j][pr[j] >= 0]]).astype(np.int64)
                if len(rows):
                    w = snap.segments[s].dense.vectors(rows) @ vecs[qi]
                    p = snap.parts[s].max_sim(vecs[qi], rows)
                    v = combined(w, p, weight) - (hub * snap.segments[s].hubness[rows] if hub else 0)
                    scores.update({(s, int(r)): float(x) for r, x in zip(rows, v)})
                if wr.shape[1] == n and (wr[j] >= 0).all() and pr.shape[1] == n and (pr[j] >= 0).all():
                    bound = max(bound, (1 - weight) * float(ws[j][-1]) + weight * float(ps[j][-1])
                                - hub * snap.segments[s].hubness_least)
            kth = sorted(scores.values(), reverse=True)[k - 1] if len(scores) >= k else -np.inf
            if bound == -np.inf or kth > bound + 1e-6:  # slack: FAISS and numpy round differently
                out[qi] = scores
            else:
                retry.append(qi)
        todo, n = retry, n * 4
    return out
