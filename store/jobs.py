"""Job rows, their errors, and the describe/ingest writes that commit a batch with its job counts.

Mixed into `Store` (store/store.py); every method runs on the store's connection.
"""
from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import pyarrow as pa

if TYPE_CHECKING:
    from vfr.store.store import DescriptionRow, ImageRow


def _loads(s: str | None) -> Any:
    return json.loads(s) if s else None


class JobsMixin:
    con: Any

    # -- jobs ----------------------------------------------------------------------------------
    def start_job(self, kind: str, params: dict[str, Any]) -> int:
        return int(self.con.execute("INSERT INTO jobs (kind, status, params) VALUES (?, 'running', ?) RETURNING id",
                                    [kind, json.dumps(params)]).fetchall()[0][0])

    def update_job(self, job_id: int, counts: dict[str, Any], status: str | None = None,
                   ended: bool = False) -> None:
        self.con.execute(
            "UPDATE jobs SET counts = ?, status = coalesce(?, status), "
            "ended_at = CASE WHEN ? THEN current_timestamp ELSE ended_at END WHERE id = ?",
            [json.dumps(counts), status, ended, job_id])

    def record_errors(self, job_id: int, errors: Iterable[tuple[str | None, str | None, str, str | None]]) -> None:
        """(image id, path, reason, detail) rows for files that could not be described."""
        rows = list(errors)
        if rows:
            self.con.executemany("INSERT INTO job_errors (job_id, image_id, path, reason, detail) VALUES (?, ?, ?, ?, ?)",
                                 [[job_id, *r] for r in rows])

    def jobs(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = self.con.execute("SELECT id, kind, status, params, counts, started_at, ended_at FROM jobs "
                                "ORDER BY id DESC LIMIT ?", [limit]).fetchall()
        return [{"id": r[0], "kind": r[1], "status": r[2], "params": _loads(r[3]), "counts": _loads(r[4]),
                 "started_at": _iso(r[5]), "ended_at": _iso(r[6])} for r in rows]

    # -- describe (issue 3) --------------------------------------------------------------------
    def already_described(self, model: str, prompt_version: str, image_ids: Sequence[str]) -> set[str]:
        """Like `described_keys`, but on a cursor of its own so a reader thread may call it during writes."""
        if not image_ids:
            return set()
        cur = self.con.cursor()
        try:
            cur.register("_ids", pa.table({"id": list(image_ids)}))
            rows = cur.execute("SELECT d.image_id FROM descriptions d JOIN _ids ON d.image_id = _ids.id "
                               "WHERE d.model = ? AND d.prompt_version = ?", [model, prompt_version]).fetchall()
        finally:
            cur.close()
        return {r[0] for r in rows}

    def interrupt_stale_jobs(self, kind: str) -> int:
        """Mark `running` jobs of this kind as interrupted. Only for a caller that knows none can be running
        (a describe or ingest job holds its job lock, `describe.job.JobLock`, while it runs)."""
        n = self.con.execute("UPDATE jobs SET status = 'interrupted' WHERE kind = ? AND status = 'running' "
                             "RETURNING id", [kind]).fetchall()
        return len(n)

    def write_describe_batch(self, job_id: int, images: Sequence[ImageRow], descriptions: Sequence[DescriptionRow],
                             errors: Sequence[tuple[str | None, str | None, str, str | None]],
                             counts: dict[str, Any]) -> None:
        """A batch's descriptions, its error rows and the job's running counts, in one transaction:
        after a crash the database holds whole batches only, and the job row agrees with them."""
        from vfr.store.faults import point

        point("describe:batch-start")
        with self.transaction():
            self.upsert_in_transaction(images, descriptions)
            self.record_errors(job_id, errors)
            point("describe:errors-written")
            self.update_job(job_id, counts)
            point("describe:counts-written")
        point("describe:batch-committed")

    def job_errors(self, job_id: int) -> list[dict[str, Any]]:
        rows = self.con.execute("SELECT image_id, path, reason, detail FROM job_errors WHERE job_id = ? "
                                "ORDER BY created_at, path", [job_id]).fetchall()
        return [{"image_id": r[0], "path": r[1], "reason": r[2], "detail": r[3]} for r in rows]

    def ingested_shard_digests(self) -> dict[str, str]:
        return dict(self.con.execute("SELECT name, sha256 FROM ingested_shards").fetchall())

    def ingest_shard(self, name: str, digest: str, images: Sequence[ImageRow],
                     descriptions: Sequence[DescriptionRow],
                     errors: Sequence[tuple[str | None, str | None, str, str | None]], job_id: int,
                     counts: dict[str, Any] | None = None) -> None:
        """One shard in one transaction, remembered by name and digest so ingesting again is a no-op;
        with `counts`, the job row's running counts commit with it (they agree with the rows after a crash)."""
        with self.transaction():
            self.upsert_in_transaction(images, descriptions)
            self.record_errors(job_id, errors)
            if counts is not None:
                self.update_job(job_id, counts)
            self.con.execute("INSERT OR REPLACE INTO ingested_shards (name, sha256, rows, errors) VALUES (?, ?, ?, ?)",
                             [name, digest, len(descriptions), len(errors)])




def _iso(t: datetime | None) -> str | None:
    return t.isoformat(timespec="seconds") if t else None
