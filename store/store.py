"""DuckDB store: the one module with SQL. Descriptions, captions, jobs, errors and the embedding cache."""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Sequence

import duckdb
import numpy as np
import pyarrow as pa

from vfr.store.changes import NEWEST, ChangeLogMixin, DocumentRecord, records_sql  # noqa: F401  (DocumentRecord re-exported)
from vfr.store.jobs import JobsMixin
from vfr.store.keys import KeyRow, KeysMixin  # noqa: F401  (KeyRow re-exported)
from vfr.store.migrations import MIGRATIONS

SCHEMA_VERSION = MIGRATIONS[-1][0]

# The document of an image is its most recent description (any model / prompt version); NEWEST breaks
# ties (the key is unique per image, so every column comes from the same description).
_DOCUMENTS = f"""
SELECT image_id AS id, arg_max(text_hash, {NEWEST.replace("d.", "")}) AS text_hash
FROM descriptions GROUP BY image_id
"""


class StoreError(RuntimeError):
    """A store problem the user can act on (message says what to do)."""


DatabaseErrors = (duckdb.Error,)
"""Errors of the database engine itself, for callers that report them (they must not import duckdb)."""


class NoSuchDescriptions(StoreError):
    """Nothing matched a retraction (`Store.delete_descriptions`); the message names the models there are."""


class StoreBusy(StoreError):
    """Another process held the database's lock for longer than we were told to wait."""


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class DescriptionRow:
    """One description to write. `image_id` must already exist in images or be created alongside."""

    image_id: str
    text: str
    model: str = "imported"
    prompt_version: str = "none"
    renderer_version: str | None = None
    json: str | None = None
    caption: str | None = None
    meta: str | None = None
    created_at: datetime | None = None  # None: now (an export re-imports with its own timestamps)


@dataclass(frozen=True, slots=True)
class ImageRow:
    id: str
    path: str | None = None
    collection: str | None = None
    size: int | None = None
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True, slots=True)
class Retraction:
    """What `Store.delete_descriptions` removed: how many descriptions, of which images, and which of those
    have no description left (they leave the index; the others' documents change)."""

    descriptions: int
    images: list[str]
    undescribed: list[str]


@dataclass(frozen=True, slots=True)
class StoredDocument:
    id: str
    text: str
    json: dict | None
    caption: str | None
    model: str
    prompt_version: str
    collection: str | None
    path: str | None
    meta: dict | None


