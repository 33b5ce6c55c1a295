"""Index segments: immutable folders, each holding the same documents in every form the index needs.

    segments/<name>/rows.json        ids and collections, row by row (row = Lucene doc number = FAISS id)
    segments/<name>/lucene/          Lucene index (one Lucene segment; deletions are later commits)
    segments/<name>/forward.npz      BM25 forward index (retrieve/bm25.py)
    segments/<name>/forward-<f>.npz  forward index of BM25 field <f>, when the index scores fields (retrieve/fields.py)
    segments/<name>/dense.faiss      vectors (retrieve/dense.py)
    segments/<name>/parts.faiss      multi-vector indexes: sentence vectors + parts.offsets.npy (retrieve/multivector.py)
    segments/<name>/hubness.npy      indexes with a query bank: each row's hubness offset (retrieve/hubness.py)
    segments/<name>/docs.jsonl       payload per row (the description shown with a hit) + docs.offsets.npy
    segments/<name>/del-<gen>.npy    rows deleted as of generation <gen> (the manifest names the current one)

A segment is written into `<name>.tmp`, synced, and renamed; a generation's manifest lists the segments it
uses, so a crash leaves unreferenced folders that the garbage collector removes.
"""
from __future__ import annotations

import json
import os
import zipfile
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from vfr.retrieve import bm25, dense, hubness, lucene_write, multivector
from vfr.retrieve.fields import FIELDS, LUCENE_PREFIX
from vfr.store.faults import point
from vfr.retrieve.types import IndexDoc

ROWS, DOCS, OFFSETS = "rows.json", "docs.jsonl", "docs.offsets.npy"


@dataclass(frozen=True)
class SegmentInfo:
    """A segment as a generation's manifest records it."""

    name: str
    rows: int
    lucene_commit: str
    dense: str               # flat | hnsw
    tombstones: str | None = None  # file of deleted rows, None if none
    deleted: int = 0

    @property
    def live(self) -> int:
        return self.rows - self.deleted

    def to_dict(self) -> dict:
        return asdict(self)


def _fsync_tree(folder: Path) -> None:
    for root, _dirs, files in os.walk(folder):
        for name in files:
            with open(Path(root) / name, "rb") as f:
                os.fsync(f.fileno())
        fd = os.open(root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_docs(folder: Path, payloads: Sequence[dict | None]) -> None:
    offsets = [0]
    with open(folder / DOCS, "wb") as f:
        for p in payloads:
            line = json.dumps(p or {}, ensure_ascii=False).encode("utf-8") + b"\n"
            f.write(line)
            offsets.append(offsets[-1] + len(line))
    np.save(folder / OFFSETS, np.asarray(offsets, dtype=np.int64), allow_pickle=False)


def _finish(tmp: Path, final: Path) -> None:
    _fsync_tree(tmp)
    os.replace(tmp, final)
    fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_segment(folder: Path, docs: Sequence[IndexDoc], tokens: Sequence[Sequence[str]], generation: int,
                  dense_kind: str, hnsw_m: int, fields: dict[str, tuple[list[str], list[list[str]]]] | None = None,
                  parts: bool = False, hubs: bool = False) -> SegmentInfo:
    """Write `docs` (with their analysed tokens and vectors) as a new segment at `folder`. `fields`: BM25
    field name → (each document's field text, its tokens), indexed as Lucene fields with forward indexes."""
    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True)
    ids = [d.id for d in docs]
    fields = fields or {}
    (tmp / ROWS).write_text(json.dumps({"ids": ids, "collections": [d.collection for d in docs]}))
    per_doc = [{LUCENE_PREFIX + name: texts[i] for name, (texts, _) in fields.items()} for i in range(len(docs))]
    rows = ((d.id, d.collection, d.text, f) for d, f in zip(docs, per_doc))
    commit = lucene_write.write_segment(tmp / "lucene", rows, generation)
    point("segment:lucene-written")
    bm25.save_forward(tmp, tokens)
    for name, (_, field_tokens) in fields.items():
        bm25.save_forward(tmp, field_tokens, bm25.field_file(name))
    kind = dense.write_dense(tmp, np.vstack([d.vector for d in docs]), dense_kind, hnsw_m)
    if parts:
        multivector.write_parts(tmp, [np.asarray(d.parts, dtype=np.float32) for d in docs], dense_kind, hnsw_m)
    if hubs:
        hubness.save(tmp, [d.hubness for d in docs])
    _write_docs(tmp, [d.payload for d in docs])
    _finish(tmp, folder)
    return SegmentInfo(folder.name, len(docs), commit, kind)


