"""Keeping a live index in step with its store: apply store changes, full builds, pending counts,
compaction (erasure), stats. `IndexedStore` is the store + index pair that `vfr.Engine` extends with
search and record-level writes; evaluation uses it directly.

The store is opened for each short step (read a batch, write cached vectors), never for a whole build, so
imports, describe jobs and deletes in other processes keep working while an index is built.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from vfr.retrieve.types import IndexDoc

Progress = Callable[[str, int, "int | None"], None]


class MaintenanceError(RuntimeError):
    """A problem with the store/index pair the caller can act on (message says what to do)."""


@dataclass(frozen=True)
class Pending:
    """Store changes the index has not applied yet."""

    added: int = 0
    changed: int = 0
    deleted: int = 0
    full_rebuild_needed: bool = False

    @property
    def total(self) -> int:
        return self.added + self.changed + self.deleted

    def describe(self) -> str:
        if self.full_rebuild_needed:
            return "the store's change log no longer reaches back to this index: run `vfr index --full`"
        return f"{self.added} added, {self.changed} changed, {self.deleted} deleted"


class IndexedStore:
    """A DuckDB store and the live index that follows it (by default next to it: photos.index/)."""

    def __init__(self, db: Path, index_dir: Path, encoder: str | None = None, encoder_backend: str | None = None,
                 lock_timeout: float | None = None, query_batching=None) -> None:
        import threading

        from vfr.store.store import lock_timeout_s

        # absolute: a long-lived process may change its working directory (and the JVM never follows)
        self.db, self.index_dir = Path(db).absolute(), Path(index_dir).absolute()
        self._encoder_name, self._encoder_backend = encoder, encoder_backend
        self.lock_timeout = lock_timeout_s() if lock_timeout is None else lock_timeout
        self.query_batching = query_batching
        self._index = None
        self._index_lock = threading.Lock()  # one LiveIndex per process view, whatever threads ask for it

    def store(self, read_only: bool = False, lock_timeout: float | None = None):
        """A short-lived store connection (waits up to `lock_timeout`, default the engine's, for another
        process's lock)."""
        from vfr.store.store import Store

        return Store(self.db, read_only=read_only,
                     lock_timeout=self.lock_timeout if lock_timeout is None else lock_timeout)

    @property
    def index(self):
        from vfr.retrieve.generations import IndexError_, _missing_message
        from vfr.retrieve.index import LiveIndex, index_exists

        with self._index_lock:
            if self._index is None:
                if not index_exists(self.index_dir):
                    raise IndexError_(_missing_message(self.index_dir))
                self._index = LiveIndex(self.index_dir, self._encoder_name, encoder_backend=self._encoder_backend)
            return self._index

    def _writer(self, config=None, identity=None, progress: Progress | None = None, lock_timeout: float | None = None):
        from vfr.retrieve.writer import IndexWriter

        return IndexWriter(self.index_dir, config, identity, self.lock_timeout if lock_timeout is None else lock_timeout,
                           progress)

    def close(self) -> None:
        """Let go of the index (searches still running finish on what they hold; see IndexHandle.close)."""
        with self._index_lock:
            index, self._index = self._index, None
        if index is not None:
            index.close()

    def stage_query_bank(self, texts: Sequence[str]) -> str:
        """Keep a query bank's texts in the index folder for the hubness correction (retrieve/hubness.py);
        returns the fingerprint to pass as `IndexConfig(query_bank=..., hubness=...)` to `update_index`."""
        from vfr.retrieve.hubness import stage_bank

        return stage_bank(self.index_dir, texts)

    def update_index(self, full: bool = False, config=None, progress: Progress | None = None) -> dict:
        """Apply the store's changes since the index's applied sequence (or rebuild everything with
        `full=True`, or when there is no usable index). Returns counts and the new generation."""
        report: dict = {}
        try:
            report = update_index(self, full, config, progress)
            return report
        finally:
            if report.get("mode") != "update":
                self.close()  # a new encoder or settings take effect on the next search
            # an update keeps them: this process's readers move to the new generation on their next search

    def pending(self, lock_timeout: float | None = None) -> Pending:
        """Store changes the index lacks; `lock_timeout` bounds the wait for a busy store (default: the
        engine's)."""
        return pending(self, lock_timeout)

    def apply_deletions(self, lock_timeout: float | None = None) -> int:
        """Bring deletions the index missed (a deleting process died half-way) into the index at once;
        `lock_timeout` bounds the waits for the store and the index writer (default: the engine's)."""
        return apply_deletions(self, lock_timeout)

    def compact(self, store: bool = True, progress: Progress | None = None) -> dict:
        """Rewrite index segments without deleted rows and (with `store`) the database file without
        freed blocks, so deleted descriptions, captions and vectors leave no bytes behind."""
        return compact(self, store, progress)

    def stats(self) -> dict:
        return stats(self)


BATCH = 2048  # documents per store read and per encode call


def _spec_for_build(target: "IndexedStore", manifest: dict | None, full: bool):
    """The encoder a build uses: the one asked for, else the index's own (checked), else the default."""
    from vfr.retrieve.encoder import EncoderSpec, check_encoder, resolve_encoder

    if target._encoder_name and (full or manifest is None):
        return resolve_encoder(target._encoder_name, target._encoder_backend)
    if manifest is not None:
        return check_encoder(EncoderSpec.from_manifest(manifest["encoder"]), target._encoder_name)
    previous = _previous_encoder(target)  # a full rebuild keeps the index's encoder unless told otherwise
    if previous is not None:
        location = previous.location if Path(previous.location).exists() else previous.name
        return resolve_encoder(location, target._encoder_backend or previous.backend)
    return resolve_encoder("default", target._encoder_backend)


def _previous_encoder(target: "IndexedStore"):
    """The encoder the current index records, if its manifest can still be read."""
    from vfr.retrieve import generations
    from vfr.retrieve.encoder import EncoderSpec

    try:
        return EncoderSpec.from_manifest(generations.read_manifest(target.index_dir)["encoder"])
    except Exception:  # noqa: BLE001 - no index, an older format or a damaged one: nothing to keep
        return None


def _embed(target: "IndexedStore", encoder, records: Sequence[Any], progress: "Progress | None") -> np.ndarray:
    """Vectors of the records' texts: from the store's embedding cache, encoding (and caching) the rest."""
    out = _embed_texts(target, encoder, [r.text_hash for r in records], [r.text for r in records])
    progress and progress(f"embeddings ({encoder.spec.name})", len(records), None)
    return out


def _embed_texts(target: "IndexedStore", encoder, hashes: Sequence[str], texts: Sequence[str]) -> np.ndarray:
    """Vectors from the store's cache, encoding the rest; a joined document's are encoded, never cached."""
    from vfr.store.changes import cacheable

    key = encoder.spec.cache_key
    with target.store() as store:
        found = store.cached_embeddings(key, [h for h in hashes if cacheable(h)])
    todo = {h: t for h, t in zip(hashes, texts) if h not in found}
    if todo:
        vecs = encoder.encode(list(todo.values()))
        keep = [(i, h) for i, h in enumerate(todo) if cacheable(h)]
        if keep:
            with target.store() as store:
                store.cache_embeddings(key, [h for _, h in keep], vecs[[i for i, _ in keep]])
        found.update(zip(todo, vecs))
    out = np.vstack([found[h] for h in hashes]).astype(np.float32)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


PARTS_KEY = "#parts"


def _part_vectors(target: "IndexedStore", encoder, records: Sequence[Any]) -> list[np.ndarray]:
    """Each record's sentence vectors (multi-vector indexes), cached in the store under the document's own
    text hash (model key + "#parts"), so deleting the description purges them with its other vectors."""
    from vfr.retrieve.multivector import split_parts
    from vfr.store.changes import cacheable

    key, dim = encoder.spec.cache_key + PARTS_KEY, encoder.dimension
    hashes = [r.text_hash for r in records]
    with target.store() as store:
        found = store.cached_embeddings(key, [h for h in hashes if cacheable(h)])
    todo = {r.text_hash: split_parts(r.text) for r in records if r.text_hash not in found}
    if todo:
        flat = [t for parts in todo.values() for t in parts]
        vecs = encoder.encode(flat)
        bounds = np.cumsum([0] + [len(p) for p in todo.values()])
        new = {h: vecs[a:b] for h, a, b in zip(todo, bounds[:-1], bounds[1:])}
        by_count: dict[int, list[str]] = {}
        for h, v in new.items():
            if cacheable(h):  # a joined document's parts are encoded, never cached (see _embed_texts)
                by_count.setdefault(len(v), []).append(h)
        with target.store() as store:
            for hs in by_count.values():  # one blob per document: its parts' vectors, row after row
                store.cache_embeddings(key, hs, np.vstack([new[h].reshape(1, -1) for h in hs]))
        found.update({h: v.reshape(-1) for h, v in new.items()})
    out = []
    for h in hashes:
        v = np.asarray(found[h], dtype=np.float32).reshape(-1, dim)
        out.append(v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12))
    return out


