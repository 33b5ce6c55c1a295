"""The store side of the live index: the change log, current documents as the index needs them, and
physical erasure (rewriting the database file so deleted rows leave no bytes behind).

Mixed into `Store` (store/store.py); every method runs on the store's connection.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import pyarrow as pa

from vfr.store.faults import point


@dataclass(frozen=True, slots=True)
class DocumentRecord:
    """An image's current document with everything an index keeps for display (never pixels)."""

    id: str
    text: str
    text_hash: str
    collection: str | None
    json: str | None
    caption: str | None
    model: str
    prompt_version: str
    meta: str | None
    models: tuple[str, ...] = ()  # the describers whose descriptions the text joins (combine "every-model")

    def payload(self) -> dict[str, Any]:
        """What search results show: the description, not the image. `json`, `caption`, `model` and
        `prompt_version` are the newest description's; a joined document also lists its `models`."""
        out = {"id": self.id, "text": self.text, "json": json.loads(self.json) if self.json else None,
               "caption": self.caption, "collection": self.collection, "model": self.model,
               "prompt_version": self.prompt_version, "meta": json.loads(self.meta) if self.meta else None}
        if len(self.models) > 1:
            out["models"] = list(self.models)
        return out


# NEWEST orders an image's descriptions (unique per image: ties in time go to the larger model name, then
# prompt version). The newest key is picked first and the description joined on it, so every column comes
# from that one description (arg_max per column skips rows where that column is NULL: the newest text could
# come with an older description's JSON), and it is faster than eight arg_max aggregates.
NEWEST = "(d.created_at, d.model, d.prompt_version)"

# How an index makes an image's document from its descriptions (IndexConfig.descriptions):
#   newest       the most recent description, whatever model wrote it (a re-describe replaces the document);
#   every-model  each model's most recent description, joined in model-name order with a blank line between:
#                several describers are several views of one image (docs/views.md). A prompt version is a
#                revision of a model's description, not another view, so only each model's newest counts.
# With one describer per image the two are the same document (same text, same text hash).
COMBINE = ("newest", "every-model")
JOIN_SEPARATOR = "\n\n"
# A joined document's text hash. Its vectors are not kept in the store's embedding cache: erasure purges the
# cached vectors of a deleted description's own text hash, and a joined text's hash is none of them.
JOINED_PREFIX = "joined:"


def check_combine(combine: str) -> None:
    """Refuse a document rule that is not one of COMBINE (ValueError, naming them)."""
    if combine not in COMBINE:
        raise ValueError(f"descriptions must be one of {', '.join(COMBINE)}, not {combine!r}")


def cacheable(text_hash: str) -> bool:
    """Whether a document's vectors may live in the store's embedding cache (not a joined document's)."""
    return not text_hash.startswith(JOINED_PREFIX)


def records_sql(filter_sql: str = "", tail: str = "", combine: str = "newest") -> str:
    """Current documents of the images `filter_sql` selects (a JOIN or WHERE on `descriptions d`), in id
    order; `tail` limits the images (ORDER BY … LIMIT); `combine` is one of COMBINE."""
    check_combine(combine)
    pick = (f"pick AS (SELECT d.image_id, max({NEWEST}) AS k FROM descriptions d {filter_sql} "
            f"GROUP BY d.image_id {tail})")
    from_newest = f"FROM pick JOIN descriptions d ON d.image_id = pick.image_id AND {NEWEST} IS NOT DISTINCT FROM pick.k"
    if combine == "newest":
        return f"""
WITH {pick}
SELECT d.image_id, d.text, d.text_hash, i.collection, d.json, d.caption, d.model, d.prompt_version, d.meta,
       [d.model]
{from_newest} LEFT JOIN images i ON i.id = d.image_id ORDER BY d.image_id"""
    return f"""
WITH {pick},
views AS (SELECT v.image_id, v.model, v.text, v.text_hash FROM descriptions v JOIN pick ON pick.image_id = v.image_id
          QUALIFY row_number() OVER (PARTITION BY v.image_id, v.model
                                     ORDER BY v.created_at DESC, v.prompt_version DESC) = 1),
joined AS (SELECT image_id, string_agg(text, {_literal(JOIN_SEPARATOR)} ORDER BY model) AS text, count(*) AS n,
                  any_value(text_hash) AS one_hash, list(model ORDER BY model) AS models
           FROM views GROUP BY image_id)
SELECT d.image_id, j.text, CASE WHEN j.n = 1 THEN j.one_hash ELSE {_literal(JOINED_PREFIX)} || sha256(j.text) END,
       i.collection, d.json, d.caption, d.model, d.prompt_version, d.meta, j.models
{from_newest} JOIN joined j ON j.image_id = d.image_id LEFT JOIN images i ON i.id = d.image_id ORDER BY d.image_id"""


def _literal(s: str) -> str:
    """s as a SQL string expression (control characters through chr(), quotes doubled)."""
    return " || ".join(f"chr({ord(c)})" if c < " " else "'" + c.replace("'", "''") + "'" for c in s)


def _record(row: Sequence[Any]) -> DocumentRecord:
    return DocumentRecord(*row[:9], tuple(row[9] or ()))


@dataclass(frozen=True, slots=True)
class Changes:
    """Ids whose document may have changed in (after, upto]; `complete` is False when the log was pruned
    past `after` (the index must then be rebuilt in full)."""

    after: int
    upto: int
    ids: list[str]
    complete: bool


