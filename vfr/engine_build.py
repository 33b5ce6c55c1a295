"""The Engine's index maintenance: apply store changes, full builds, pending counts, compaction, stats.

The store is opened for each short step (read a batch, write cached vectors), never for a whole build, so
imports, describe jobs and deletes in other processes keep working while an index is built.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from vfr.retrieve.types import IndexDoc

if TYPE_CHECKING:
    from vfr.engine import Engine, Pending, Progress

BATCH = 2048  # documents per store read and per encode call


def _spec_for_build(engine: "Engine", manifest: dict | None, full: bool):
    """The encoder a build uses: the one asked for, else the index's own (checked), else the default."""
    from vfr.retrieve._encoder_shim import EncoderSpec, check_encoder, resolve_encoder

    if engine._encoder_name and (full or manifest is None):
        return resolve_encoder(engine._encoder_name, engine._encoder_backend)
    if manifest is not None:
        return check_encoder(EncoderSpec.from_manifest(manifest["encoder"]), engine._encoder_name)
    return resolve_encoder(engine._encoder_name or "default", engine._encoder_backend)


def _embed(engine: "Engine", encoder, records: Sequence[Any], progress: "Progress | None") -> np.ndarray:
    """Vectors of the records' texts: from the store's embedding cache, encoding (and caching) the rest."""
    key = encoder.spec.cache_key
    hashes = [r.text_hash for r in records]
    with engine.store() as store:
        found = store.cached_embeddings(key, hashes)
    todo = {r.text_hash: r.text for r in records if r.text_hash not in found}
    if todo:
        vecs = encoder.encode(list(todo.values()))
        with engine.store() as store:
            store.cache_embeddings(key, list(todo), vecs)
        found.update(zip(todo, vecs))
    progress and progress(f"embeddings ({encoder.spec.name})", len(records), None)
    out = np.vstack([found[h] for h in hashes]).astype(np.float32)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def _docs(engine: "Engine", encoder, records: Sequence[Any], progress) -> list[IndexDoc]:
    vectors = _embed(engine, encoder, records, progress)
    return [IndexDoc(r.id, r.text, v, r.collection, r.payload()) for r, v in zip(records, vectors)]


def update_index(engine: "Engine", full: bool, config, progress) -> dict:
    from vfr.retrieve import generations
    from vfr.retrieve._encoder_shim import load_encoder
    from vfr.retrieve.fusion import FusionConfig
    from vfr.retrieve.writer import IndexWriter

    t0 = time.perf_counter()
    with engine.store(read_only=True) as store:
        uid, upto = store.uid(), store.current_seq()
    manifest = None
    if not full:
        try:
            manifest = generations.read_manifest(engine.index_dir)
        except (generations.IndexError_, FileNotFoundError):
            full = True  # no index, an older format, or a damaged one: build it anew
    if manifest is not None and manifest.get("store_uid") != uid:
        full, manifest = True, None  # the index follows another store
    if manifest is not None and config is not None and config.to_dict() != manifest["config"]:
        full, manifest = True, None  # new settings take a full build
    spec = _spec_for_build(engine, manifest, full)
    encoder = load_encoder(spec)
    identity = {"encoder": spec.to_manifest(), "dimension": encoder.dimension, "store_uid": uid,
                "store_path": str(engine.db.resolve()), "fusion_default": FusionConfig().to_dict()}
    with IndexWriter(engine.index_dir, config, identity, engine.lock_timeout, progress, fresh=full) as w:
        with engine.store(read_only=True) as store:
            changes = store.changes_since(w.applied_seq)
        if full or not changes.complete:
            return _full(engine, w, encoder, upto, progress, t0)
        return _apply(engine, w, encoder, changes, progress, t0)


def _full(engine: "Engine", w, encoder, upto: int, progress, t0: float) -> dict:
    w.drop_all()
    if progress:
        with engine.store(read_only=True) as store:
            progress(f"embeddings ({encoder.spec.name})", 0, store.count_documents())
    n = 0
    last = None
    while True:
        with engine.store(read_only=True) as store:
            records = store.document_records_after(last, BATCH)
        if not records:
            break
        w.upsert(_docs(engine, encoder, records, progress))
        n += len(records)
        last = records[-1].id
    if n == 0:
        from vfr.engine import EngineError

        raise EngineError(f"{engine.db} has no documents: run `vfr import FILE` or `vfr describe` first")
    generation = w.commit(applied_seq=upto, operation="full build", extra={"documents": n})
    return {"mode": "full", "documents": n, "added": n, "changed": 0, "deleted": 0, "generation": generation,
            "seconds": round(time.perf_counter() - t0, 3)}


