"""`vfr.Engine`: the library API every front end calls (CLI, HTTP server, Ray deployments).

    from vfr import Engine
    eng = Engine.open("photos.duckdb")            # the index lives next to it: photos.index/
    eng.search("two dogs on a beach", k=10)       # hybrid BM25 + dense; retriever="bm25" | "dense"
    eng.upsert([{"id": "img1", "text": "..."}])   # store + index; searchable when it returns
    eng.delete(["img1"])                          # invisible to every search when it returns
    eng.compact()                                 # erase deleted data from index and database files

The store (DuckDB) is the source of truth and is opened only for the moment a call needs it, so other
processes can write meanwhile; searches read the index alone. The index records the store change
sequence it has applied: `update_index()` applies what changed since (retrieve/maintain.py).
Every error a caller can cause is an `EngineError` whose message says what to do.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

from vfr.retrieve.encoder_batching import QueryBatching  # noqa: F401  (re-exported)
from vfr.retrieve.fusion import FusionConfig
from vfr.retrieve.maintain import IndexedStore, Pending, Progress  # noqa: F401  (re-exported)
from vfr.retrieve.types import Hit, Query, Scope
from vfr.settings import default_index

F = TypeVar("F", bound=Callable[..., Any])


class EngineError(RuntimeError):
    """A problem the caller can act on; the message says what to do."""


class NotFound(EngineError):
    """A collection or document the caller cannot see (whether or not it exists)."""


class Conflict(EngineError):
    """A write the caller may not make (an id held by a collection it cannot see)."""


def _user_errors(fn: F) -> F:
    """Store, index, encoder and validation problems surface as one EngineError with their message."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from vfr.retrieve.encoder import EncoderError
        from vfr.retrieve.generations import IndexError_
        from vfr.retrieve.lucene import LuceneError
        from vfr.retrieve.maintain import MaintenanceError
        from vfr.retrieve.segments import SegmentError
        from vfr.retrieve.tuning import TuningError
        from vfr.store.store import DatabaseErrors, StoreError

        try:
            return fn(*args, **kwargs)
        except (StoreError, IndexError_, MaintenanceError, SegmentError, LuceneError, EncoderError, TuningError) as e:
            raise EngineError(str(e)) from None
        except OSError as e:  # a full disk, a read-only folder: the last published state stays in use
            where = f" {e.filename}" if e.filename else ""
            raise EngineError(f"cannot write{where}: {e.strerror or e}; what was written part-way is not used: fix "
                              "the cause (e.g. free disk space) and run the command again") from None
        except DatabaseErrors as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise EngineError(f"the database failed ({first}); its last committed state stays: fix the cause "
                              "(e.g. free disk space) and run the command again") from None
    return wrapper  # type: ignore[return-value]


