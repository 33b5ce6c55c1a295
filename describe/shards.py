"""Parquet shards: how many describe workers feed one DuckDB store without fighting over its write lock.

Each worker (`vfr describe --out-parquet DIR --shard K/N`, one per GPU or Ray task) writes one shard per
batch, atomically (temporary name, then rename), so a killed worker leaves whole shards only. A rerun
skips images already in the folder's shards. `vfr ingest DIR` loads shards into the store, each in one
transaction, remembering each shard's name and digest: ingesting again adds nothing.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from vfr.describe.jobstore import JobLock, job_lock_timeout, open_for_job
from vfr.store.store import DescriptionRow, ImageRow

SCHEMA = pa.schema([
    ("kind", pa.string()),           # "description" | "error"
    ("image_id", pa.string()), ("path", pa.string()), ("collection", pa.string()),
    ("size", pa.int64()), ("width", pa.int32()), ("height", pa.int32()),
    ("model", pa.string()), ("prompt_version", pa.string()), ("renderer_version", pa.string()),
    ("json", pa.string()), ("text", pa.string()), ("caption", pa.string()), ("meta", pa.string()),
    ("reason", pa.string()), ("detail", pa.string()),
])


class ShardSink:
    """A `describe.job.Sink` writing `shard-<worker>-<run>-b<batch>.parquet` files into `out_dir`."""

    def __init__(self, out_dir: str | Path, worker: str = "w0") -> None:
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.worker = worker
        self.run = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{secrets.token_hex(3)}"
        self.seq = 0
        self._done: dict[tuple[str, str], set[str]] | None = None
        self.params: dict[str, Any] = {}

    def begin(self, params: dict[str, Any]) -> str:
        for tmp in self.dir.glob(f".tmp-shard-{self.worker}-*"):
            tmp.unlink(missing_ok=True)  # left by a killed run of this worker
        self.params = params
        return f"{self.worker}-{self.run}"

    def done_ids(self, model: str, prompt_version: str, ids: Sequence[str]) -> set[str]:
        if self._done is None:
            self._done = described_in(self.dir)
        have = self._done.get((model, prompt_version), set())
        return {i for i in ids if i in have}

    def write(self, images: list[ImageRow], descriptions: list[DescriptionRow], errors: list[tuple],
              counts: dict[str, Any]) -> None:
        if descriptions or errors:
            name = f"shard-{self.worker}-{self.run}-b{self.seq:06d}.parquet"
            self.seq += 1
            write_table(to_table(images, descriptions, errors), self.dir, name)
        self._write_job(counts, "running")

    def end(self, counts: dict[str, Any], status: str) -> None:
        self._write_job(counts, status)

    def _write_job(self, counts: dict[str, Any], status: str) -> None:
        path = self.dir / f"job-{self.worker}-{self.run}.json"
        tmp = path.with_name(".tmp-" + path.name)
        tmp.write_text(json.dumps({"status": status, "params": self.params, "counts": counts}, indent=1))
        os.replace(tmp, path)


def write_table(table: pa.Table, directory: Path, name: str) -> None:
    """Write a shard under a temporary name, then rename: readers only ever see whole shards."""
    tmp = directory / f".tmp-{name}"
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, directory / name)


def to_table(images: Sequence[ImageRow], descriptions: Sequence[DescriptionRow], errors: Sequence[tuple]) -> pa.Table:
    by_id = {i.id: i for i in images}
    rows: list[dict[str, Any]] = []
    for d in descriptions:
        im = by_id.get(d.image_id)
        rows.append({"kind": "description", "image_id": d.image_id, "path": im and im.path,
                     "collection": im and im.collection, "size": im and im.size, "width": im and im.width,
                     "height": im and im.height, "model": d.model, "prompt_version": d.prompt_version,
                     "renderer_version": d.renderer_version, "json": d.json, "text": d.text,
                     "caption": d.caption, "meta": d.meta})
    for image_id, path, reason, detail in errors:
        rows.append({"kind": "error", "image_id": image_id, "path": path, "reason": reason, "detail": detail})
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def shard_files(directory: str | Path) -> list[Path]:
    return sorted(p for p in Path(directory).glob("shard-*.parquet") if p.is_file())


def described_in(directory: str | Path) -> dict[tuple[str, str], set[str]]:
    """Image ids described in the folder's shards, by (model, prompt version)."""
    out: dict[tuple[str, str], set[str]] = {}
    for f in shard_files(directory):
        t = pq.read_table(f, columns=["kind", "image_id", "model", "prompt_version"]).to_pylist()
        for r in t:
            if r["kind"] == "description":
                out.setdefault((r["model"], r["prompt_version"]), set()).add(r["image_id"])
    return out