def _apply(engine: "Engine", w, encoder, changes, progress, t0: float) -> dict:
    live = w.live_ids() if changes.ids else set()
    added = changed = 0
    deleted: list[str] = []
    for start in range(0, len(changes.ids), BATCH):
        chunk = changes.ids[start:start + BATCH]
        with engine.store(read_only=True) as store:
            records = store.document_records(chunk)
        deleted += [i for i in chunk if i not in records and i in live]
        present = [records[i] for i in chunk if i in records]
        added += sum(1 for r in present if r.id not in live)
        changed += sum(1 for r in present if r.id in live)
        if present:
            w.upsert(_docs(engine, encoder, present, progress))
    w.delete(deleted)
    if not (added or changed or deleted) and changes.upto == w.applied_seq:
        generation = w.generation
    else:
        generation = w.commit(applied_seq=changes.upto, operation="update")
    return {"mode": "update", "documents": w.manifest.get("documents", 0), "added": added, "changed": changed,
            "deleted": len(deleted), "generation": generation, "seconds": round(time.perf_counter() - t0, 3)}


def pending(engine: "Engine") -> "Pending":
    """What the store has that the index has not applied (reads the store; no index lock)."""
    from vfr.engine import Pending
    from vfr.retrieve import generations

    manifest = generations.read_manifest(engine.index_dir)
    with engine.store(read_only=True) as store:
        if manifest.get("store_uid") != store.uid():
            return Pending(full_rebuild_needed=True)
        changes = store.changes_since(manifest.get("applied_seq", 0))
        if not changes.complete:
            return Pending(full_rebuild_needed=True)
        present = set(store.document_records(changes.ids)) if changes.ids else set()
    if not changes.ids:
        return Pending()
    with engine.index.handle.acquire() as snap:
        indexed = set(snap.locate(changes.ids))
    return Pending(added=len(present - indexed), changed=len(present & indexed),
                   deleted=len(indexed - present))


def compact(engine: "Engine", with_store: bool, progress) -> dict:
    from vfr.retrieve.index import index_exists

    from vfr.retrieve import generations

    t0 = time.perf_counter()
    report: dict[str, Any] = {}
    engine.close()  # this process's own reader must not hold the generations being erased
    if index_exists(engine.index_dir):
        with engine._writer(progress=progress) as w:
            before = sum(s.deleted for s in w.segments)
            report["index_generation"] = w.compact()
            report["index_rows_removed"] = before
            applied = w.applied_seq
        held = generations.held_generations(engine.index_dir)
        report["older_generations_held_by_readers"] = held
    else:
        applied = None
    if with_store:
        with engine.store() as store:
            if applied is not None:
                report["change_rows_pruned"] = store.prune_changes(applied)
            report.update(store.rewrite_file())
    report["seconds"] = round(time.perf_counter() - t0, 3)
    return report


def stats(engine: "Engine") -> dict:
    from vfr.retrieve.index import index_exists

    out: dict[str, Any] = {"database": str(engine.db), "index": str(engine.index_dir)}
    if index_exists(engine.index_dir):
        with engine.index.handle.acquire() as snap:
            m = snap.manifest
            out.update({"generation": m["generation"], "documents": snap.documents, "segments": len(m["segments"]),
                        "deleted_rows": sum(s["deleted"] for s in m["segments"]), "applied_seq": m["applied_seq"],
                        "encoder": m["encoder"], "config": m["config"], "collections": snap.collections(),
                        "committed_at": m.get("committed_at"), "last_operation": m.get("last_operation")})
    return out



def apply_deletions(engine: "Engine") -> int:
    """Remove from the index documents the store no longer has (a delete whose process died before it
    reached the index); cheap: no encoder. Returns how many. Skips if another writer is busy."""
    from vfr.retrieve import generations

    manifest = generations.read_manifest(engine.index_dir)
    with engine.store(read_only=True) as store:
        if manifest.get("store_uid") != store.uid():
            return 0
        changes = store.changes_since(manifest.get("applied_seq", 0))
        present = set(store.document_records(changes.ids)) if changes.ids else set()
    with engine.index.handle.acquire() as snap:
        gone = [i for i in snap.locate([c for c in changes.ids if c not in present])]
    if gone:
        with engine._writer() as w:
            w.delete(gone)
            w.commit(operation="delete")
    return len(gone)
