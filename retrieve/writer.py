"""The one writer of a live index: stage upserts and deletes, then `commit` publishes a new generation.

An upsert adds the document to a new segment and tombstones its older version; a delete tombstones it
(and deletes it from that segment's Lucene index, by id term). `commit` writes the new segment, the
tombstones and Lucene's deletions, then the manifest, then swaps HEAD. After a commit the merge policy may
merge small segments, and compaction rewrites segments holding many deleted rows (or all of them on
request), so deleted text and vectors leave the disk. Holds the writer lock for its lifetime.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Literal, Sequence

import numpy as np

from vfr.retrieve import generations, lucene, lucene_write
from vfr.store.faults import point
from vfr.retrieve.segments import LoadedSegment, SegmentError, SegmentInfo, merge_segments, read_tombstones, \
    write_segment, write_tombstones
from vfr.retrieve.types import IndexDoc

ANALYSE_BATCH = 2000


@dataclass(frozen=True)
class IndexConfig:
    """How an index is built; recorded in every manifest."""

    faiss: Literal["flat", "hnsw"] = "flat"
    hnsw_m: int = 32
    k1: float = 0.9   # Anserini's defaults for short documents; chosen on COCO val (docs/fusion.md)
    b: float = 0.4
    max_segments: int = 8          # more than this after a commit: merge the small ones
    compact_deleted: float = 0.25  # a larger share of deleted rows: compact (rewrite) the whole index
    # field-aware BM25 (retrieve/fields.py): ((field, weight), ...) added to the plain BM25; () = plain only
    fields: tuple[tuple[str, float], ...] = ()
    # multi-vector dense (retrieve/multivector.py): "" = one vector per document; "sentences" = also each
    # sentence, scored (1 - parts_weight) * cos(whole) + parts_weight * max cos(part)
    parts: str = ""
    parts_weight: float = 0.5
    # query-bank hubness correction (retrieve/hubness.py): dense score − hubness · h(d); query_bank is the
    # fingerprint of the bank's texts (query_banks/ in the index folder); "" and 0 = off
    hubness: float = 0.0
    hubness_k: int = 10
    query_bank: str = ""
    # how an image's document is made from its descriptions (store/changes.py COMBINE): "newest" (the most
    # recent one) or "every-model" (each describer's newest, joined: docs/views.md)
    descriptions: str = "newest"

    def __post_init__(self) -> None:
        from vfr.retrieve.multivector import KINDS

        if not (0 <= self.hubness <= 2 and 1 <= self.hubness_k <= 1000) or \
                (self.hubness > 0) != bool(self.query_bank):
            raise ValueError("hubness must be from 0 to 2 (0: off), hubness_k from 1 to 1000, and a hubness "
                             "above 0 needs a query bank (and a query bank a hubness above 0)")

        from vfr.store.changes import check_combine

        check_combine(self.descriptions)
        if self.descriptions != "newest" and self.fields:
            raise ValueError(JOINED_FIELDS)
        if self.parts not in KINDS or not 0 < self.parts_weight <= 1:
            raise ValueError("parts must be '' or 'sentences' and 0 < parts_weight <= 1")
        from vfr.retrieve.fields import FIELDS

        fields = tuple((str(n), float(w)) for n, w in (self.fields or ()))  # JSON gives lists
        object.__setattr__(self, "fields", fields)
        if any(n not in FIELDS or not 0 < w < 100 for n, w in fields) or len({n for n, _ in fields}) != len(fields):
            raise ValueError(f"BM25 fields must be distinct names of {', '.join(FIELDS)} with weights in (0, 100)")
        if self.faiss not in ("flat", "hnsw"):
            raise ValueError(f"faiss must be flat or hnsw, not {self.faiss!r}")
        if not (0 < self.k1 < 10 and 0 <= self.b <= 1 and self.hnsw_m >= 4 and self.max_segments >= 2
                and 0 < self.compact_deleted <= 1):
            raise ValueError("index settings out of range: 0<k1<10, 0<=b<=1, hnsw_m>=4, max_segments>=2, "
                             "0<compact_deleted<=1")

    def to_dict(self) -> dict:
        """As the manifest stores it (JSON shapes, so a stored config compares equal)."""
        return {**asdict(self), "fields": [list(f) for f in self.fields]}

    def scoring(self) -> dict:
        """The settings that change scores (not the FAISS kind or merge policy): a tuned fusion
        (retrieve/tuning.py) is kept per encoder and per these."""
        out: dict = {"k1": self.k1, "b": self.b}
        if self.fields:
            out["fields"] = [list(f) for f in self.fields]
        if self.parts:
            out.update(parts=self.parts, parts_weight=self.parts_weight)
        if self.hubness:  # which bank is not part of it: a fusion tuned with one bank serves another
            out.update(hubness=self.hubness, hubness_k=self.hubness_k)
        return out


JOINED_FIELDS = ("field-aware BM25 reads one description's structure, so it cannot index documents joined from "
                 "several describers (on coco-val it would add +0.1 R@1 to the hybrid: docs/views.md). Drop "
                 "--bm25-fields, or use one description per image (vfr index --descriptions newest; vfr eval and "
                 "vfr tune: a --description-source other than concat)")


class IndexWriter:
    """Use as a context manager: `with IndexWriter(dir, ...) as w: w.upsert(docs); w.delete(ids); w.commit()`."""

    def __init__(self, index_dir: Path, config: IndexConfig | None = None, identity: dict | None = None,
                 lock_timeout: float = 10.0, progress: Callable[[str, int, int | None], None] | None = None,
                 fresh: bool = False) -> None:
        """`identity`: encoder, dimension, store uid… recorded in the manifest. `fresh`: start a new index
        here whatever the folder holds (a missing, damaged or older-format index); the first commit
        replaces it."""
        self.dir = index_dir
        self._config_arg, self._identity_arg, self._fresh = config, identity, fresh
        self._lock_cm = generations.writer_lock(index_dir, lock_timeout)
        self.progress = progress or (lambda stage, n, total: None)
        self._loaded: dict[str, LoadedSegment] = {}

    # -- session ---------------------------------------------------------------------------------
    def __enter__(self) -> "IndexWriter":
        self._lock_cm.__enter__()
        try:
            self._open()
        except BaseException:
            self._lock_cm.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for seg in self._loaded.values():
            seg.close()
        self._loaded.clear()
        self._lock_cm.__exit__(*exc)

    def _open(self) -> None:
        try:
            head = generations.read_head(self.dir)
        except generations.IndexError_:
            if not self._fresh:
                raise
            head = None
        fresh = self._fresh or head is None
        if fresh:
            if self._identity_arg is None:
                raise generations.IndexError_(generations._missing_message(self.dir))
            config = self._config_arg or _readable_config(self.dir) or IndexConfig()
            self.manifest: dict = {"format": generations.FORMAT, "generation": _last_generation(self.dir),
                                   "applied_seq": 0, "config": config.to_dict(), **self._identity_arg, "segments": []}
        else:
            generations.collect_garbage(self.dir)  # what a crashed writer left
            self.manifest = generations.read_manifest(self.dir, head)
            if self._identity_arg:
                self.manifest.update(self._identity_arg)
            if self._config_arg is not None:
                self.manifest["config"] = self._config_arg.to_dict()
        self.config = IndexConfig(**self.manifest["config"])
        self.segments = [SegmentInfo(**s) for s in self.manifest["segments"]]
        self._dead = {s.name: read_tombstones(self.dir / "segments" / s.name, s.tombstones) for s in self.segments}
        self._ids: dict[str, list[str]] = {}
        self._adds: dict[str, IndexDoc] = {}
        self._removes: set[str] = set()
        self._drop_all = fresh

    @property
    def generation(self) -> int:
        return self.manifest["generation"]

    @property
    def applied_seq(self) -> int:
        return self.manifest.get("applied_seq", 0)

    def _segment_ids(self, info: SegmentInfo) -> list[str]:
        if info.name not in self._ids:
            path = self.dir / "segments" / info.name / "rows.json"
            try:
                self._ids[info.name] = json.loads(path.read_text())["ids"]
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise SegmentError(f"index segment {path.parent} is damaged or missing ({e}); "
                                   "run `vfr index --full` to rebuild the index") from None
        return self._ids[info.name]

    def _segment(self, info: SegmentInfo) -> LoadedSegment:
        if info.name not in self._loaded:
            self._loaded[info.name] = LoadedSegment(self.dir / "segments" / info.name, info)
        return self._loaded[info.name]

    # -- staging ------------------------------------------------------------------------------------
    def upsert(self, docs: Iterable[IndexDoc]) -> None:
        for d in docs:
            if d.vector is None:
                raise ValueError(f"document {d.id!r} has no vector")
            if self.config.parts and d.parts is None:
                raise ValueError(f"document {d.id!r} has no part vectors (the index is multi-vector)")
            if self.config.hubness and d.hubness is None:
                raise ValueError(f"document {d.id!r} has no hubness offset (the index has a query bank)")
            self._adds[d.id] = d
            self._removes.add(d.id)

    def delete(self, ids: Iterable[str]) -> None:
        for i in ids:
            self._adds.pop(i, None)
            self._removes.add(i)

    def drop_all(self) -> None:
        """Stage the removal of every segment (a full rebuild stages all documents after this)."""
        self._drop_all = True
        self._adds.clear()
        self._removes.clear()

    def live_ids(self) -> set[str]:
        out: set[str] = set()
        for s in self.segments:
            ids, dead = self._segment_ids(s), self._dead[s.name]
            live = np.ones(len(ids), dtype=bool)
            live[dead] = False
            out.update(i for i, ok in zip(ids, live) if ok)
        return out

    # -- commit -----------------------------------------------------------------------------------
    def commit(self, applied_seq: int | None = None, operation: str = "update", extra: dict | None = None) -> int:
        """Publish what was staged as the next generation; returns it. Runs the merge policy after."""
        t0 = time.perf_counter()
        gen = self.generation + 1
        segments = [] if self._drop_all else self._tombstone(gen)
        added = list(self._adds.values())
        for start in range(0, len(added), 500_000):  # bounded segment size: memory and HNSW build time
            chunk = added[start:start + 500_000]
            tokens: list[list[str]] = []
            for i in range(0, len(chunk), ANALYSE_BATCH):
                part = chunk[i:i + ANALYSE_BATCH]
                tokens.extend(lucene.analyse([d.text for d in part]))
                self.progress("BM25 (Lucene)", len(part), len(added))
            fields = self._fields(chunk)
            name = f"g{gen:08d}-{start // 500_000}"
            point("commit:analysed")
            segments.append(write_segment(self.dir / "segments" / name, chunk, tokens, gen,
                                          self.config.faiss, self.config.hnsw_m, fields, bool(self.config.parts),
                                          bool(self.config.hubness)))
            point("commit:segment-written")
        self._publish(gen, segments, applied_seq, operation,
                      {"added": len(added), "removed": len(self._removes), "seconds": time.perf_counter() - t0,
                       **(extra or {})})
        self._adds.clear()
        self._removes.clear()
        self._drop_all = False
        self._maybe_merge()
        generations.collect_garbage(self.dir)
        _remove_legacy(self.dir)
        return self.generation

    def _fields(self, docs: Sequence[IndexDoc]) -> dict[str, tuple[list[str], list[list[str]]]]:
        """The configured BM25 fields of `docs` (from the structured description in the payload, else the
        text's first sentence as the caption): field → (texts, tokens)."""
        from vfr.retrieve.fields import document_fields

        if not self.config.fields:
            return {}
        per_doc = [document_fields(d.text, (d.payload or {}).get("json")) for d in docs]
        out = {}
        for name, _ in self.config.fields:
            texts = [f[name] for f in per_doc]
            tokens: list[list[str]] = []
            for i in range(0, len(texts), ANALYSE_BATCH):
                tokens.extend(lucene.analyse(texts[i:i + ANALYSE_BATCH]))
            out[name] = (texts, tokens)
        return out

    def _tombstone(self, gen: int) -> list[SegmentInfo]:
        """Existing segments with the staged removals applied (tombstones + Lucene deletions)."""
        out = []
        for info in self.segments:
            ids = self._segment_ids(info)
            dead = self._dead[info.name]
            hit = [r for r, d in enumerate(ids) if d in self._removes] if self._removes else []
            new_rows = np.setdiff1d(np.asarray(hit, dtype=np.int64), dead)
            if not len(new_rows):
                out.append(info)
                continue
            folder = self.dir / "segments" / info.name
            commit = lucene_write.delete_documents(folder / "lucene", info.lucene_commit,
                                                   [ids[r] for r in new_rows], gen)
            point("commit:lucene-deleted")
            all_dead = np.union1d(dead, new_rows)
            tomb = write_tombstones(folder, gen, all_dead)
            self._dead[info.name] = all_dead
            out.append(SegmentInfo(info.name, info.rows, commit, info.dense, tomb, int(len(all_dead))))
        return [s for s in out if s.live > 0]  # a segment with no live row leaves the manifest

    def _publish(self, gen: int, segments: list[SegmentInfo], applied_seq: int | None, operation: str,
                 info: dict) -> None:
        manifest = {**self.manifest, "generation": gen, "segments": [s.to_dict() for s in segments],
                    "documents": int(sum(s.live for s in segments)),
                    "applied_seq": self.applied_seq if applied_seq is None else applied_seq,
                    "committed_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                    "last_operation": {"kind": operation, **info}}
        generations.publish(self.dir, manifest)
        self.manifest, self.segments = manifest, segments
        for name in [n for n in self._dead if n not in {s.name for s in segments}]:
            del self._dead[name]
        for s in segments:
            self._dead.setdefault(s.name, read_tombstones(self.dir / "segments" / s.name, s.tombstones))

    # -- merging and compaction -----------------------------------------------------------------------
    def _maybe_merge(self) -> None:
        rows = sum(s.rows for s in self.segments)
        deleted = sum(s.deleted for s in self.segments)
        if rows and deleted / rows > self.config.compact_deleted:
            self.compact()
        elif len(self.segments) > self.config.max_segments:
            by_size = sorted(self.segments, key=lambda s: s.live)
            self._merge(by_size[: len(self.segments) - self.config.max_segments // 2 + 1], "merge")

    def compact(self) -> int:
        """Rewrite every segment holding deleted rows (all segments if more than one) into one segment of
        live rows: deleted text, terms and vectors leave the index files. Returns the generation."""
        if len(self.segments) > 1 or any(s.deleted for s in self.segments):
            self._merge(list(self.segments), "compact")
        generations.collect_garbage(self.dir)
        return self.generation

    def _merge(self, victims: Sequence[SegmentInfo], operation: str) -> None:
        t0 = time.perf_counter()
        gen = self.generation + 1
        names = {v.name for v in victims}
        keep = [s for s in self.segments if s.name not in names]
        ordered = [s for s in self.segments if s.name in names]
        sources = [self._segment(s) for s in ordered]
        live_rows = []
        for s in ordered:
            mask = np.ones(s.rows, dtype=bool)
            mask[self._dead[s.name]] = False
            live_rows.append(np.flatnonzero(mask))
        merged: list[SegmentInfo] = []
        if sum(len(r) for r in live_rows):
            self.progress(f"{operation} ({len(ordered)} segments)", int(sum(len(r) for r in live_rows)),
                          int(sum(len(r) for r in live_rows)))
            point(f"{operation}:start")
            merged.append(merge_segments(self.dir / "segments" / f"g{gen:08d}-m", sources, live_rows,
                                         [s.lucene_commit for s in ordered], gen, self.config.faiss,
                                         self.config.hnsw_m))
            point(f"{operation}:segment-written")
        position = min(self.segments.index(s) for s in ordered)
        segments = keep[:position] + merged + keep[position:]
        self._publish(gen, segments, None, operation,
                      {"merged_segments": len(ordered), "rows": int(sum(len(r) for r in live_rows)),
                       "seconds": time.perf_counter() - t0})
        for name in names:
            seg = self._loaded.pop(name, None)
            if seg is not None:
                seg.close()



def _last_generation(index_dir: Path) -> int:
    """The highest generation a manifest in the folder has (0 if none): generations only grow."""
    folder = index_dir / "manifests"
    numbers = [int(p.stem) for p in folder.glob("*.json") if p.stem.isdigit()] if folder.exists() else []
    try:
        head = generations.read_head(index_dir) or 0
    except generations.IndexError_:
        head = 0
    return max([head, *numbers])


def _readable_config(index_dir: Path) -> IndexConfig | None:
    try:
        return IndexConfig(**generations.read_manifest(index_dir)["config"])
    except Exception:  # noqa: BLE001 - missing, damaged or older: the caller falls back to defaults
        return None


def _remove_legacy(index_dir: Path) -> None:
    """An index of format 1-2 (`current` -> builds/<id>) that a full build has replaced."""
    import shutil

    for name in ("current", "builds", ".lock"):
        path = index_dir / name
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