def _hubness_offsets(target: "IndexedStore", encoder, config) -> Callable[[np.ndarray], np.ndarray] | None:
    """vectors → their hubness offsets (retrieve/hubness.py), None without a query bank. The bank's vectors
    are loaded on the first call and kept for the rest of the update."""
    from functools import cache

    from vfr.retrieve import hubness

    if not config.hubness:
        return None

    @cache
    def bank() -> np.ndarray:
        return hubness.bank_vectors(target.index_dir, encoder, config.query_bank)
    return lambda vectors: hubness.offsets(bank(), vectors, config.hubness_k)


def _docs(target: "IndexedStore", encoder, records: Sequence[Any], progress, parts: bool,
          offsets: Callable[[np.ndarray], np.ndarray] | None) -> list[IndexDoc]:
    vectors = _embed(target, encoder, records, progress)
    part_vectors = _part_vectors(target, encoder, records) if parts else [None] * len(records)
    hubs: Sequence[float | None] = offsets(vectors).tolist() if offsets else [None] * len(records)
    return [IndexDoc(r.id, r.text, v, r.collection, r.payload(), p, h)
            for r, v, p, h in zip(records, vectors, part_vectors, hubs)]


def update_index(target: "IndexedStore", full: bool, config, progress) -> dict:
    from vfr.retrieve import generations
    from vfr.retrieve.encoder import load_encoder
    from vfr.retrieve.writer import IndexWriter

    t0 = time.perf_counter()
    with target.store(read_only=True) as store:
        uid, upto = store.uid(), store.current_seq()
    manifest = None
    if not full:
        try:
            manifest = generations.read_manifest(target.index_dir)
        except (generations.IndexError_, FileNotFoundError):
            full = True  # no index, an older format, or a damaged one: build it anew
    if manifest is not None and manifest.get("store_uid") != uid:
        full, manifest = True, None  # the index follows another store
    if manifest is not None and config is not None and config != _recorded_config(manifest):
        full, manifest = True, None  # new settings take a full build
    if manifest is not None and target._encoder_backend and \
            target._encoder_backend != manifest["encoder"].get("backend"):
        full, manifest = True, None  # document vectors come from the new backend too
    spec = _spec_for_build(target, manifest, full)
    encoder = load_encoder(spec)
    identity = {"encoder": spec.to_manifest(), "dimension": encoder.dimension, "store_uid": uid,
                "store_path": str(target.db.resolve())}
    with IndexWriter(target.index_dir, config, identity, target.lock_timeout, progress, fresh=full) as w:
        fusion_changed = _record_fusion(w, spec)
        with target.store(read_only=True) as store:
            changes = store.changes_since(w.applied_seq)
        if full or not changes.complete:
            return _full(target, w, encoder, upto, progress, t0)
        return _apply(target, w, encoder, changes, progress, t0, fusion_changed)