class ShardError(ValueError):
    """A file named like a shard that is not one (damaged, or written by something else)."""


def read_shard(path: Path) -> tuple[list[ImageRow], list[DescriptionRow], list[tuple]]:
    try:
        table = pq.read_table(path)
        if not set(SCHEMA.names) <= set(table.column_names):
            missing = sorted(set(SCHEMA.names) - set(table.column_names))
            raise ShardError(f"{path} is not a vfr description shard (no column {', '.join(missing)}); "
                             "move it out of the folder")
        rows = table.to_pylist()
    except (pa.ArrowException, OSError) as e:
        raise ShardError(f"cannot read shard {path} ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                         "delete it and rerun the worker that wrote it, then ingest again") from None
    images, descs, errors = [], [], []
    for r in rows:
        if r["kind"] == "error":
            errors.append((r["image_id"], r["path"], r["reason"], r["detail"]))
            continue
        images.append(ImageRow(r["image_id"], r["path"], r["collection"], r["size"], r["width"], r["height"]))
        descs.append(DescriptionRow(image_id=r["image_id"], text=r["text"], model=r["model"],
                                    prompt_version=r["prompt_version"], renderer_version=r["renderer_version"],
                                    json=r["json"], caption=r["caption"], meta=r["meta"]))
    return images, descs, errors


def ingest(db: str | Path | Any, directory: str | Path, lock_timeout: float | None = None,
           note: Callable[[str], None] = lambda msg: None) -> dict[str, Any]:
    """Load every new or changed shard of `directory` into the store at `db` (a `Store` is accepted for
    its path); returns counts (also the job row's). The store is open for one shard's transaction at a
    time (the shard, its error rows and the job's counts commit together), so other processes work
    between shards; one ingest job per store (`JobLock`)."""
    files = shard_files(directory)
    if not files:
        raise FileNotFoundError(f"no shard-*.parquet files in {directory}: pass the folder given to "
                                "`vfr describe --out-parquet`")
    path = Path(getattr(db, "path", db))
    timeout = job_lock_timeout() if lock_timeout is None else lock_timeout
    counts: dict[str, Any] = {"shards": len(files), "ingested_shards": 0, "unchanged_shards": 0,
                              "descriptions": 0, "errors": 0}
    with JobLock(path, "ingest"):
        with open_for_job(path, timeout, note) as store:
            store.interrupt_stale_jobs("ingest")   # we hold the ingest lock: no other can be running
            known = store.ingested_shard_digests()
            job_id = store.start_job("ingest", {"dir": str(directory)})
        status = "failed"
        try:
            for f in files:
                digest = hashlib.sha256(f.read_bytes()).hexdigest()
                if known.get(f.name) == digest:
                    counts["unchanged_shards"] += 1
                    continue
                images, descs, errors = read_shard(f)
                after = {**counts, "ingested_shards": counts["ingested_shards"] + 1,
                         "descriptions": counts["descriptions"] + len(descs), "errors": counts["errors"] + len(errors)}
                with open_for_job(path, timeout, note) as store:
                    store.ingest_shard(f.name, digest, images, descs, errors, job_id, after)
                counts = after
            status = "done"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            with open_for_job(path, timeout, note) as store:
                store.update_job(job_id, counts, status=status, ended=True)
    return counts


def check_out_dir(out_dir: str | Path) -> None:
    """Before anything heavy: the shard folder exists (or can be made) and is writable."""
    path = Path(out_dir)
    if path.exists() and not path.is_dir():
        raise ShardError(f"--out-parquet {path} is a file; pass a folder for the shards")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ShardError(f"cannot create the shard folder {path} ({e.strerror or e}); pass a writable folder") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ShardError(f"the shard folder {path} is not writable; pass a writable folder")
