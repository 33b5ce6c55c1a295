"""A live index: the folder format (retrieve/generations.py, retrieve/segments.py), the backends that
search its newest generation, and its writer.

    idx = LiveIndex(Path("photos.index"))
    idx.backend("hybrid").search("two dogs on a beach", 10)
    with idx.writer() as w:
        w.upsert(docs); w.delete(ids); w.commit(applied_seq=...)

The manifest of every generation records the encoder (location, content fingerprint, backend), its
dimension, the BM25 and FAISS settings, the store it follows (uid) and the store change sequence it has
applied, so an update is "apply the changes after N" and a full build is just a rewrite.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from vfr.retrieve import allocator, generations
from vfr.retrieve.fusion import FusionConfig
from vfr.retrieve.generations import FORMAT as INDEX_FORMAT, IndexError_, read_manifest  # noqa: F401
from vfr.retrieve.snapshot import IndexHandle
from vfr.retrieve.writer import IndexConfig, IndexWriter  # noqa: F401

RETRIEVERS = ("bm25", "dense", "hybrid")


class LiveIndex:
    """An index folder opened for search (and, on demand, for writing)."""

    def __init__(self, index_dir: Path, encoder_override: str | None = None,
                 wrap_encoder: Callable[[object], object] | None = None, encoder_backend: str | None = None) -> None:
        """`encoder_override`: a moved copy of the index's encoder (accepted if its fingerprint matches).
        `wrap_encoder`: wraps the query encoder (e.g. a CachedEncoder, a micro-batching encoder); the
        wrapper keeps the Encoder interface (`spec`, `dimension`, `encode`). `encoder_backend`: run the
        query encoder on another backend than the index was built with (their vectors agree: docs/encoders.md)."""
        allocator.keep_freed_memory()
        self._encoder_backend = encoder_backend
        self.dir = Path(index_dir).absolute()
        self.handle = IndexHandle(self.dir)
        self._encoder_override = encoder_override
        self._wrap_encoder = wrap_encoder
        self._encoder = None
        self._sparse = self._dense = None
        self.fusion: FusionConfig | None = None  # overrides the manifest's default (evaluation sets it)

    @property
    def manifest(self) -> dict:
        return self.handle.current().manifest

    def encoder(self):
        """The encoder the index was built with, checked against its recorded fingerprint."""
        if self._encoder is None:
            from vfr.retrieve.encoder import EncoderSpec, check_encoder, load_encoder

            from dataclasses import replace

            spec = check_encoder(EncoderSpec.from_manifest(self.manifest["encoder"]), self._encoder_override)
            if self._encoder_backend:
                spec = replace(spec, backend=self._encoder_backend)
            encoder = load_encoder(spec)
            self._encoder = self._wrap_encoder(encoder) if self._wrap_encoder else encoder
        return self._encoder

    def sparse(self):
        if self._sparse is None:
            from vfr.retrieve.backends import SparseBackend

            self._sparse = SparseBackend(self.handle)
        return self._sparse

    def dense(self):
        if self._dense is None:
            from vfr.retrieve.backends import DenseBackend

            self._dense = DenseBackend(self.handle, self.encoder())
        return self._dense

    def backend(self, retriever: str = "hybrid", fusion: FusionConfig | None = None):
        if retriever == "bm25":
            return self.sparse()
        if retriever == "dense":
            return self.dense()
        if retriever == "hybrid":
            from vfr.retrieve import lucene
            from vfr.retrieve.live_hybrid import LiveHybridBackend

            return LiveHybridBackend(self.sparse(), self.dense(), fusion or self.default_fusion(),
                                 background=lucene.pool().submit)
        raise IndexError_(f"unknown retriever {retriever!r}: use bm25, dense or hybrid")

    searcher = backend  # the name callers used before the live engine

    def default_fusion(self) -> FusionConfig:
        """The hybrid's fusion when a search names none: `fusion` if set on this object, else the one the
        manifest records (tuned for this index's encoder, or the built-in default; retrieve/tuning.py)."""
        if self.fusion is not None:
            return self.fusion
        from vfr.retrieve.tuning import manifest_fusion

        return manifest_fusion(self.manifest)

    def writer(self, config: IndexConfig | None = None, identity: dict | None = None, lock_timeout: float = 10.0,
               progress: Callable[[str, int, int | None], None] | None = None) -> IndexWriter:
        return IndexWriter(self.dir, config, identity, lock_timeout, progress)

    def close(self) -> None:
        self.handle.close()


def index_exists(index_dir: Path) -> bool:
    """Whether an index was built at `index_dir` (its HEAD exists; reading it may still find it damaged)."""
    return (Path(index_dir) / "HEAD").is_file()


def open_index(index_dir: Path) -> LiveIndex:
    return LiveIndex(Path(index_dir))