def _recorded_config(manifest: dict):
    from vfr.retrieve.writer import IndexConfig

    try:
        return IndexConfig(**manifest["config"])
    except (TypeError, ValueError, KeyError):
        return None  # another format: a full build


def _record_fusion(w, spec) -> bool:
    """Put the encoder's tuned fusion (or the built-in default) into the manifest the writer publishes;
    True if it differs from what the current generation records (an update then commits it)."""
    from vfr.retrieve.tuning import default_fusion

    import json

    fusion, source = default_fusion(spec, w.config.scoring())
    now = json.loads(json.dumps({"fusion_default": fusion.to_dict(), "fusion_source": source}))  # as stored
    before = {k: w.manifest.get(k) for k in now}
    w.manifest.update(now)
    return before != now


def _full(target: "IndexedStore", w, encoder, upto: int, progress, t0: float) -> dict:
    w.drop_all()
    offsets = _hubness_offsets(target, encoder, w.config)
    if progress:
        with target.store(read_only=True) as store:
            progress(f"embeddings ({encoder.spec.name})", 0, store.count_documents())
    n = 0
    last = None
    while True:
        with target.store(read_only=True) as store:
            records = store.document_records_after(last, BATCH, w.config.descriptions)
        if not records:
            break
        w.upsert(_docs(target, encoder, records, progress, bool(w.config.parts), offsets))
        n += len(records)
        last = records[-1].id
    if n == 0:
        raise MaintenanceError(f"{target.db} has no documents: run `vfr import FILE` or `vfr describe` first")
    generation = w.commit(applied_seq=upto, operation="full build", extra={"documents": n})
    from vfr.retrieve.hubness import forget_other_banks

    forget_other_banks(target.index_dir, w.config.query_bank)  # a replaced query log does not linger
    return {"mode": "full", "documents": n, "added": n, "changed": 0, "deleted": 0, "generation": generation,
            "seconds": round(time.perf_counter() - t0, 3)}


