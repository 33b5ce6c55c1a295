"""Temporary stores and indexes for evaluation, cached by content hash.

Layout under the cache root (`--cache-dir`, else `$VFR_CACHE/eval`, else `~/.cache/vfr/eval`):
    embeddings.duckdb          document and query embeddings shared by every corpus, keyed by text hash and
                               the encoder's cache key (content fingerprint + backend; queries: + "#query")
    <key>/store.duckdb         the corpus as a store (one document per corpus entry)
    <key>/index/               retrieve.index folder built from it
`key` hashes the corpus (ids and texts), the encoder and the index settings, so an unchanged
benchmark reopens its index and a changed one never reuses a stale one. Inputs are only read.
"""
from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping

CACHE_VERSION = 1


def cache_root(explicit: Path | None = None) -> Path:
    if explicit:
        return explicit
    base = os.environ.get("VFR_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "vfr") / "eval"


def encoder_spec(config: Any) -> Any:
    """The index config's encoder, resolved (content fingerprint, backend) for cache keys."""
    from vfr.retrieve.encoder import resolve_encoder

    return resolve_encoder(config.encoder, getattr(config, "encoder_backend", None))


def corpus_key(corpus: Mapping[str, str], config: Any) -> str:
    h = hashlib.sha256()
    from vfr.retrieve.index import INDEX_FORMAT

    settings = {**asdict(config), "encoder": encoder_spec(config).cache_key, "cache_version": CACHE_VERSION,
                "index_format": INDEX_FORMAT}
    h.update(json.dumps(settings, sort_keys=True).encode())
    for doc_id in sorted(corpus):
        h.update(doc_id.encode("utf-8") + b"\x00" + corpus[doc_id].encode("utf-8") + b"\x01")
    return h.hexdigest()[:24]


def open_corpus_index(corpus: Mapping[str, str], config: Any, root: Path | None = None,
                      progress: bool = True) -> tuple[Any, dict]:
    """An opened index over `corpus` (built on first use). Returns (index, info about the cache)."""
    from vfr.retrieve.index import open_index

    root = cache_root(root)
    key = corpus_key(corpus, config)
    folder = root / key
    manifest = folder / "index" / "current" / "manifest.json"
    cached = manifest.exists()
    info = {} if cached else _build(corpus, config, root, folder, progress)
    index = open_index(folder / "index")
    cache_query_embeddings(index, root / "embeddings.duckdb", encoder_spec(config))
    return index, {"key": key, "cached": cached, "folder": str(folder), "manifest": manifest_summary(index.manifest),
                   **info}


def manifest_summary(m: Mapping[str, Any]) -> dict:
    """The index settings a results table must state."""
    from vfr.retrieve.fusion import FusionConfig

    sparse, dense = m.get("sparse", {}), m.get("dense", {})
    # The hybrid searches with the engine's current default (runner passes no FusionConfig); a cached
    # index's manifest records the default at its build time, which may be older.
    fusion = json.loads(json.dumps(FusionConfig().to_dict()))
    return {"k1": sparse.get("k1"), "b": sparse.get("b"), "encoder_id": dense.get("encoder_id"),
            "dimension": dense.get("dimension"), "faiss": dense.get("faiss"),
            "fusion": ", ".join(f"{k}={v}" for k, v in fusion.items()) if fusion else None}


def _build(corpus: Mapping[str, str], config: Any, root: Path, folder: Path, progress: bool) -> dict:
    from vfr.retrieve.index import build_index
    from vfr.store.store import DescriptionRow, ImageRow, Store, text_hash

    if folder.exists():  # a build that died half-way: start over
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    key = encoder_spec(config).cache_key  # content + backend: the same in the temporary store and the shared one
    hashes = sorted({text_hash(t) for t in corpus.values()})
    with Store(folder / "store.duckdb") as store:
        store.upsert([ImageRow(i, collection="eval") for i in corpus],
                     [DescriptionRow(i, t, model="eval") for i, t in corpus.items()])
        seeded = _copy_embeddings(root / "embeddings.duckdb", store, key, key, hashes)
        manifest = build_index(store, folder / "index", config, progress=progress)
        _copy_embeddings(store, root / "embeddings.duckdb", key, key, hashes)
    return {"embeddings_from_cache": seeded, "build": manifest.get("build", {})}


def _copy_embeddings(src: Any, dst: Any, src_model: str, dst_model: str, hashes: list[str]) -> int:
    """Copy cached embeddings between stores (either may be a path to the shared cache)."""
    if isinstance(src, Path) and not src.exists():
        return 0
    src_store = _shared_store(src) if isinstance(src, Path) else src
    dst_store = _shared_store(dst) if isinstance(dst, Path) else dst
    found = src_store.cached_embeddings(src_model, hashes)
    if isinstance(dst, Path):  # only what the shared cache lacks
        found = {h: v for h, v in found.items() if h not in dst_store.cached_embeddings(dst_model, list(found))}
    if found:
        import numpy as np

        keys = list(found)
        dst_store.cache_embeddings(dst_model, keys, np.vstack([found[k] for k in keys]))
    return len(found)


_open_stores: dict[Path, Any] = {}


def _shared_store(path: Path) -> Any:
    """One connection per process to the shared embedding cache (DuckDB: one writer process)."""
    from vfr.store.store import Store

    if path not in _open_stores:
        path.parent.mkdir(parents=True, exist_ok=True)
        _open_stores[path] = Store(path)
        atexit.register(_open_stores[path].close)
    return _open_stores[path]


def cache_query_embeddings(index: Any, path: Path, spec: Any) -> bool:
    """Give the index's dense searcher a CachedEncoder over the shared embedding store, so dense and
    hybrid encode each query text once and a rerun encodes none. Returns False when the index has no
    dense side or its encoder is already cached."""
    from vfr.retrieve.encoder import load_encoder
    from vfr.retrieve.query_cache import CachedEncoder, StoreVectors

    dense = getattr(index, "dense", None)
    searcher = dense() if callable(dense) else None
    if searcher is None or not hasattr(searcher, "encoder") or isinstance(searcher.encoder, CachedEncoder):
        return False
    searcher.encoder = CachedEncoder(searcher.encoder or load_encoder(spec), StoreVectors(_shared_store(path)))
    return True