class Store(ChangeLogMixin, KeysMixin, JobsMixin):
    """Connect, migrate, read and write. Use as a context manager; write methods are transactional.

    Every write that can change an image's document also appends it to the change log (store/changes.py),
    which is how an index knows what to apply."""

    def __init__(self, path: str | Path, read_only: bool = False, lock_timeout: float | None = None) -> None:
        self.path = Path(path)
        if read_only and not self.path.exists():
            raise StoreError(f"no database at {self.path}: run `vfr import FILE --db {self.path}` first")
        self.con = _connect(self.path, read_only, lock_timeout_s() if lock_timeout is None else lock_timeout)
        self.read_only = read_only
        if not read_only:
            self.migrate()
        elif self.schema_version() < SCHEMA_VERSION:
            raise StoreError(f"{self.path} has schema v{self.schema_version()}; open it once for writing to migrate")

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()

    # -- schema --------------------------------------------------------------------------------
    def schema_version(self) -> int:
        row = self.con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version'").fetchall()[0]
        if not row or not row[0]:
            return 0
        return int(self.con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchall()[0][0])

    def migrate(self) -> list[int]:
        """Apply pending migrations, each in its own transaction. Returns the versions applied."""
        self.con.execute("CREATE TABLE IF NOT EXISTS schema_version "
                         "(version INTEGER PRIMARY KEY, name TEXT, applied_at TIMESTAMP DEFAULT current_timestamp)")
        current = self.schema_version()
        applied = []
        for version, name, sql in MIGRATIONS:
            if version <= current:
                continue
            with self.transaction():
                self.con.execute(sql)
                self.con.execute("INSERT INTO schema_version (version, name) VALUES (?, ?)", [version, name])
            applied.append(version)
        return applied

    def transaction(self) -> "_Transaction":
        return _Transaction(self.con)

    # -- writes --------------------------------------------------------------------------------
    def upsert(self, images: Sequence[ImageRow], descriptions: Sequence[DescriptionRow],
               captions: Iterable[tuple[str, str]] = (), caption_source: str = "import",
               replace_captions: Iterable[str] = ()) -> None:
        """Write images, descriptions and captions in one transaction (same keys → replaced; the captions of
        the images in `replace_captions` are replaced by those given, the others are added to)."""
        with self.transaction():
            self.upsert_in_transaction(images, descriptions, captions, caption_source, replace_captions)

    def upsert_in_transaction(self, images: Sequence[ImageRow], descriptions: Sequence[DescriptionRow],
                              captions: Iterable[tuple[str, str]] = (), caption_source: str = "import",
                              replace_captions: Iterable[str] = ()) -> None:
        """Like `upsert` but inside a transaction the caller holds (so a batch and its job counts commit together)."""
        from vfr.store.faults import point

        point("store:upsert-begun")
        old_hashes = self._text_hashes([d.image_id for d in descriptions])
        if images:
            tbl = pa.Table.from_pylist([_asdict(r) for r in images], schema=_IMAGE_SCHEMA)
            self.con.register("_img", tbl)
            self.con.execute("""
                INSERT INTO images (id, path, collection, size, width, height) SELECT * FROM _img
                ON CONFLICT (id) DO UPDATE SET
                  path = coalesce(excluded.path, images.path),
                  collection = coalesce(excluded.collection, images.collection),
                  size = coalesce(excluded.size, images.size),
                  width = coalesce(excluded.width, images.width),
                  height = coalesce(excluded.height, images.height)""")
            self.con.unregister("_img")
            point("store:images-written")
        if descriptions:
            # Without a timestamp a description is "now"; several of one image in one call keep their order
            # (a microsecond apart), so the last one given is the image's document.
            order: dict[str, int] = {}
            rows = []
            for d in descriptions:
                rank = order[d.image_id] = order.get(d.image_id, -1) + 1
                rows.append({**_asdict(d), "text_hash": text_hash(d.text), "rank": rank})
            tbl = pa.Table.from_pylist(rows, schema=_DESC_SCHEMA)
            self.con.register("_desc", tbl)
            self.con.execute("""
                INSERT OR REPLACE INTO descriptions
                  (image_id, model, prompt_version, renderer_version, json, text, caption, meta, text_hash, created_at)
                SELECT image_id, model, prompt_version, renderer_version, json, text, caption, meta, text_hash,
                       coalesce(created_at, CAST(current_timestamp AS TIMESTAMP) + to_microseconds(rank))
                FROM _desc""")
            self.con.unregister("_desc")
            point("store:descriptions-written")
        replace = sorted(set(replace_captions))
        if replace:
            self.con.execute("DELETE FROM captions WHERE list_contains(?, image_id)", [replace])
        caps = [{"image_id": i, "text": t, "source": caption_source} for i, t in captions]
        if caps:
            self.con.register("_cap", pa.Table.from_pylist(caps))
            self.con.execute("INSERT OR IGNORE INTO captions SELECT DISTINCT image_id, text, source FROM _cap")
            self.con.unregister("_cap")
            point("store:captions-written")
        self.log_changes([r.id for r in images] + [d.image_id for d in descriptions])
        self._purge_orphan_embeddings(old_hashes)
        point("store:changes-logged")

    def delete(self, ids: Sequence[str]) -> list[str]:
        """Erase images: descriptions, captions, error rows, and cached embeddings of text no other
        description uses. Returns the ids that existed. (Bytes leave the file at `rewrite_file`.)"""
        ids = sorted(set(ids))
        if not ids:
            return []
        with self.transaction():
            self.con.register("_del", pa.table({"id": ids}))
            try:
                existed = [r[0] for r in self.con.execute(
                    "SELECT id FROM images JOIN _del USING (id) UNION SELECT image_id FROM descriptions "
                    "JOIN _del ON _del.id = image_id ORDER BY 1").fetchall()]
                hashes = self._text_hashes(ids)
                for table, col in (("descriptions", "image_id"), ("captions", "image_id"),
                                   ("job_errors", "image_id"), ("images", "id")):
                    self.con.execute(f"DELETE FROM {table} WHERE {col} IN (SELECT id FROM _del)")
            finally:
                self.con.unregister("_del")
            self._purge_orphan_embeddings(hashes)
            self.log_changes(existed)
        return existed

    def delete_descriptions(self, model: str, prompt_version: str | None = None,
                            collection: str | None = None) -> "Retraction":
        """Retract a describer: delete every description `model` wrote (only those of `prompt_version` when
        given, only of images in `collection` when given) and the cached embeddings of text no other
        description uses. Images keep their row, captions and other models' descriptions; an image left with
        none is undescribed (no document) until described again. Raises NoSuchDescriptions, naming the models
        there are (in `collection` only, when given: one tenant never learns another's), when nothing matches."""
        scope, scope_args = ("image_id IN (SELECT id FROM images WHERE collection = ?)", [collection]) \
            if collection is not None else ("true", [])
        where = f"model = ? AND {scope}" + (" AND prompt_version = ?" if prompt_version is not None else "")
        args = [model, *scope_args] + ([prompt_version] if prompt_version is not None else [])
        with self.transaction():
            rows = self.con.execute(
                f"SELECT image_id, count(*) FILTER (WHERE {where}), count(*) FILTER (WHERE NOT ({where})) = 0 "
                f"FROM descriptions GROUP BY image_id HAVING count(*) FILTER (WHERE {where}) > 0 ORDER BY image_id",
                args * 3).fetchall()
            if not rows:
                have = ", ".join(f"{m} {p} ({c})" for m, p, c in self.con.execute(
                    f"SELECT model, prompt_version, count(*) FROM descriptions WHERE {scope} GROUP BY ALL ORDER BY ALL",
                    scope_args).fetchall())
                what = f"model {model!r}" + (f" with prompt version {prompt_version!r}" if prompt_version is not None else "")
                where_in = f"collection {collection!r}" if collection is not None else "the store"
                raise NoSuchDescriptions(f"no descriptions by {what} in {where_in}; {where_in} has: "
                                         f"{have or 'no descriptions'} (model prompt-version (count); `vfr stats` "
                                         "lists them too)")
            hashes = [r[0] for r in self.con.execute(f"SELECT DISTINCT text_hash FROM descriptions WHERE {where}",
                                                     args).fetchall()]
            self.con.execute(f"DELETE FROM descriptions WHERE {where}", args)
            self._purge_orphan_embeddings(hashes)
            images = [r[0] for r in rows]
            self.log_changes(images)
        return Retraction(sum(r[1] for r in rows), images, [r[0] for r in rows if r[2]])

    def _text_hashes(self, image_ids: Sequence[str]) -> list[str]:
        if not image_ids:
            return []
        return [r[0] for r in self.con.execute(
            "SELECT DISTINCT text_hash FROM descriptions WHERE list_contains(?, image_id)", [list(image_ids)]).fetchall()]

    def _purge_orphan_embeddings(self, hashes: Sequence[str]) -> None:
        """Cached vectors of these texts go once no description uses them: an embedding is personal data
        too (it can be inverted back to text)."""
        if hashes:
            self.con.execute("DELETE FROM embeddings WHERE list_contains(?, text_hash) AND text_hash NOT IN "
                             "(SELECT text_hash FROM descriptions)", [list(hashes)])

    # -- reads ---------------------------------------------------------------------------------
    def count_documents(self) -> int:
        return int(self.con.execute("SELECT count(DISTINCT image_id) FROM descriptions").fetchall()[0][0])

    def fingerprint(self) -> dict[str, Any]:
        """What an index was built from: document count and a digest over (id, text hash)."""
        n, digest = self.con.execute(
            f"SELECT count(*), coalesce(md5(string_agg(id || ':' || text_hash, ',' ORDER BY id)), '') "
            f"FROM ({_DOCUMENTS})").fetchall()[0]
        return {"documents": int(n), "digest": digest}

    def get(self, ids: Sequence[str]) -> dict[str, StoredDocument]:
        """Current description and metadata for each id that exists."""
        rows = self.con.execute(f"""
            SELECT r.image_id, r.text, r.json, r.caption, r.model, r.prompt_version, r.collection, i.path, r.meta
            FROM ({records_sql("WHERE list_contains(?, d.image_id)")}) r LEFT JOIN images i ON i.id = r.image_id
            """, [list(ids)]).fetchall()
        return {r[0]: StoredDocument(r[0], r[1], _loads(r[2]), r[3], r[4], r[5], r[6], r[7], _loads(r[8])) for r in rows}

    def captions(self) -> list[tuple[str, str]]:
        """(image id, caption) for every described image; the calibration pair source."""
        return self.con.execute("""
            SELECT c.image_id, c.text FROM captions c
            WHERE c.image_id IN (SELECT image_id FROM descriptions) ORDER BY c.image_id, c.text""").fetchall()

    def described_keys(self, model: str, prompt_version: str, image_ids: Sequence[str]) -> set[str]:
        """Which of these images already have a description from this model and prompt version."""
        rows = self.con.execute(
            "SELECT image_id FROM descriptions WHERE model = ? AND prompt_version = ? AND list_contains(?, image_id)",
            [model, prompt_version, list(image_ids)]).fetchall()
        return {r[0] for r in rows}

    def described_ids(self, model: str, prompt_version: str) -> list[str]:
        """Every image described by this model and prompt version (a distributed job skips them up front)."""
        rows = self.con.execute("SELECT image_id FROM descriptions WHERE model = ? AND prompt_version = ?",
                                [model, prompt_version]).fetchall()
        return [r[0] for r in rows]

    def stats(self) -> dict[str, Any]:
        q = lambda sql: self.con.execute(sql).fetchall()[0][0]  # noqa: E731
        by_model = self.con.execute(
            "SELECT model, prompt_version, count(*) FROM descriptions GROUP BY ALL ORDER BY ALL").fetchall()
        return {
            "database": str(self.path),
            "schema_version": self.schema_version(),
            "images": q("SELECT count(*) FROM images"),
            "documents": self.count_documents(),
            "descriptions": q("SELECT count(*) FROM descriptions"),
            "captions": q("SELECT count(*) FROM captions"),
            "collections": dict(self.con.execute(
                "SELECT coalesce(collection, '(none)'), count(*) FROM images GROUP BY ALL ORDER BY ALL").fetchall()),
            "descriptions_by_model": [{"model": m, "prompt_version": p, "count": c} for m, p, c in by_model],
            "cached_embeddings": q("SELECT count(*) FROM embeddings"),
            "jobs": q("SELECT count(*) FROM jobs"),
        }

    def export_relation(self) -> duckdb.DuckDBPyRelation:
        """One row per description with image metadata and the image's captions; `vfr export` writes it as
        Parquet or JSONL, and `vfr import` of that file rebuilds the same images, descriptions (with their
        timestamps, so each image keeps its current document) and captions."""
        # A cursor of its own: DuckDB 2 refuses relation work on a connection with an unfinished result.
        return self.con.cursor().sql("""
            SELECT d.image_id AS id, d.text, d.json,
                   (SELECT list(c.text ORDER BY c.text) FROM captions c WHERE c.image_id = d.image_id) AS caption,
                   d.caption AS description_caption, i.collection, d.meta, d.model, d.prompt_version,
                   d.renderer_version, i.path, i.size, i.width, i.height, d.created_at
            FROM descriptions d LEFT JOIN images i ON i.id = d.image_id
            ORDER BY d.image_id, d.created_at, d.model, d.prompt_version""")

    # -- embedding cache -----------------------------------------------------------------------
    def cached_embeddings(self, model: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        if not hashes:
            return {}
        self.con.register("_h", pa.table({"h": list(hashes)}))
        rows = self.con.execute("SELECT text_hash, vector FROM embeddings JOIN _h ON text_hash = h "
                                "WHERE model = ?", [model]).fetchall()
        self.con.unregister("_h")
        return {h: np.frombuffer(v, dtype="<f4") for h, v in rows}

    def cache_embeddings(self, model: str, hashes: Sequence[str], vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype="<f4")
        tbl = pa.table({"text_hash": list(hashes), "model": [model] * len(hashes),
                        "dim": [vectors.shape[1]] * len(hashes), "vector": [v.tobytes() for v in vectors]})
        with self.transaction():
            self.con.register("_e", tbl)
            self.con.execute("INSERT OR IGNORE INTO embeddings SELECT text_hash, model, dim, vector FROM _e")
            self.con.unregister("_e")


def lock_timeout_s() -> float:
    """How long to wait for another process's DuckDB lock (env VFR_LOCK_TIMEOUT, seconds; default 10;
    `inf` waits as long as it takes)."""
    from vfr.store.env import EnvError, env_number

    try:
        return env_number("VFR_LOCK_TIMEOUT", 10.0, minimum=0.0)
    except EnvError as e:
        raise StoreError(f"{e} (seconds to wait for another process's lock)") from None


def _connect(path: Path, read_only: bool, timeout: float) -> duckdb.DuckDBPyConnection:
    """Open the database, waiting up to `timeout` seconds while another process holds its lock
    (DuckDB allows one writing process, and no reader beside it)."""
    deadline, delay = time.monotonic() + timeout, 0.02
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as e:
            if "lock" not in str(e).lower():
                raise StoreError(f"cannot open {path}: {e}") from None
            if time.monotonic() >= deadline:
                raise StoreBusy(
                    f"{path} is in use by another process (DuckDB allows one writer and no reader beside it); "
                    f"waited {timeout:g}s. Wait for it to finish, raise VFR_LOCK_TIMEOUT (seconds), "
                    "or use another --db") from None
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


class _Transaction:
    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def __enter__(self) -> None:
        self.con.execute("BEGIN TRANSACTION")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.con.execute("ROLLBACK" if exc_type else "COMMIT")


_IMAGE_SCHEMA = pa.schema([("id", pa.string()), ("path", pa.string()), ("collection", pa.string()),
                          ("size", pa.int64()), ("width", pa.int32()), ("height", pa.int32())])
_DESC_SCHEMA = pa.schema([(n, pa.string()) for n in (
    "image_id", "text", "model", "prompt_version", "renderer_version", "json", "caption", "meta")]
    + [("created_at", pa.timestamp("us")), ("text_hash", pa.string()), ("rank", pa.int64())])


def _asdict(row: Any) -> dict[str, Any]:
    return {f: getattr(row, f) for f in row.__slots__}


def _loads(s: str | None) -> Any:
    return json.loads(s) if s else None