def _apply(target: "IndexedStore", w, encoder, changes, progress, t0: float, settings_changed: bool = False
           ) -> dict:
    live = w.live_ids() if changes.ids else set()
    offsets = _hubness_offsets(target, encoder, w.config)
    added = changed = 0
    deleted: list[str] = []
    for start in range(0, len(changes.ids), BATCH):
        chunk = changes.ids[start:start + BATCH]
        with target.store(read_only=True) as store:
            records = store.document_records(chunk, w.config.descriptions)
        deleted += [i for i in chunk if i not in records and i in live]
        present = [records[i] for i in chunk if i in records]
        added += sum(1 for r in present if r.id not in live)
        changed += sum(1 for r in present if r.id in live)
        if present:
            w.upsert(_docs(target, encoder, present, progress, bool(w.config.parts), offsets))
    w.delete(deleted)
    if not (added or changed or deleted) and changes.upto == w.applied_seq and not settings_changed:
        generation = w.generation
    else:
        generation = w.commit(applied_seq=changes.upto, operation="update" if added or changed or deleted
                              or changes.upto != w.applied_seq else "settings")
    return {"mode": "update", "documents": w.manifest.get("documents", 0), "added": added, "changed": changed,
            "deleted": len(deleted), "generation": generation, "seconds": round(time.perf_counter() - t0, 3)}


def pending(target: "IndexedStore", lock_timeout: float | None = None) -> "Pending":
    """What the store has that the index has not applied (reads the store; no index lock)."""
    from vfr.retrieve import generations

    manifest = generations.read_manifest(target.index_dir)
    with target.store(read_only=True, lock_timeout=lock_timeout) as store:
        if manifest.get("store_uid") != store.uid():
            return Pending(full_rebuild_needed=True)
        changes = store.changes_since(manifest.get("applied_seq", 0))
        if not changes.complete:
            return Pending(full_rebuild_needed=True)
        present = set(store.document_records(changes.ids)) if changes.ids else set()
    if not changes.ids:
        return Pending()
    with target.index.handle.acquire() as snap:
        indexed = set(snap.locate(changes.ids))
    return Pending(added=len(present - indexed), changed=len(present & indexed),
                   deleted=len(indexed - present))


def compact(target: "IndexedStore", with_store: bool, progress) -> dict:
    from vfr.retrieve.index import index_exists

    from vfr.retrieve import generations

    t0 = time.perf_counter()
    report: dict[str, Any] = {}
    target.close()  # this process's own reader must not hold the generations being erased
    if index_exists(target.index_dir):
        with target._writer(progress=progress) as w:
            before = sum(s.deleted for s in w.segments)
            report["index_generation"] = w.compact()
            report["index_rows_removed"] = before
            applied = w.applied_seq
        held = generations.held_generations(target.index_dir)
        report["older_generations_held_by_readers"] = held
    else:
        applied = None
    if with_store:
        with target.store() as store:
            if applied is not None:
                report["change_rows_pruned"] = store.prune_changes(applied)
            report.update(store.rewrite_file())
    report["seconds"] = round(time.perf_counter() - t0, 3)
    return report


def stats(target: "IndexedStore") -> dict:
    from vfr.retrieve.index import index_exists

    out: dict[str, Any] = {"database": str(target.db), "index": str(target.index_dir)}
    if index_exists(target.index_dir):
        with target.index.handle.acquire() as snap:
            m = snap.manifest
            out.update({"generation": m["generation"], "documents": snap.documents, "segments": len(m["segments"]),
                        "deleted_rows": sum(s["deleted"] for s in m["segments"]), "applied_seq": m["applied_seq"],
                        "encoder": m["encoder"], "config": m["config"], "collections": snap.collections(),
                        "committed_at": m.get("committed_at"), "last_operation": m.get("last_operation"),
                        "fusion": {"default": target.index.default_fusion().to_dict(),
                                   "source": m.get("fusion_source") or {"kind": "built-in"}}})
    return out



def apply_deletions(target: "IndexedStore", lock_timeout: float | None = None) -> int:
    """Remove from the index documents the store no longer has (a delete whose process died before it
    reached the index); cheap: no encoder. Returns how many."""
    from vfr.retrieve import generations

    manifest = generations.read_manifest(target.index_dir)
    with target.store(read_only=True, lock_timeout=lock_timeout) as store:
        if manifest.get("store_uid") != store.uid():
            return 0
        changes = store.changes_since(manifest.get("applied_seq", 0))
        present = set(store.document_records(changes.ids)) if changes.ids else set()
    with target.index.handle.acquire() as snap:
        gone = [i for i in snap.locate([c for c in changes.ids if c not in present])]
    if gone:
        with target._writer(lock_timeout=lock_timeout) as w:
            w.delete(gone)
            w.commit(operation="delete")
    return len(gone)