class ChangeLogMixin:
    con: Any
    path: Path

    def uid(self) -> str:
        return self.con.execute("SELECT value FROM store_meta WHERE key = 'uid'").fetchall()[0][0]

    def current_seq(self) -> int:
        return int(self.con.execute("SELECT coalesce(max(seq), 0) FROM changes").fetchall()[0][0])

    def changes_pruned_upto(self) -> int:
        return int(self.con.execute("SELECT value FROM store_meta WHERE key = 'changes_pruned_upto'").fetchall()[0][0])

    def log_changes(self, image_ids: Sequence[str]) -> None:
        """Record that these images' documents may have changed (inside the caller's transaction)."""
        ids = sorted(set(image_ids))
        if ids:
            self.con.register("_chg", pa.table({"id": ids}))
            self.con.execute("INSERT INTO changes (image_id) SELECT id FROM _chg ORDER BY id")
            self.con.unregister("_chg")

    def changes_since(self, after: int) -> Changes:
        upto = self.current_seq()
        rows = self.con.execute("SELECT DISTINCT image_id FROM changes WHERE seq > ? AND seq <= ? ORDER BY 1",
                                [after, upto]).fetchall()
        return Changes(after, upto, [r[0] for r in rows], complete=after >= self.changes_pruned_upto())

    def prune_changes(self, upto: int) -> int:
        """Forget changes every index has applied (ids of erased images go with them)."""
        with self.transaction():
            n = len(self.con.execute("DELETE FROM changes WHERE seq <= ? RETURNING seq", [upto]).fetchall())
            self.con.execute("UPDATE store_meta SET value = CAST(greatest(CAST(value AS BIGINT), ?) AS TEXT) "
                             "WHERE key = 'changes_pruned_upto'", [upto])
        return n

    def document_records(self, ids: Sequence[str], combine: str = "newest") -> dict[str, DocumentRecord]:
        """Current documents of these ids (made as `combine` says: COMBINE); an id without one (deleted, or
        never described) is absent."""
        if not ids:
            return {}
        self.con.register("_want", pa.table({"id": list(ids)}))
        try:
            rows = self.con.execute(records_sql("JOIN _want w ON w.id = d.image_id", combine=combine)).fetchall()
        finally:
            self.con.unregister("_want")
        return {r[0]: _record(r) for r in rows}

    def document_records_after(self, after_id: str | None, limit: int, combine: str = "newest"
                               ) -> list[DocumentRecord]:
        """The next `limit` documents in id order after `after_id` (keyset paging: safe across writes)."""
        where = "WHERE d.image_id > ?" if after_id is not None else ""
        args = [after_id] if after_id is not None else []
        rows = self.con.execute(records_sql(where, "ORDER BY d.image_id LIMIT ?", combine), [*args, limit]).fetchall()
        return [_record(r) for r in rows]

    def iter_document_records(self, batch: int = 5000, combine: str = "newest") -> Iterator[DocumentRecord]:
        last = None
        while rows := self.document_records_after(last, batch, combine):
            yield from rows
            last = rows[-1].id

    def collections_of(self, ids: Sequence[str]) -> dict[str, str | None]:
        """The collection of each id the store has (an image row or a description); absent ids are left out."""
        if not ids:
            return {}
        self.con.register("_ids", pa.table({"id": list(ids)}))
        try:
            rows = self.con.execute(
                "SELECT w.id, any_value(i.collection) FROM _ids w LEFT JOIN images i ON i.id = w.id "
                "LEFT JOIN descriptions d ON d.image_id = w.id WHERE i.id IS NOT NULL OR d.image_id IS NOT NULL "
                "GROUP BY w.id").fetchall()
        finally:
            self.con.unregister("_ids")
        return {r[0]: r[1] for r in rows}

    def ids_in_collection(self, collection: str) -> list[str]:
        return [r[0] for r in self.con.execute(
            "SELECT id FROM images WHERE collection = ? ORDER BY id", [collection]).fetchall()]

    def rewrite_file(self) -> dict[str, int]:
        """Copy the database into a fresh file and swap it in: DuckDB keeps deleted rows' bytes in freed
        blocks (CHECKPOINT and VACUUM do not clear them), a copy holds live data only. Returns sizes.

        Needs the write lock (this connection) and closes the store: reopen it afterwards."""
        if self.read_only:
            raise RuntimeError("rewrite_file needs a writable store")
        before = self.path.stat().st_size
        tmp = self.path.with_name(self.path.name + ".compact")
        for stale in (tmp, Path(f"{tmp}.wal")):
            stale.unlink(missing_ok=True)
        self.con.execute("CHECKPOINT")
        self.con.execute(f"ATTACH '{_sql_str(tmp)}' AS vfr_compact")
        try:
            db = self.con.execute("SELECT current_database()").fetchall()[0][0]
            self.con.execute(f"COPY FROM DATABASE \"{db}\" TO vfr_compact")
        finally:
            self.con.execute("DETACH vfr_compact")
        self.con.close()
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        point("store:copied")
        os.replace(tmp, self.path)
        point("store:replaced")
        Path(f"{self.path}.wal").unlink(missing_ok=True)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return {"bytes_before": before, "bytes_after": self.path.stat().st_size}


def _sql_str(path: Path) -> str:
    return str(path).replace("'", "''")
