"""What a reader searches: one generation of the index (a `Snapshot`), and the `IndexHandle` that moves a
process to each new generation as writers publish them.

A snapshot leases its generation (retrieve/generations.py), so its files stay while it is in use; parts
that do not change between generations (segments, Lucene readers of unchanged commits) are shared. Every
search first checks HEAD (one stat call), so a process that already has the index open sees a deletion
as soon as the deleting call has returned.
"""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from vfr.retrieve import generations, lucene, lucene_read
from vfr.retrieve.bm25 import SegmentStats
from vfr.retrieve.dense import DenseSegment
from vfr.retrieve.segments import LoadedSegment, SegmentError, SegmentInfo, read_tombstones
from vfr.retrieve.types import Scope


class _Parts:
    """Loaded segments and Lucene readers of this process, shared by snapshots, closed when unused."""

    def __init__(self, index_dir: Path) -> None:
        self.dir = index_dir
        self.segments: dict[str, LoadedSegment] = {}
        self.readers: dict[tuple[str, str], lucene_read.OpenSegmentReader] = {}
        self.dense: dict[tuple, DenseSegment] = {}
        self.lock = threading.Lock()

    def segment(self, info: SegmentInfo) -> LoadedSegment:
        if info.name not in self.segments:
            self.segments[info.name] = LoadedSegment(self.dir / "segments" / info.name, info)
        return self.segments[info.name]

    def reader(self, info: SegmentInfo) -> lucene_read.OpenSegmentReader:
        key = (info.name, info.lucene_commit)
        if key not in self.readers:
            self.readers[key] = lucene_read.open_reader(self.dir / "segments" / info.name / "lucene",
                                                        info.lucene_commit)
        return self.readers[key]

    def dense_view(self, seg: LoadedSegment, info: SegmentInfo, dead: np.ndarray) -> DenseSegment:
        key = (info.name, info.tombstones)
        if key not in self.dense:
            self.dense[key] = seg.dense.with_tombstones(dead)
        return self.dense[key]

    def parts_view(self, seg: LoadedSegment, info: SegmentInfo, dead: np.ndarray):
        """The segment's part vectors without its deleted rows' parts (multi-vector indexes)."""
        key = ("parts", info.name, info.tombstones)
        if key not in self.dense:
            if seg.parts is None:
                raise SegmentError(f"index segment {seg.folder} has no part vectors; run `vfr index --full`")
            self.dense[key] = seg.parts.with_tombstones(dead)  # type: ignore[assignment]
        return self.dense[key]

    def keep_only(self, infos: Sequence[SegmentInfo]) -> None:
        """Close what no snapshot in `infos` uses any more."""
        names = {i.name for i in infos}
        commits = {(i.name, i.lucene_commit) for i in infos}
        views = {(i.name, i.tombstones) for i in infos} | {("parts", i.name, i.tombstones) for i in infos}
        for key in [k for k in self.readers if k not in commits]:
            self.readers.pop(key).close()
        for key in [k for k in self.dense if k not in views]:
            del self.dense[key]
        for name in [n for n in self.segments if n not in names]:
            self.segments.pop(name).close()