def merge_segments(folder: Path, sources: Sequence["LoadedSegment"], live_rows: Sequence[np.ndarray],
                   commits: Sequence[str], generation: int, dense_kind: str, hnsw_m: int) -> SegmentInfo:
    """A new segment of the live rows of `sources` (in order), without re-analysing or re-encoding."""
    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True)
    ids = [s.ids[r] for s, rows in zip(sources, live_rows) for r in rows]
    collections = [s.collections[r] for s, rows in zip(sources, live_rows) for r in rows]
    (tmp / ROWS).write_text(json.dumps({"ids": ids, "collections": collections}))
    commit = lucene_write.merge_segments(tmp / "lucene", [(s.folder / "lucene", c) for s, c in zip(sources, commits)],
                                         ids, generation)
    counts: list[Counter[str]] = [c for s, rows in zip(sources, live_rows) for c in s.forward.terms_of(rows)]
    bm25.save_forward(tmp, [list(c.elements()) for c in counts])
    for name in sources[0].fields if sources else ():
        counts = [c for s, rows in zip(sources, live_rows) for c in s.fields[name].terms_of(rows)]
        bm25.save_forward(tmp, [list(c.elements()) for c in counts], bm25.field_file(name))
    vectors = [s.dense.vectors(rows) for s, rows in zip(sources, live_rows)]
    dim = sources[0].dense.index.d
    kind = dense.write_dense(tmp, np.vstack(vectors) if vectors else np.zeros((0, dim), np.float32), dense_kind, hnsw_m)
    if sources and sources[0].parts is not None:
        multivector.write_parts(tmp, [v for s, rows in zip(sources, live_rows) for v in s.parts.vectors_of(rows)],
                                dense_kind, hnsw_m)
    if sources and sources[0].hubness is not None:
        hubness.save(tmp, np.concatenate([s.hubness[rows] for s, rows in zip(sources, live_rows)]))
    _write_docs(tmp, [s.payload(r) for s, rows in zip(sources, live_rows) for r in rows])
    _finish(tmp, folder)
    return SegmentInfo(folder.name, len(ids), commit, kind)


def write_tombstones(folder: Path, generation: int, rows: np.ndarray) -> str:
    name = f"del-{generation:08d}.npy"
    path = folder / name
    np.save(path, np.unique(np.asarray(rows, dtype=np.int64)), allow_pickle=False)
    with open(path, "rb") as f:
        os.fsync(f.fileno())
    return name


def read_tombstones(folder: Path, name: str | None) -> np.ndarray:
    if name is None:
        return np.zeros(0, dtype=np.int64)
    try:
        rows = np.load(folder / name, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise SegmentError(f"index segment {folder} is damaged: {name} cannot be read ({e}); "
                           "run `vfr index --full` to rebuild the index") from None
    if rows.ndim != 1 or rows.dtype.kind not in "iu":
        raise SegmentError(f"index segment {folder} is damaged: {name} is not a list of rows; "
                           "run `vfr index --full` to rebuild the index")
    return rows.astype(np.int64, copy=False)


class LoadedSegment:
    """The immutable parts of a segment, loaded once per process and shared by every generation using it."""

    def __init__(self, folder: Path, info: SegmentInfo) -> None:
        self.folder, self.name = folder, info.name
        try:
            rows = json.loads((folder / ROWS).read_text())
            self.ids: list[str] = rows["ids"]
            self.collections: list[str | None] = rows["collections"]
            self.forward = bm25.ForwardSegment(folder)
            self.fields = {name: bm25.ForwardSegment(folder, bm25.field_file(name))  # field-aware BM25
                           for name in FIELDS if (folder / bm25.field_file(name)).is_file()}
            self.dense = dense.DenseSegment(folder, info.dense)
            self.parts = multivector.PartsSegment(folder, info.dense) \
                if (folder / multivector.OFFSETS).is_file() else None  # multi-vector dense
            self.hubness = hubness.load(folder)  # query-bank hubness offsets, one a row (or None)
            # their smallest (0 without): bounds what a row a search did not return can score
            self.hubness_least = float(self.hubness.min()) if self.hubness is not None and len(self.hubness) \
                else 0.0
            self._offsets = np.load(folder / OFFSETS, allow_pickle=False)
            self._docs = os.open(folder / DOCS, os.O_RDONLY)  # kept open: survives the folder's removal
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as e:
            raise SegmentError(f"index segment {folder} is damaged or missing ({e}); "
                               "run `vfr index --full` to rebuild the index") from None
        if not (len(self.ids) == self.forward.rows == self.dense.rows == len(self._offsets) - 1 == info.rows) or \
                any(f.rows != info.rows for f in self.fields.values()) or \
                (self.parts is not None and self.parts.rows != info.rows) or \
                (self.hubness is not None and self.hubness.shape != (info.rows,)):
            os.close(self._docs)
            raise SegmentError(f"index segment {folder} has parts of different lengths; run `vfr index --full`")
        if os.fstat(self._docs).st_size != int(self._offsets[-1]):
            os.close(self._docs)
            raise SegmentError(f"index segment {folder} is damaged: {DOCS} is not the length its offsets say; "
                               "run `vfr index --full` to rebuild the index")
        self.id_array = np.asarray(self.ids, dtype=object)
        self.collection_array = np.asarray(["" if c is None else c for c in self.collections], dtype=object)

    def forward_of(self, field: str | None) -> "bm25.ForwardSegment":
        if field is None:
            return self.forward
        if field not in self.fields:
            raise SegmentError(f"index segment {self.folder} has no BM25 field {field!r}; run `vfr index --full`")
        return self.fields[field]

    def payload(self, row: int) -> dict:
        start, end = int(self._offsets[row]), int(self._offsets[row + 1])
        try:
            return json.loads(os.pread(self._docs, end - start, start))
        except ValueError as e:  # overwritten in place (the length check at load cannot see that)
            raise SegmentError(f"index segment {self.folder} is damaged: row {row} of {DOCS} is not JSON ({e}); "
                               "run `vfr index --full` to rebuild the index") from None

    def close(self) -> None:
        os.close(self._docs)


class SegmentError(RuntimeError):
    """A segment is damaged (message says what to do)."""
