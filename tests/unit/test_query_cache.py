"""CachedEncoder: each text encoded once, keyed by encoder content + backend (fake encoder, real DuckDB store)."""
from __future__ import annotations

import hashlib

import numpy as np

from vfr.retrieve.encoder import EncoderSpec
from vfr.retrieve.query_cache import CachedEncoder, StoreVectors


class CountingEncoder:
    """Deterministic vectors from the text; records every text it is asked to encode."""

    def __init__(self, fingerprint: str = "sha256:aa", backend: str = "torch") -> None:
        self.spec = EncoderSpec("fake", "/models/fake", fingerprint, backend)
        self.dimension = 8
        self.seen: list[str] = []

    def encode(self, texts, batch_size=64):
        self.seen += list(texts)
        rows = [np.frombuffer(hashlib.sha256((self.spec.cache_key + t).encode()).digest()[:32], dtype=np.uint8)
                .astype(np.float32)[: self.dimension] for t in texts]
        return np.vstack(rows) / 255


class DictStore:
    def __init__(self) -> None:
        self.data: dict[tuple[str, str], np.ndarray] = {}

    def get(self, namespace, hashes):
        return {h: self.data[(namespace, h)] for h in hashes if (namespace, h) in self.data}

    def put(self, namespace, hashes, vectors):
        self.data.update({(namespace, h): v for h, v in zip(hashes, vectors)})


def test_never_encodes_a_text_twice_and_keeps_order():
    inner = CountingEncoder()
    enc = CachedEncoder(inner)
    a = enc.encode(["dog", "cat", "dog"])
    b = enc.encode(["cat", "bird", "dog"])
    assert inner.seen == ["dog", "cat", "bird"]
    assert (a[0] == a[2]).all() and (b[0] == a[1]).all() and (b[2] == a[0]).all()
    assert (b == inner.encode(["cat", "bird", "dog"])).all()            # same vectors as uncached
    assert enc.stats["encoded"] == 3 and enc.encode([]).shape == (0, 8)
    assert enc.spec is inner.spec and enc.dimension == 8


def test_persistent_store_serves_a_fresh_process():
    store = DictStore()
    CachedEncoder(CountingEncoder(), store).encode(["dog", "cat"])
    inner = CountingEncoder()
    again = CachedEncoder(inner, (store.get, store.put))                # a callable pair works too
    again.encode(["cat", "dog"])
    assert inner.seen == [] and again.stats["store_hits"] == 2


def test_keys_separate_fingerprints_and_backends():
    store = DictStore()
    CachedEncoder(CountingEncoder("sha256:aa", "torch"), store).encode(["dog"])
    for fp, backend in [("sha256:bb", "torch"), ("sha256:aa", "onnx")]:
        inner = CountingEncoder(fp, backend)
        CachedEncoder(inner, store).encode(["dog"])
        assert inner.seen == ["dog"]                                    # retrained / other backend: encoded anew


def test_lru_bound_falls_back_to_the_store():
    store, inner = DictStore(), CountingEncoder()
    enc = CachedEncoder(inner, store, maxsize=2)
    enc.encode(["a", "b", "c"])
    enc.encode(["a"])
    assert len(enc._memory) == 2 and inner.seen == ["a", "b", "c"] and enc.stats["store_hits"] == 1


def test_store_vectors_over_a_real_store(tmp_path):
    from vfr.store.store import Store

    with Store(tmp_path / "s.duckdb") as s:
        inner = CountingEncoder()
        first = CachedEncoder(inner, StoreVectors(s)).encode(["a red car", "a blue truck"])
        fresh = CountingEncoder()
        again = CachedEncoder(fresh, StoreVectors(s)).encode(["a blue truck", "a red car"])
        assert fresh.seen == [] and np.allclose(again[::-1], first)
        rows = s.con.execute("SELECT DISTINCT model FROM embeddings").fetchall()
        assert rows == [(inner.spec.cache_key + "#query",)]