class Engine(IndexedStore):
    """A store and its live index. Thread-safe for searches; writes serialise on the index writer lock."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        import threading

        super().__init__(*args, **kwargs)
        self._batcher = None
        self._batcher_lock = threading.Lock()

    @classmethod
    def open(cls, db: str | Path, index: str | Path | None = None, *, encoder: str | None = None,
             encoder_backend: str | None = None, create: bool = False, lock_timeout: float | None = None,
             query_batching: "bool | QueryBatching" = False) -> "Engine":
        """Open the store at `db` (created with `create=True`) and its index (default: next to it).
        `encoder` chooses the model for a first or full build; searches use the one the index records
        (from any working directory; a moved copy with the same weights may be given here).
        `query_batching` (True or a `QueryBatching`) runs concurrent `search` calls as one batch search
        (retrieve/search_batching.py): for servers answering many searches at once."""
        from vfr.retrieve.encoder_batching import QueryBatching

        db = Path(db)
        if not db.exists() and not create:
            raise EngineError(f"no database at {db}: run `vfr import FILE --db {db}` first "
                              "(from Python: Engine.open(..., create=True))")
        batching = QueryBatching() if query_batching is True else (query_batching or None)
        eng = _user_errors(cls)(db, Path(index) if index else default_index(db), encoder, encoder_backend,
                                lock_timeout, batching)  # a bad VFR_LOCK_TIMEOUT is one line too
        if create and not db.exists():
            with _user_errors(eng.store)():
                pass
        return eng

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- search ----------------------------------------------------------------------------------
    @_user_errors
    def backend(self, retriever: str = "hybrid", fusion: FusionConfig | None = None):
        """The backend behind a retriever name (bm25, dense, hybrid): search/batch_search/score."""
        return self.index.backend(retriever, fusion)

    @_user_errors
    def default_fusion(self) -> FusionConfig:
        """The fusion a hybrid search uses when given none: the index's (tuned for its encoder by
        `vfr tune` / `vfr calibrate`, else the built-in default)."""
        return self.index.default_fusion()

    @_user_errors
    def search(self, query: str, k: int = 10, *, retriever: str = "hybrid", fusion: FusionConfig | None = None,
               collection: str | Iterable[str] | None = None) -> list[Hit]:
        """Top-k hits for one query. An empty or whitespace-only query is an error."""
        if not isinstance(query, str) or not query.strip():
            raise EngineError("the query is empty: give some words to search for")
        if self.query_batching is not None:  # concurrent searches run as one batch (retrieve/search_batching.py)
            return self._search_batcher().search((retriever, fusion), Query(query), k, Scope.of(collection))
        return self.backend(retriever, fusion).search(Query(query), k, Scope.of(collection))

    def _search_batcher(self):
        with self._batcher_lock:
            if self._batcher is None:
                from vfr.retrieve.search_batching import SearchBatcher

                self._batcher = SearchBatcher(lambda key: self.index.backend(*key), self.query_batching)
            return self._batcher

    def close(self) -> None:
        with self._batcher_lock:
            batcher, self._batcher = self._batcher, None
        if batcher is not None:
            batcher.close()
        super().close()

    @_user_errors
    def batch_search(self, queries: Mapping[str, str] | Sequence[str], k: int = 10, *, retriever: str = "hybrid",
                     fusion: FusionConfig | None = None, collection: str | Iterable[str] | None = None
                     ) -> dict[str, list[Hit]]:
        """Hits per query id (a sequence gets ids q1, q2, …). Empty queries get no hits."""
        items = queries.items() if isinstance(queries, Mapping) else ((f"q{i}", t) for i, t in enumerate(queries, 1))
        qs = [Query(text, qid) for qid, text in items]
        hits = self.backend(retriever, fusion).batch_search(qs, k, Scope.of(collection))
        return {q.id: h for q, h in zip(qs, hits)}

    @_user_errors
    def get(self, ids: Sequence[str], collection: str | Iterable[str] | None = None) -> dict[str, dict]:
        """The stored description of each id present in the index (and in `collection`, if given)."""
        with self.index.handle.acquire() as snap:
            return snap.payloads(list(ids), Scope.of(collection))

    @_user_errors
    def explain(self, query: str, ids: Sequence[str], *, collection: str | Iterable[str] | None = None
                ) -> dict[str, dict]:
        """Why each id matched `query` (ids not visible in `collection` are left out): its BM25 score split
        by analysed term, its dense similarity, and the words of its text that match a term."""
        from vfr.retrieve.explain import explain

        scope = Scope.of(collection)
        docs = self.get(ids, collection)
        texts = {d: " ".join(filter(None, [p.get("caption"), p.get("text")])) for d, p in docs.items()}
        return explain(self.index.sparse(), self.index.dense(), query, list(docs), scope, texts)

    def search_batching(self) -> dict:
        """With query batching: batches run and searches answered through them (requests > calls: batched)."""
        if self.query_batching is None or self._batcher is None:
            return {}
        return {"calls": self._batcher.calls, "requests": self._batcher.requests}

    @staticmethod
    def worker_pool(threads: int):
        """Long-lived threads for calling the engine from a server (`submit(fn, *args) -> Future`): threads
        that run searches call into the JVM, and must live as long as the server and detach when it ends;
        `close()` ends them."""
        from vfr.retrieve.lucene import JvmPool

        return JvmPool(threads)

    # -- writes ----------------------------------------------------------------------------------
    @_user_errors
    def upsert(self, records: Iterable[Mapping[str, Any]], progress: Progress | None = None, *,
               collections: Iterable[str] | None = None) -> dict:
        """Validate records (the fields `vfr import` accepts), write them to the store, and index them.
        Returns what was applied; the records are searchable when this returns. A description (id, model,
        prompt version) given twice is refused.

        With `collections` (a tenant's): every record must name one of them (else `NotFound`), and an id
        that already belongs to any other collection is refused (`Conflict`): a tenant never overwrites,
        moves or learns the content of another's documents. Checked and written under one store lock."""
        from vfr.describe.schema import RENDERER
        from vfr.store.io import ImportRecord, Where, collect, validate, write_records

        allowed = None if collections is None else set(collections)

        def located():
            for i, rec in enumerate(records, start=1):
                where = Where(f"record {i}", f"record {i}")
                record = rec if isinstance(rec, ImportRecord) else validate(where, dict(rec), RENDERER)
                if allowed is not None and record.collection not in allowed:
                    raise NotFound(f"record {i}: unknown collection {record.collection!r}")
                yield where, record

        parsed = collect(located(), hint=None).records  # a bad or duplicate record: an ImportError_, one line
        if parsed:
            with self.store() as store:
                if allowed is not None:
                    taken = [d for d, c in store.collections_of([r.id for r in parsed]).items() if c not in allowed]
                    if taken:
                        raise Conflict(f"id {taken[0]!r} is not available: ids are unique across the whole "
                                       "service; choose another (for example, prefix ids with your collection)")
                write_records(store, parsed)
        return self.update_index(progress=progress)

    @_user_errors
    def delete(self, ids: Iterable[str] = (), collection: str | None = None, *,
               collections: Iterable[str] | None = None) -> list[str]:
        """Delete images (by id, or a whole collection) from the store and the index. No search returns
        them once this returns; `compact()` then erases their bytes. Returns the ids that existed.
        With `collections` (a tenant's), ids outside them are left alone and reported as absent."""
        from vfr.retrieve.index import index_exists
        from vfr.store.faults import point

        ids = list(dict.fromkeys(ids))
        allowed = None if collections is None else set(collections)
        if allowed is not None and collection is not None and collection not in allowed:
            raise NotFound(f"unknown collection {collection!r}")
        with self.store() as store:  # one writer process at a time: nothing else changes the log meanwhile
            if collection is not None:
                ids += store.ids_in_collection(collection)
            if allowed is not None:
                owner = store.collections_of(ids)
                in_index = self.get([d for d in ids if d not in owner], allowed) if index_exists(self.index_dir) \
                    else {}
                ids = [d for d in ids if owner.get(d, "\0") in allowed or d in in_index]
                if not ids:
                    return []
            before = store.current_seq()
            existed = store.delete(ids)
            after = store.current_seq()
        point("delete:store-committed")
        if index_exists(self.index_dir):
            with self._writer() as w:
                w.delete(ids)  # also ids the index has but the store lost: never serve them
                # the log's new entries are exactly this delete: applied, if nothing older is pending
                w.commit(applied_seq=after if w.applied_seq == before else None, operation="delete")
        return existed

    @_user_errors
    def delete_descriptions(self, model: str, prompt_version: str | None = None, collection: str | None = None,
                            progress: Progress | None = None) -> dict:
        """Retract a describer: delete the descriptions `model` wrote (of `prompt_version` only, of images in
        `collection` only, if given) and bring the index up to date, so when this returns no search matches
        or shows their text. An image keeps its other models' descriptions (its document becomes the newest
        of those, or their join in an every-model index); one left with none leaves the index until it is
        described again.
        Their bytes leave the files at `compact()`. Returns counts and the index update's report."""
        from vfr.retrieve.index import index_exists
        from vfr.store.faults import point
        from vfr.store.store import NoSuchDescriptions

        with self.store() as store:
            try:
                gone = store.delete_descriptions(model, prompt_version, collection)
            except NoSuchDescriptions as e:
                raise NotFound(str(e)) from None
        point("retract:store-committed")
        report = self.update_index(progress=progress) if index_exists(self.index_dir) else None
        return {"descriptions": gone.descriptions, "images": len(gone.images), "undescribed": len(gone.undescribed),
                "index": report}

    update_index = _user_errors(IndexedStore.update_index)
    pending = _user_errors(IndexedStore.pending)
    apply_deletions = _user_errors(IndexedStore.apply_deletions)
    compact = _user_errors(IndexedStore.compact)
    stats = _user_errors(IndexedStore.stats)
