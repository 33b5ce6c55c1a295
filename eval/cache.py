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
from typing import Any, Mapping, Sequence

CACHE_VERSION = 1


def cache_root(explicit: Path | None = None) -> Path:
    if explicit:
        return explicit
    base = os.environ.get("VFR_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "vfr") / "eval"


def encoder_spec(encoder: str, backend: str | None = None) -> Any:
    """The encoder, resolved (absolute location, content fingerprint, backend) for cache keys."""
    from vfr.retrieve.encoder import resolve_encoder

    return resolve_encoder(encoder, backend)


def encoder_fingerprint(name: str, backend: str | None = None) -> str:
    """The encoder's cache key (its content fingerprint and backend)."""
    return encoder_spec(name, backend).cache_key


def corpus_key(corpus: Mapping[str, str], encoder: str, config: Any) -> str:
    h = hashlib.sha256()
    from vfr.retrieve.index import INDEX_FORMAT

    settings = {**asdict(config), "encoder": encoder_fingerprint(encoder), "cache_version": CACHE_VERSION,
                "index_format": INDEX_FORMAT}
    if not settings.get("fields"):  # plain BM25: the key indexes cached before field BM25 existed still match
        settings.pop("fields", None)
    if not settings.get("parts"):  # one vector per document: likewise
        settings.pop("parts", None)
        settings.pop("parts_weight", None)
    if settings.get("descriptions") == "newest":  # eval corpora have one text per document: likewise
        settings.pop("descriptions")
    if not settings.get("hubness"):  # no query bank: likewise
        for k in ("hubness", "hubness_k", "query_bank"):
            settings.pop(k, None)
    h.update(json.dumps(settings, sort_keys=True).encode())
    for doc_id in sorted(corpus):
        h.update(doc_id.encode("utf-8") + b"\x00" + corpus[doc_id].encode("utf-8") + b"\x01")
    return h.hexdigest()[:24]


def resolve_fusion(encoder: str, config: Any, mode: str = "auto") -> tuple[Any, dict]:
    """The hybrid's fusion for an evaluation: `auto` = what an index built with this encoder and these
    settings uses by default (the fusion tuned for it by `vfr tune` / `vfr calibrate`, else the built-in
    default); `fixed` = the built-in default whatever was tuned. Returns (FusionConfig, source)."""
    from vfr.retrieve.fusion import FusionConfig
    from vfr.retrieve.tuning import default_fusion

    if mode == "fixed":
        return FusionConfig(), {"kind": "built-in"}
    if mode != "auto":
        raise ValueError(f"unknown fusion mode {mode!r}: use auto or fixed")
    return default_fusion(encoder_spec(encoder), config.scoring())


def open_corpus_index(corpus: Mapping[str, str], encoder: str, config: Any, root: Path | None = None,
                      progress: bool = True, fusion: str = "auto", query_bank: Sequence[str] = ()
                      ) -> tuple[Any, dict]:
    """An opened index over `corpus` (built on first use) whose hybrid uses the fusion `fusion` names
    (`resolve_fusion`: the cached index may predate a tuning). `query_bank`: the texts whose fingerprint
    `config.query_bank` is (hubness correction). Returns (index, info about the cache)."""
    from vfr.retrieve.index import LiveIndex, index_exists

    root = cache_root(root)
    key = corpus_key(corpus, encoder, config)
    folder = root / key
    cached = index_exists(folder / "index")
    info = {} if cached else _build(corpus, encoder, config, root, folder, progress, query_bank)
    index = LiveIndex(folder / "index", wrap_encoder=query_cache(root / "embeddings.duckdb"))
    index.fusion, source = resolve_fusion(encoder, config, fusion)
    return index, {"key": key, "cached": cached, "folder": str(folder),
                   "manifest": manifest_summary(index.manifest, index.fusion, source), **info}


def manifest_summary(m: Mapping[str, Any], fusion: Any = None, source: Mapping[str, Any] | None = None) -> dict:
    """The index settings a results table must state, with the fusion the hybrid really used."""
    from vfr.retrieve.tuning import manifest_fusion

    config, encoder = m.get("config", {}), m.get("encoder", {})
    used = (fusion or manifest_fusion(m)).to_dict()
    source = dict(source or m.get("fusion_source") or {"kind": "built-in"})
    return {"k1": config.get("k1"), "b": config.get("b"), "encoder_id": encoder.get("fingerprint"),
            "dimension": m.get("dimension"), "faiss": config.get("faiss"),
            "fusion": ", ".join(f"{k}={v}" for k, v in used.items()),
            "fusion_source": source.get("kind", "built-in"),
            "fusion_tuned_on": source.get("dataset"),
            # the tuning guard kept the built-in fusion (the grid's best was not significant, p below)
            "fusion_guard_kept_builtin": bool(source.get("grid_best")), "fusion_guard_p": source.get("p_value")}


def _build(corpus: Mapping[str, str], encoder: str, config: Any, root: Path, folder: Path, progress: bool,
           query_bank: Sequence[str] = ()) -> dict:
    from vfr.retrieve.hubness import stage_bank
    from vfr.retrieve.maintain import IndexedStore
    from vfr.store.store import DescriptionRow, ImageRow, Store, text_hash

    if folder.exists():  # a build that died half-way: start over
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    key = encoder_fingerprint(encoder)
    hashes = sorted({text_hash(t) for t in corpus.values()})
    with Store(folder / "store.duckdb") as store:
        store.upsert([ImageRow(i, collection="eval") for i in corpus],
                     [DescriptionRow(i, t, model="eval") for i, t in corpus.items()])
        seeded = _copy_embeddings(root / "embeddings.duckdb", store, key, key, hashes)
        _copy_embeddings(root / "embeddings.duckdb", store, key + "#parts", key + "#parts", hashes)
    if config.query_bank and stage_bank(folder / "index", query_bank) != config.query_bank:
        raise ValueError("the query bank's texts do not match the fingerprint in the index settings")
    pair = IndexedStore(folder / "store.duckdb", folder / "index", encoder=encoder)
    report = pair.update_index(full=True, config=config, progress=_tqdm_progress() if progress else None)
    with Store(folder / "store.duckdb") as store:
        _copy_embeddings(store, root / "embeddings.duckdb", key, key, hashes)
        _copy_embeddings(store, root / "embeddings.duckdb", key + "#parts", key + "#parts", hashes)  # sentences
    return {"embeddings_from_cache": seeded, "build": report}


def _tqdm_progress():
    """A progress(stage, advance, total) callback drawing tqdm bars (the eval layer's progress style)."""
    from tqdm import tqdm

    bars: dict[str, Any] = {}

    def report(stage: str, advance: int, total: int | None = None) -> None:
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(desc=stage, total=total, leave=False, dynamic_ncols=True)
        elif total is not None:
            bar.total = total
        bar.update(advance)
    return report


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

        by_len: dict[int, list[str]] = {}  # sentence-vector blobs (multi-vector) differ in length
        for k, v in found.items():
            by_len.setdefault(len(v), []).append(k)
        for keys in by_len.values():
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


def query_cache(path: Path):
    """An encoder wrapper for LiveIndex: a CachedEncoder over the shared embedding store, so dense and
    hybrid encode each query text once and a rerun encodes none."""
    from vfr.retrieve.query_cache import CachedEncoder, StoreVectors

    return lambda encoder: CachedEncoder(encoder, StoreVectors(_shared_store(path)))
