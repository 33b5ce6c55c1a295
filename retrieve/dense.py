"""Dense retrieval: sentence-transformers embeddings in FAISS (exact inner product, or HNSW).

Vectors are L2-normalised so inner product is cosine. Document embeddings are cached in the store,
keyed by (text hash, encoder), so rebuilding an index over unchanged text never re-encodes.
Files are plain: `index.faiss` (FAISS's own format) and `ids.json`; no pickle.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from vfr.retrieve.types import Hit, Run

ENCODE_CHUNK = 2048  # texts per encode call: one progress step, one cache write


@functools.cache
def _faiss_threads() -> int:
    """FAISS's thread count before we first change it (OMP_NUM_THREADS or the core count)."""
    import faiss

    return faiss.omp_get_max_threads()


def normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def embed_documents(store, encoder_name: str, encoder_key: str, rows: Sequence[tuple[str, str, str]],
                    batch_size: int = 64, on_progress: Callable[[int, int], None] | None = None
                    ) -> tuple[np.ndarray, dict[str, int]]:
    """Embeddings for (id, text, text_hash) rows in order, encoding only texts not cached.

    Returns the normalised matrix and counts {"cached": n, "encoded": m}.
    """
    from vfr.retrieve.encoder import load_encoder

    hashes = [h for _, _, h in rows]
    cached = store.cached_embeddings(encoder_key, hashes)
    todo: dict[str, str] = {}
    for _, text, h in rows:
        if h not in cached and h not in todo:
            todo[h] = text
    on_progress and on_progress(len(rows) - len(todo), len(rows))
    if todo:
        model = load_encoder(encoder_name)
        items = list(todo.items())
        for start in range(0, len(items), ENCODE_CHUNK):
            chunk = items[start:start + ENCODE_CHUNK]
            vecs = model.encode([t for _, t in chunk], batch_size=batch_size)
            store.cache_embeddings(encoder_key, [h for h, _ in chunk], vecs)
            cached.update(zip((h for h, _ in chunk), vecs))
            on_progress and on_progress(len(chunk), len(rows))
    dim = len(next(iter(cached.values()))) if cached else 0
    matrix = np.empty((len(rows), dim), dtype=np.float32)
    for i, h in enumerate(hashes):
        matrix[i] = cached[h]
    return normalise(matrix), {"cached": len(rows) - len(todo), "encoded": len(todo)}


def build_faiss(vectors: np.ndarray, kind: str = "flat", hnsw_m: int = 32, ef_construction: int = 200):
    import faiss

    dim = vectors.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
    else:
        raise ValueError(f"unknown FAISS index kind {kind!r}: use flat or hnsw")
    index.add(vectors)
    return index


def write_dense(out_dir: Path, index, ids: Sequence[str]) -> None:
    import faiss

    out_dir.mkdir(parents=True)
    faiss.write_index(index, str(out_dir / "index.faiss"))
    (out_dir / "ids.json").write_text(json.dumps(list(ids)))


class FaissSearcher:
    """Cosine search over a FAISS index; queries are encoded with the index's own encoder."""

    def __init__(self, index_dir: Path, encoder_name: str, ef_search: int = 128, encoder=None) -> None:
        import faiss

        self.index = faiss.read_index(str(index_dir / "index.faiss"))
        if hasattr(self.index, "hnsw"):
            self.index.hnsw.efSearch = ef_search
        self.ids: list[str] = json.loads((index_dir / "ids.json").read_text())
        self.pos = {d: i for i, d in enumerate(self.ids)}
        self.encoder_name = encoder_name
        self.encoder = encoder  # an Encoder or a CachedEncoder (retrieve/query_cache.py); loaded on first use

    def encode(self, queries: Sequence[str], batch_size: int = 64) -> np.ndarray:
        if self.encoder is None:
            from vfr.retrieve.encoder import load_encoder

            self.encoder = load_encoder(self.encoder_name)
        return self.encoder.encode(list(queries), batch_size=batch_size)

    def search_vectors(self, vectors: np.ndarray, k: int) -> list[list[Hit]]:
        k = min(k, len(self.ids))
        if k <= 0:
            return [[] for _ in range(len(vectors))]
        import faiss

        # One query: FAISS's OpenMP threads only add wake-up cost next to torch's and the JVM's on few cores.
        # The setting is process-wide, so it is restored at once (index builds and batches keep every core).
        threads = _faiss_threads()  # read before the first change
        if len(vectors) == 1:
            faiss.omp_set_num_threads(1)
        try:
            scores, positions = self.index.search(vectors, k)
        finally:
            faiss.omp_set_num_threads(threads)
        return [[Hit(self.ids[p], float(s), r + 1) for r, (s, p) in enumerate(zip(srow, prow)) if p >= 0]
                for srow, prow in zip(scores, positions)]

    def search(self, query: str, k: int = 10) -> list[Hit]:
        return self.search_vectors(self.encode([query]), k)[0]

    def batch_search(self, queries: dict[str, str], k: int = 10) -> Run:
        qids = list(queries)
        hits = self.search_vectors(self.encode([queries[q] for q in qids]), k) if qids else []
        return {q: {h.id: h.score for h in hs} for q, hs in zip(qids, hits)}

    def score_vector(self, qvec: np.ndarray, doc_ids: Sequence[str]) -> dict[str, float]:
        known = [d for d in doc_ids if d in self.pos]
        out = dict.fromkeys(doc_ids, 0.0)
        if known:
            docs = self.index.reconstruct_batch(np.fromiter((self.pos[d] for d in known), dtype=np.int64))
            out.update(zip(known, (docs @ qvec.ravel()).tolist()))
        return out

    def score(self, query: str, doc_ids: Sequence[str]) -> dict[str, float]:
        """Cosine similarity of `query` with each given document (0 for an unknown id)."""
        return self.score_vector(self.encode([query]), doc_ids)
