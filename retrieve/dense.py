"""Dense side: FAISS inner-product indexes of L2-normalised vectors (cosine), one per index segment.

Each segment's FAISS index is an IndexIDMap2 whose ids are the segment's rows, so removed rows keep their
numbers: a flat index drops tombstoned vectors with `remove_ids` when a reader loads it; HNSW, which cannot
remove, skips them with an IDSelector at search time until compaction rewrites the segment. A search over a
scope uses a selector of the scope's live rows, so it equals a search over an index of those rows alone.
Files are FAISS's own format (`dense.faiss`); no pickle.
"""
from __future__ import annotations

import errno
import functools
from pathlib import Path
from typing import Sequence

import numpy as np

from vfr.retrieve.topk import block_bound

FILE = "dense.faiss"
GEMM_MIN_QUERIES = 16  # flat search of this many queries or more: one matrix product (FAISS below: a
# single query's product is memory-bound, where FAISS on one thread is quicker)
HNSW_MIN_ROWS = 20_000  # smaller segments stay exact (flat) even in an HNSW index: they are cheap to scan


@functools.cache
def _faiss_threads() -> int:
    """FAISS's thread count before we first change it (OMP_NUM_THREADS or the core count)."""
    import faiss

    return faiss.omp_get_max_threads()


def normalise(x: np.ndarray) -> np.ndarray:
    x = np.atleast_2d(np.asarray(x, dtype=np.float32))
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def write_dense(folder: Path, vectors: np.ndarray, kind: str, hnsw_m: int = 32, ef_construction: int = 200,
                file: str = FILE) -> str:
    """Write the segment's vectors (rows 0..n-1); returns the kind really used (flat or hnsw)."""
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    dim = vectors.shape[1]
    if kind == "hnsw" and len(vectors) >= HNSW_MIN_ROWS:
        inner = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = ef_construction
    elif kind in ("flat", "hnsw"):
        inner, kind = faiss.IndexFlatIP(dim), "flat"
    else:
        raise ValueError(f"unknown FAISS index kind {kind!r}: use flat or hnsw")
    index = faiss.IndexIDMap2(inner)
    index.add_with_ids(vectors, np.arange(len(vectors), dtype=np.int64))
    try:
        data = faiss.serialize_index(index)
    except RuntimeError as e:
        raise OSError(errno.EIO, f"FAISS could not serialise the index ({str(e).strip().splitlines()[-1][:200]})",
                      str(folder / file)) from None
    # Written by Python, not by faiss.write_index: FAISS's own file writer prints "… close error: …" to stderr
    # (no newline) when the disk fills at close, garbling the one clean error line the CLI prints; Python
    # raises OSError (ENOSPC) and prints nothing.
    with open(folder / file, "wb") as f:
        f.write(memoryview(data))
    return kind


