"""Index folders: build (sparse + dense + manifest) into a fresh folder, then swap atomically.

Layout of an index folder:
    <index>/current -> builds/<id>        (a symlink, replaced atomically by os.replace)
    <index>/builds/<id>/manifest.json
    <index>/builds/<id>/sparse/           (Lucene)
    <index>/builds/<id>/dense/            (index.faiss + ids.json)
A crash mid-build leaves `builds/<id>.tmp` behind and `current` untouched; the next build clears it.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Literal

from vfr.retrieve.encoder import DEFAULT_ENCODER, encoder_id
from vfr.retrieve.fusion import FusionConfig

MANIFEST_VERSION = 1
INDEX_FORMAT = 2  # 2: the sparse side carries docids.json and the BM25 forward index (retrieve/bm25_forward.py)


class IndexError_(RuntimeError):
    """An index problem the user can act on (message says what to do)."""


@dataclass(frozen=True)
class IndexConfig:
    encoder: str = DEFAULT_ENCODER
    faiss: Literal["flat", "hnsw"] = "flat"
    hnsw_m: int = 32
    k1: float = 0.9   # Anserini's defaults for short documents; chosen on COCO val (docs/fusion.md)
    b: float = 0.4
    batch_size: int = 64


def build_index(store, index_dir: Path, config: IndexConfig = IndexConfig(), progress: bool = True) -> dict:
    """Build sparse and dense indexes of every document in `store`; returns the manifest."""
    from vfr.retrieve.dense import build_faiss, embed_documents, write_dense
    from vfr.retrieve.sparse import build_sparse
    from vfr.retrieve.types import Document
    from vfr.progress import Progress

    index_dir.mkdir(parents=True, exist_ok=True)
    with _build_lock(index_dir):
        builds = index_dir / "builds"
        builds.mkdir(exist_ok=True)
        for stale in builds.glob("*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
        build_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        tmp = builds / f"{build_id}.tmp"
        tmp.mkdir()
        fingerprint = store.fingerprint()
        if fingerprint["documents"] == 0:
            shutil.rmtree(tmp)
            raise IndexError_(f"{store.path} has no documents: run `vfr import FILE` or `vfr describe` first")
        rows = store.documents_with_hashes()
        timings: dict[str, float] = {}
        with Progress(enabled=progress) as bar:
            t0 = time.perf_counter()
            task = bar.add("BM25 (Lucene)", len(rows))
            build_sparse((Document(i, t) for i, t, _ in rows), tmp / "sparse", on_batch=lambda n: bar.advance(task, n))
            timings["sparse_s"] = time.perf_counter() - t0

            t0 = time.perf_counter()
            task = bar.add(f"embeddings ({config.encoder})", len(rows))
            key = encoder_id(config.encoder)
            vectors, counts = embed_documents(store, config.encoder, key, rows, config.batch_size,
                                              on_progress=lambda n, _total: bar.advance(task, n))
            timings["encode_s"] = time.perf_counter() - t0

            t0 = time.perf_counter()
            index = build_faiss(vectors, config.faiss, config.hnsw_m)
            write_dense(tmp / "dense", index, [i for i, _, _ in rows])
            timings["faiss_s"] = time.perf_counter() - t0
        manifest = {
            "manifest_version": MANIFEST_VERSION,
            "index_format": INDEX_FORMAT,
            "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "store": {"path": str(store.path.resolve()), **fingerprint},
            "documents": len(rows),
            "sparse": {"engine": "lucene-bm25", "k1": config.k1, "b": config.b, "analyzer": "english-porter"},
            "dense": {"encoder": config.encoder, "encoder_id": key, "dimension": int(vectors.shape[1]),
                      "normalised": True, "metric": "cosine (inner product on L2-normalised vectors)",
                      "faiss": config.faiss, "hnsw_m": config.hnsw_m if config.faiss == "hnsw" else None},
            "fusion_default": FusionConfig().to_dict(),
            "versions": _versions(store),
            "build": {"config": asdict(config), "timings": timings, "embeddings": counts},
        }
        manifest = json.loads(json.dumps(manifest))  # return exactly what readers will see (tuples → lists)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
        final = builds / build_id
        tmp.rename(final)
        _swap_current(index_dir, final)
        for old in builds.iterdir():
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
    return manifest


def _versions(store) -> dict:
    rows = store.con.execute("SELECT DISTINCT model, prompt_version, coalesce(renderer_version, '') "
                             "FROM descriptions ORDER BY ALL").fetchall()
    return {"descriptions": [{"model": m, "prompt_version": p, "renderer_version": r or None} for m, p, r in rows]}


def _swap_current(index_dir: Path, target: Path) -> None:
    link = index_dir / "current"
    tmp_link = index_dir / f".current.{os.getpid()}"
    if tmp_link.is_symlink() or tmp_link.exists():
        tmp_link.unlink()
    tmp_link.symlink_to(target.relative_to(index_dir))
    os.replace(tmp_link, link)  # atomic on POSIX: readers see the old build or the new one, never neither
    fd = os.open(index_dir, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _build_lock(index_dir: Path) -> Iterator[None]:
    with open(index_dir / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IndexError_(f"another `vfr index` is building {index_dir}; wait for it to finish") from None
        yield


def read_manifest(index_dir: Path) -> dict:
    path = index_dir / "current" / "manifest.json"
    if not path.exists():
        raise IndexError_(f"no index at {index_dir}: run `vfr index` first")
    return json.loads(path.read_text())


def is_stale(manifest: dict, fingerprint: dict) -> bool:
    """The store changed since the build, or the build predates this vfr's index format."""
    return outdated_format(manifest) or (manifest["store"].get("digest"), manifest["store"].get("documents")) != \
        (fingerprint["digest"], fingerprint["documents"])


def outdated_format(manifest: dict) -> bool:
    return manifest.get("index_format", 1) < INDEX_FORMAT


class OpenIndex:
    """A built index, opened for search. Backends load lazily (the JVM only for BM25, torch only for dense)."""

    def __init__(self, index_dir: Path) -> None:
        self.dir = index_dir
        self.manifest = read_manifest(index_dir)
        self.path = (index_dir / "current").resolve()  # pin this build even if a rebuild swaps `current`
        self._sparse = None
        self._dense = None

    def sparse(self):
        if self._sparse is None:
            from vfr.retrieve.sparse import LuceneSearcher

            s = self.manifest["sparse"]
            self._sparse = LuceneSearcher(self.path / "sparse", s["k1"], s["b"])
        return self._sparse

    def dense(self):
        if self._dense is None:
            from vfr.retrieve.dense import FaissSearcher

            self._dense = FaissSearcher(self.path / "dense", self.manifest["dense"]["encoder"])
        return self._dense

    def searcher(self, retriever: str = "hybrid", fusion: FusionConfig | None = None):
        if retriever == "bm25":
            return self.sparse()
        if retriever == "dense":
            return self.dense()
        if retriever == "hybrid":
            from vfr.retrieve.hybrid import HybridSearcher

            return HybridSearcher(self.sparse(), self.dense(), fusion)
        raise IndexError_(f"unknown retriever {retriever!r}: use bm25, dense or hybrid")


def open_index(index_dir: Path) -> OpenIndex:
    return OpenIndex(index_dir)
