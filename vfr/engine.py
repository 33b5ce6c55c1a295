"""`vfr.Engine`: the library API every front end calls (CLI, HTTP server, Ray deployments).

    from vfr import Engine
    eng = Engine.open("photos.duckdb")            # the index lives next to it: photos.index/
    eng.search("two dogs on a beach", k=10)       # hybrid BM25 + dense; retriever="bm25" | "dense"
    eng.upsert([{"id": "img1", "text": "..."}])   # store + index; searchable when it returns
    eng.delete(["img1"])                          # invisible to every search when it returns
    eng.compact()                                 # erase deleted data from index and database files

The store (DuckDB) is the source of truth and is opened only for the moment a call needs it, so other
processes can write meanwhile; searches read the index alone. The index records the store change
sequence it has applied: `update_index()` applies what changed since.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from vfr.retrieve.fusion import FusionConfig
from vfr.retrieve.types import Hit, IndexDoc, Query, Scope
from vfr.settings import default_index

Progress = Callable[[str, int, "int | None"], None]
ENCODE_CHUNK = 2048


class EngineError(RuntimeError):
    """A problem the caller can act on; the message says what to do."""


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


class Engine:
    """A store and its live index. Thread-safe for searches; writes serialise on the index writer lock."""

    def __init__(self, db: Path, index_dir: Path, encoder: str | None, encoder_backend: str | None,
                 lock_timeout: float | None) -> None:
        from vfr.store.store import lock_timeout_s

        self.db, self.index_dir = db, index_dir
        self._encoder_name, self._encoder_backend = encoder, encoder_backend
        self.lock_timeout = lock_timeout_s() if lock_timeout is None else lock_timeout
        self._index = None

    @classmethod
    def open(cls, db: str | Path, index: str | Path | None = None, *, encoder: str | None = None,
             encoder_backend: str | None = None, create: bool = False, lock_timeout: float | None = None
             ) -> "Engine":
        """Open the store at `db` (created with `create=True`) and its index (default: next to it).
        `encoder` chooses the model for a first or full build; searches use the one the index records."""
        db = Path(db)
        if not db.exists() and not create:
            raise EngineError(f"no database at {db}: run `vfr import FILE --db {db}` first "
                              "(or Engine.open(..., create=True))")
        eng = cls(db, Path(index) if index else default_index(db), encoder, encoder_backend, lock_timeout)
        if create and not db.exists():
            with eng.store():
                pass
        return eng

    # -- plumbing ------------------------------------------------------------------------------
    def store(self, read_only: bool = False):
        from vfr.store.store import Store, StoreError

        try:
            return Store(self.db, read_only=read_only, lock_timeout=self.lock_timeout)
        except StoreError as e:
            raise EngineError(str(e)) from None

    @property
    def index(self):
        from vfr.retrieve.index import LiveIndex, index_exists

        if self._index is None:
            if not index_exists(self.index_dir):
                from vfr.retrieve.generations import _missing_message

                raise EngineError(_missing_message(self.index_dir))
            self._index = LiveIndex(self.index_dir, self._encoder_name if self._encoder_name else None)
        return self._index

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- search ----------------------------------------------------------------------------------
    def backend(self, retriever: str = "hybrid", fusion: FusionConfig | None = None):
        from vfr.retrieve.generations import IndexError_

        try:
            return self.index.backend(retriever, fusion)
        except IndexError_ as e:
            raise EngineError(str(e)) from None

    def search(self, query: str, k: int = 10, *, retriever: str = "hybrid", fusion: FusionConfig | None = None,
               collection: str | Iterable[str] | None = None) -> list[Hit]:
        """Top-k hits for one query. An empty or whitespace-only query is an error."""
        if not isinstance(query, str) or not query.strip():
            raise EngineError("the query is empty: give some words to search for")
        return self.backend(retriever, fusion).search(Query(query), k, Scope.of(collection))

    def batch_search(self, queries: Mapping[str, str] | Sequence[str], k: int = 10, *, retriever: str = "hybrid",
                     fusion: FusionConfig | None = None, collection: str | Iterable[str] | None = None
                     ) -> dict[str, list[Hit]]:
        """Hits per query id (a sequence gets ids q1, q2, …). Empty queries get no hits."""
        items = queries.items() if isinstance(queries, Mapping) else ((f"q{i}", t) for i, t in enumerate(queries, 1))
        qs = [Query(text, qid) for qid, text in items]
        hits = self.backend(retriever, fusion).batch_search(qs, k, Scope.of(collection))
        return {q.id: h for q, h in zip(qs, hits)}

    def get(self, ids: Sequence[str], collection: str | Iterable[str] | None = None) -> dict[str, dict]:
        """The stored description of each id present in the index (and in `collection`, if given)."""
        with self.index.handle.acquire() as snap:
            return snap.payloads(list(ids), Scope.of(collection))

    # -- writes ----------------------------------------------------------------------------------
    def upsert(self, records: Iterable[Mapping[str, Any]], progress: Progress | None = None) -> dict:
        """Validate records (the fields `vfr import` accepts), write them to the store, and index them.
        Returns what was applied; the records are searchable when this returns."""
        from pydantic import ValidationError

        from vfr.describe.schema import RENDERER
        from vfr.store.io import ImportRecord, write_records

        parsed = []
        for i, rec in enumerate(records, start=1):
            try:
                parsed.append(rec if isinstance(rec, ImportRecord)
                              else ImportRecord.model_validate(dict(rec), context={"render": RENDERER}))
            except ValidationError as e:
                err = e.errors()[0]
                field = ".".join(str(p) for p in err["loc"]) or "record"
                raise EngineError(f"record {i}: {field}: {err['msg']}") from None
        if parsed:
            with self.store() as store:
                write_records(store, parsed)
        return self.update_index(progress=progress)

    def delete(self, ids: Iterable[str] = (), collection: str | None = None) -> list[str]:
        """Delete images (by id, or a whole collection) from the store and the index. No search returns
        them once this returns; `compact()` then erases their bytes. Returns the ids that existed."""
        ids = list(ids)
        with self.store() as store:  # one writer process at a time: nothing else changes the log meanwhile
            if collection is not None:
                ids += store.ids_in_collection(collection)
            before = store.current_seq()
            existed = store.delete(ids)
            after = store.current_seq()
        from vfr.store.faults import point
        from vfr.retrieve.index import index_exists

        point("delete:store-committed")

        if index_exists(self.index_dir):
            with self._writer() as w:
                w.delete(ids)  # also ids the index has but the store lost: never serve them
                # the log's new entries are exactly this delete: applied, if nothing older is pending
                w.commit(applied_seq=after if w.applied_seq == before else None, operation="delete")
        return existed

    def _writer(self, config=None, identity=None, progress: Progress | None = None):
        from vfr.retrieve.writer import IndexWriter

        return IndexWriter(self.index_dir, config, identity, self.lock_timeout, progress)

    def update_index(self, full: bool = False, config=None, progress: Progress | None = None) -> dict:
        """Apply the store's changes since the index's applied sequence (or rebuild everything with
        `full=True`, or when there is no index yet). Returns counts and the new generation."""
        from vfr.engine_build import update_index

        try:
            return update_index(self, full, config, progress)
        finally:
            if self._index is not None:  # a new encoder or settings take effect on the next search
                self._index.close()
                self._index = None

    def apply_deletions(self) -> int:
        """Bring deletions the index missed (a deleting process died half-way) into the index at once."""
        from vfr.engine_build import apply_deletions

        return apply_deletions(self)

    def pending(self) -> Pending:
        from vfr.engine_build import pending

        return pending(self)

    def compact(self, store: bool = True, progress: Progress | None = None) -> dict:
        """Rewrite index segments without deleted rows and (with `store`) the database file without
        freed blocks, so deleted descriptions, captions and vectors leave no bytes behind."""
        from vfr.engine_build import compact

        return compact(self, store, progress)

    def stats(self) -> dict:
        from vfr.engine_build import stats

        return stats(self)
