"""Query-vector caching as a visible encoder wrapper (not a method swapped on a live searcher).

`CachedEncoder(encoder, persistent=...)` has the Encoder interface (`spec`, `dimension`, `encode`), so a
dense searcher takes it wherever it takes an Encoder. Vectors are keyed by (fingerprint, backend, text
hash): an in-memory LRU first, then an optional persistent store shared across processes (eval uses the
shared embedding store, so a rerun encodes no query at all). Only the texts found in neither are encoded,
each once per call even if repeated.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any, Callable, Protocol, Sequence

import numpy as np

QUERY_SUFFIX = "#query"  # query vectors live beside document vectors under their own key


class VectorStore(Protocol):
    """A persistent vector cache: text hashes → vectors, within a namespace (the encoder's cache key)."""

    def get(self, namespace: str, hashes: Sequence[str]) -> dict[str, np.ndarray]: ...

    def put(self, namespace: str, hashes: Sequence[str], vectors: np.ndarray) -> None: ...


class StoreVectors:
    """A vfr Store's embedding table as a VectorStore (`cached_embeddings` / `cache_embeddings`)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def get(self, namespace: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        return self.store.cached_embeddings(namespace, list(hashes))

    def put(self, namespace: str, hashes: Sequence[str], vectors: np.ndarray) -> None:
        self.store.cache_embeddings(namespace, list(hashes), vectors)


def text_key(text: str) -> str:
    """sha256 of the text as given (the store's text_hash)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class CachedEncoder:
    """An Encoder that encodes each distinct text at most once (per LRU lifetime / persistent store)."""

    def __init__(self, encoder: Any, persistent: VectorStore | tuple[Callable, Callable] | None = None, maxsize: int = 4096) -> None:
        self.encoder = encoder
        self.maxsize = maxsize
        if isinstance(persistent, tuple):
            self._get, self._put = persistent
        elif persistent is not None:
            self._get, self._put = persistent.get, persistent.put
        else:
            self._get = self._put = None
        self._memory: OrderedDict[tuple[str, str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.stats = {"memory_hits": 0, "store_hits": 0, "encoded": 0}

    @property
    def spec(self) -> Any:
        return self.encoder.spec

    @property
    def dimension(self) -> int:
        return self.encoder.dimension

    @property
    def namespace(self) -> str:
        return self.spec.cache_key + QUERY_SUFFIX

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            return np.empty((0, self.dimension), dtype=np.float32)
        spec = self.spec
        keys = [text_key(t) for t in texts]
        found = self._from_memory(spec, keys)
        missing = list(dict.fromkeys(k for k in keys if k not in found))
        if missing and self._get is not None:
            stored = {k: np.asarray(v, dtype=np.float32) for k, v in self._get(self.namespace, missing).items()}
            self.stats["store_hits"] += len(stored)
            found.update(stored)
            self._remember(spec, stored)
        todo = {k: t for k, t in zip(keys, texts) if k not in found}
        if todo:
            vecs = self.encoder.encode(list(todo.values()), batch_size=batch_size)
            fresh = dict(zip(todo, vecs))
            self.stats["encoded"] += len(fresh)
            if self._put is not None:
                self._put(self.namespace, list(fresh), vecs)
            found.update(fresh)
            self._remember(spec, fresh)
        return np.vstack([found[k] for k in keys]).astype(np.float32, copy=False)

    def _from_memory(self, spec: Any, keys: list[str]) -> dict[str, np.ndarray]:
        out = {}
        with self._lock:
            for k in keys:
                vec = self._memory.get((spec.fingerprint, spec.backend, k))
                if vec is not None:
                    self._memory.move_to_end((spec.fingerprint, spec.backend, k))
                    out[k] = vec
        self.stats["memory_hits"] += len(out)
        return out

    def _remember(self, spec: Any, vectors: dict[str, np.ndarray]) -> None:
        with self._lock:
            for k, v in vectors.items():
                self._memory[(spec.fingerprint, spec.backend, k)] = v
                self._memory.move_to_end((spec.fingerprint, spec.backend, k))
            while len(self._memory) > self.maxsize:
                self._memory.popitem(last=False)

    def __repr__(self) -> str:
        return f"CachedEncoder({self.encoder!r}, cached={len(self._memory)})"