class DenseSegment:
    """One segment's vectors, loaded; `dead` rows never come back from a search."""

    def __init__(self, folder: Path, kind: str, ef_search: int = 128, file: str = FILE) -> None:
        import faiss

        path = folder / file
        if not path.is_file() or path.stat().st_size == 0:
            raise FileNotFoundError(f"{path} is missing or empty")
        try:
            self.index = faiss.read_index(str(path))
        except RuntimeError as e:  # FAISS reports a truncated or foreign file this way
            raise ValueError(f"{path} is not a readable FAISS index ({str(e).strip().splitlines()[-1][:200]})") from None
        self.kind = kind
        self.ef_search = ef_search
        self.rows = int(self.index.ntotal)
        self.dead = np.zeros(0, dtype=np.int64)

    def with_tombstones(self, dead: np.ndarray) -> "DenseSegment":
        """This segment with `dead` rows removed (flat: dropped from a copy; HNSW: filtered)."""
        import faiss

        clone = object.__new__(DenseSegment)
        clone.kind, clone.ef_search, clone.rows = self.kind, self.ef_search, self.rows
        clone._matrix, clone._owner = self.matrix, self  # vectors by row come from the unaltered original
        clone.dead = np.asarray(dead, dtype=np.int64)
        if self.kind == "flat" and len(clone.dead):
            clone.index = faiss.clone_index(self.index)
            clone.index.remove_ids(faiss.IDSelectorBatch(clone.dead))
        else:
            clone.index = self.index
        return clone

    @property
    def matrix(self) -> np.ndarray:
        """All rows' vectors as one array (a view of FAISS's own storage: no copy)."""
        if getattr(self, "_matrix", None) is None:
            import faiss

            inner = faiss.downcast_index(self.index.index)
            flat = faiss.downcast_index(inner.storage) if hasattr(inner, "storage") else inner
            xb = faiss.rev_swig_ptr(flat.get_xb(), flat.ntotal * flat.d)
            self._matrix = np.asarray(xb).reshape(flat.ntotal, flat.d)
            self._owner = flat  # keep the storage alive while the view is
        return self._matrix

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """Vectors of these rows (the segment as written: internal positions are rows)."""
        return self.matrix[np.asarray(rows, dtype=np.int64)]

    def search(self, queries: np.ndarray, k: int, allowed=None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, rows) per query; rows -1 pad. `allowed`: a selector of the rows a scope may see
        (from `selector`)."""
        import faiss

        k = min(k, self.rows)
        if k <= 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        if self.kind == "flat" and len(queries) >= GEMM_MIN_QUERIES:
            return self._exact(queries, k, allowed)
        selector = allowed
        if selector is None and self.kind == "hnsw" and len(self.dead):
            if not hasattr(self, "_not_dead"):
                self._not_dead = faiss.IDSelectorNot(faiss.IDSelectorBatch(self.dead))
            selector = self._not_dead
        params = None
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k))
            if selector is not None:
                params.sel = selector
        elif selector is not None:
            params = faiss.SearchParameters(sel=selector)
        threads = _faiss_threads()
        if len(queries) == 1:  # one query: OpenMP wake-up costs more than it saves next to torch and the JVM
            faiss.omp_set_num_threads(1)
        try:
            scores, rows = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k, params=params)
        finally:
            faiss.omp_set_num_threads(threads)  # process-wide: restore at once (torch shares libgomp)
        return scores, rows

    def _exact(self, queries: np.ndarray, k: int, allowed) -> tuple[np.ndarray, np.ndarray]:
        """Flat search as one matrix product over the stored vectors and a top k per query (FAISS's flat
        search does the same product, slower here); removed and out-of-scope rows never come back."""
        scores = np.ascontiguousarray(queries, dtype=np.float32) @ self.matrix.T
        hidden = self.dead if allowed is None else _hidden(allowed, self.rows)
        if len(hidden):
            scores[:, hidden] = -np.inf
        return top_rows(scores, k)


def _hidden(sel, n: int) -> np.ndarray:
    """Rows a selector from `selector` leaves out (kept with it)."""
    if getattr(sel, "_hidden", None) is None:
        keep = np.zeros(n, dtype=bool)
        keep[sel._rows[sel._rows < n]] = True
        sel._hidden = np.flatnonzero(~keep)
    return sel._hidden



def top_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row the k largest finite entries, best first: (scores, columns), -1 and -inf where a row has
    fewer. Block maxima bound each row's k-th value from below, so only entries above it are ranked."""
    n_q, n = scores.shape
    k = min(k, n)
    out_s = np.full((n_q, k), -np.inf, dtype=np.float32)
    out_r = np.full((n_q, k), -1, dtype=np.int64)
    bound = block_bound(scores, k, -np.inf, min_blocks=4 * k)
    for q, (row, t) in enumerate(zip(scores, bound)):
        cand = np.flatnonzero(row >= t) if np.isfinite(t) else np.arange(n)
        vals = row[cand]
        if len(cand) > k:
            keep = np.argpartition(-vals, k - 1)[:k]
            cand, vals = cand[keep], vals[keep]
        order = np.argsort(-vals, kind="stable")
        cand, vals = cand[order], vals[order]
        ok = np.isfinite(vals)
        out_s[q, :ok.sum()] = vals[ok]
        out_r[q, :ok.sum()] = cand[ok]
    return out_s, out_r


def selector(rows: np.ndarray):
    """A FAISS selector of these rows (keep a reference while searching: FAISS does not own it)."""
    import faiss

    rows = np.ascontiguousarray(rows, dtype=np.int64)
    sel = faiss.IDSelectorBatch(rows)
    sel._rows = rows  # the array must outlive the selector
    return sel


def merge_topk(parts: Sequence[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The best k over several segments' results, per query, with array operations.

    `parts[i]` = (scores, rows) of segment i, each (n_queries, k_i). Returns (scores, segments, rows), each
    (n_queries, k); missing entries have score -inf and row -1."""
    scores = np.concatenate([np.where(r >= 0, s, -np.inf) for s, r in parts], axis=1)
    rows = np.concatenate([r for _, r in parts], axis=1)
    segs = np.concatenate([np.full(r.shape, i, dtype=np.int64) for i, (_, r) in enumerate(parts)], axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    take = lambda a: np.take_along_axis(a, order, axis=1)  # noqa: E731
    return take(scores), take(segs), take(rows)