class Snapshot:
    """One generation, opened: segments, tombstones, Lucene searcher, and live statistics per scope."""

    def __init__(self, index_dir: Path, parts: _Parts) -> None:
        self.lease, self.manifest = generations.lease(index_dir)
        try:
            self.generation: int = self.manifest["generation"]
            self.infos = [SegmentInfo(**s) for s in self.manifest["segments"]]
            self.segments = [parts.segment(i) for i in self.infos]
            self.forward = [s.forward for s in self.segments]
            self.dead = [read_tombstones(s.folder, i.tombstones) for s, i in zip(self.segments, self.infos)]
            self.live = []
            for seg, dead in zip(self.segments, self.dead):
                mask = np.ones(len(seg.ids), dtype=bool)
                mask[dead] = False
                self.live.append(mask)
            self.dense = [parts.dense_view(s, i, d) for s, i, d in zip(self.segments, self.infos, self.dead)]
            self.parts = [parts.parts_view(s, i, d) for s, i, d in zip(self.segments, self.infos, self.dead)] \
                if self.manifest["config"].get("parts") else []
            self.hub = float(self.manifest["config"].get("hubness", 0.0))  # query-bank hubness weight
            if self.hub and any(s.hubness is None for s in self.segments):
                raise SegmentError(f"the index at {index_dir} has a query bank but a segment lacks its hubness "
                                   "offsets; run `vfr index --full`")
            readers = [parts.reader(i) for i in self.infos]
            self.doc_base = np.cumsum([0] + [r.max_doc for r in readers])
            config = self.manifest["config"]
            self.lucene = lucene_read.MultiSearcher(readers, config["k1"], config["b"])
        except (OSError, SegmentError, lucene.LuceneError) as e:
            self.lease.release()
            if isinstance(e, OSError):
                raise SegmentError(f"the index at {index_dir} is damaged ({e}); run `vfr index --full`") from None
            raise
        except BaseException:
            self.lease.release()
            raise
        self._row_maps: dict[str, dict[str, int]] = {}
        self._stats: dict[tuple, list[SegmentStats]] = {}
        self._masks: dict[tuple, list[np.ndarray]] = {}
        self.users = 0
        self.retired = False

    @property
    def documents(self) -> int:
        return int(sum(m.sum() for m in self.live))

    # -- ids ------------------------------------------------------------------------------------------
    def _row_map(self, i: int) -> dict[str, int]:
        seg = self.segments[i]
        if seg.name not in self._row_maps:
            self._row_maps[seg.name] = {d: r for r, d in enumerate(seg.ids)}
        return self._row_maps[seg.name]

    def locate(self, ids: Sequence[str], scope: Scope | None = None) -> dict[str, tuple[int, int]]:
        """Live (segment, row) of each id that is visible in `scope`."""
        masks = self.masks(scope)
        out: dict[str, tuple[int, int]] = {}
        for i in range(len(self.segments)):
            rows = self._row_map(i)
            for d in ids:
                r = rows.get(d)
                if r is not None and masks[i][r]:
                    out[d] = (i, r)
        return out

    @property
    def all_ids(self) -> np.ndarray:
        """Every row's id, segment after segment (object array; position = `row_base[segment]` + row)."""
        if getattr(self, "_all_ids", None) is None:
            self._all_ids = np.concatenate([s.id_array for s in self.segments]) if self.segments else \
                np.zeros(0, dtype=object)
        return self._all_ids

    @property
    def row_base(self) -> np.ndarray:
        """Position of each segment's first row in `all_ids` (and one past the last); computed once (a
        snapshot's segments never change)."""
        if getattr(self, "_row_base", None) is None:
            self._row_base = np.cumsum([0] + [len(s.ids) for s in self.segments])
        return self._row_base

    def lucene_rows(self, docs: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Global Lucene doc numbers → (segment index, row)."""
        docs = np.asarray(docs, dtype=np.int64)
        seg = np.searchsorted(self.doc_base, docs, side="right") - 1
        return seg, docs - self.doc_base[seg]

    # -- scopes and statistics -----------------------------------------------------------------------
    def masks(self, scope: Scope | None) -> list[np.ndarray]:
        """Per segment, the rows a search in `scope` may see (live, and in the scope's collections)."""
        if scope is None:
            return self.live
        key = scope.key
        if key not in self._masks:
            names = list(scope.collections)
            self._masks[key] = [live & np.isin(seg.collection_array, names)
                                for seg, live in zip(self.segments, self.live)]
        return self._masks[key]

    def stats(self, scope: Scope | None, lucene_view: bool = False, field: str | None = None) -> list[SegmentStats]:
        """BM25 statistics per segment: of the visible rows, or (lucene_view) of every row Lucene counts;
        of the whole text, or of one BM25 `field`."""
        key = (("lucene",) if lucene_view else ("scope", scope.key if scope else None)) + (field,)
        if key not in self._stats:
            if lucene_view:
                masks = [np.ones(len(s.ids), dtype=bool) for s in self.segments]
            else:
                masks = self.masks(scope)
            self._stats[key] = [s.forward_of(field).subset_stats(m) for s, m in zip(self.segments, masks)]
        return self._stats[key]

    def forward_of(self, field: str | None) -> list:
        """Each segment's forward index of the whole text (None) or of a BM25 field."""
        return self.forward if field is None else [s.fields[field] for s in self.segments]

    def collections(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for seg, live in zip(self.segments, self.live):
            names, n = np.unique(seg.collection_array[live], return_counts=True)
            for name, c in zip(names.tolist(), n.tolist()):
                counts[name] = counts.get(name, 0) + int(c)
        return counts

    def payloads(self, ids: Sequence[str], scope: Scope | None = None) -> dict[str, dict]:
        return {d: self.segments[i].payload(r) for d, (i, r) in self.locate(ids, scope).items()}


class IndexHandle:
    """A process's view of a live index: always the newest published generation, opened lazily."""

    def __init__(self, index_dir: Path) -> None:
        self.dir = index_dir
        self._parts = _Parts(index_dir)
        self._lock = threading.Lock()
        self._current: Snapshot | None = None
        self._head_stat: tuple[int, int] | None = None
        self._snapshots: list[Snapshot] = []

    def _head_changed(self) -> bool:
        try:
            st = os.stat(self.dir / "HEAD")
        except FileNotFoundError:
            return True
        key = (st.st_ino, st.st_mtime_ns)
        if key != self._head_stat:
            self._head_stat = key
            return True
        return False

    def current(self) -> Snapshot:
        """The newest generation (opening it if a writer published one since the last call)."""
        with self._lock:
            if self._current is None or self._head_changed():
                head = generations.read_head(self.dir)
                if self._current is None or head != self._current.generation:
                    new = Snapshot(self.dir, self._parts)
                    old, self._current = self._current, new
                    self._snapshots.append(new)
                    if old is not None:
                        old.retired = True
                        self._reap()
            return self._current

    @contextmanager
    def acquire(self) -> Iterator[Snapshot]:
        snap = self.current()
        with self._lock:
            snap.users += 1
        try:
            yield snap
        finally:
            with self._lock:
                snap.users -= 1
                if snap.retired:
                    self._reap()

    def _reap(self) -> None:
        """Release retired snapshots nobody uses; close parts only those used (caller holds the lock)."""
        done = [s for s in self._snapshots if s.retired and s.users == 0]
        if not done:
            return
        for s in done:
            s.lucene.close()
            s.lease.release()
            self._snapshots.remove(s)
        self._parts.keep_only([i for s in self._snapshots for i in s.infos])

    def close(self) -> None:
        """Release every generation this handle holds. A snapshot a search is still using is released when
        that search ends (so closing under concurrent searches never pulls files from under them)."""
        with self._lock:
            for s in self._snapshots:
                s.retired = True
            self._current = None
            self._head_stat = None
            self._reap()
