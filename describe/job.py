"""The describe job: reader → describer (engine + validation) → writer, with resume, counts and timings.

A reader thread hashes and decodes the next batches while the engine works on the current one, so the
engine is never starved. Each batch is written in one transaction together with its error rows and the
job's running counts, so a `kill -9` at any moment leaves whole batches only: the rerun skips what was
written (same model and prompt version) and describes the rest.
"""
from __future__ import annotations

import hashlib
import json
import queue
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

from vfr.describe.describer import DescribeError, Describer
from vfr.describe.jobstore import JobLock, job_lock_timeout, open_for_job
from vfr.describe.reader import ImageRef, ReaderLimits, ReadError, decode, discover, read_bytes
from vfr.describe.schema import RENDERER_VERSION, SceneDescription
from vfr.store.store import DescriptionRow, ImageRow

ErrorRow = tuple[str | None, str | None, str, str | None]   # image id, path, reason, detail


@dataclass
class JobConfig:
    model: str                              # the name stored with every description
    prompt_version: str
    batch_size: int = 16
    collection: str | None = None
    keep_paths: bool = True
    limits: ReaderLimits = field(default_factory=ReaderLimits)
    read_workers: int = 4
    prefetch: int = 2                       # batches decoded ahead of the engine
    shard: tuple[int, int] | None = None    # (k, n): this worker takes paths with hash % n == k
    params: dict[str, Any] = field(default_factory=dict)   # recorded in the job row


class Sink(Protocol):
    """Where described batches go: the DuckDB store (`StoreSink`) or Parquet shards (`ShardSink`)."""

    def begin(self, params: dict[str, Any]) -> str: ...
    def done_ids(self, model: str, prompt_version: str, ids: Sequence[str]) -> set[str]: ...
    def write(self, images: list[ImageRow], descriptions: list[DescriptionRow], errors: list[ErrorRow],
              counts: dict[str, Any]) -> None: ...
    def end(self, counts: dict[str, Any], status: str) -> None: ...


class StoreSink:
    """Writes each batch into DuckDB in one transaction with its error rows and the job's counts.

    The store is open only for that transaction and for each "already described?" check, so other
    processes (search, import, delete, index updates) work between batches; see `describe.jobstore`.
    `db` is the database path (a `Store` is accepted for its path). One describe job per store.
    """

    def __init__(self, db: str | Path | Any, lock_timeout: float | None = None,
                 note: Callable[[str], None] = lambda msg: None) -> None:
        self.path = Path(getattr(db, "path", db))
        self.lock_timeout = job_lock_timeout() if lock_timeout is None else lock_timeout
        self.note = note
        self.lock = JobLock(self.path, "describe")
        self.job_id: int | None = None
        self._turn = threading.Lock()   # the reader thread's checks and the writes open the store in turn

    @contextmanager
    def _store(self) -> Iterator[Any]:
        with self._turn:
            store = open_for_job(self.path, self.lock_timeout, self.note)
            try:
                yield store
            finally:
                store.close()

    def begin(self, params: dict[str, Any]) -> str:
        self.lock.acquire()
        try:
            with self._store() as store:
                store.interrupt_stale_jobs("describe")   # we hold the job lock: no other can be running
                self.job_id = store.start_job("describe", params)
        except BaseException:
            self.lock.release()
            raise
        return str(self.job_id)

    def done_ids(self, model: str, prompt_version: str, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        with self._store() as store:
            return store.already_described(model, prompt_version, ids)

    def write(self, images: list[ImageRow], descriptions: list[DescriptionRow], errors: list[ErrorRow],
              counts: dict[str, Any]) -> None:
        with self._store() as store:
            store.write_describe_batch(self.job_id, images, descriptions, errors, counts)

    def end(self, counts: dict[str, Any], status: str) -> None:
        try:
            with self._store() as store:
                store.update_job(self.job_id, counts, status=status, ended=True)
        finally:
            self.lock.release()

    def errors(self, limit: int = 10) -> list[dict[str, Any]]:
        """The job's first error rows (after `end`), for the summary."""
        with self._store() as store:
            return store.job_errors(int(self.job_id))[:limit] if self.job_id is not None else []


@dataclass
class Prepared:
    """One engine batch, plus what the reader already settled on the way (errors, skips, duplicates)."""

    refs: list[ImageRef]
    errors: list[ReadError]
    skipped: int = 0
    duplicates: int = 0


@dataclass
class Progress:
    """Callbacks for a progress bar; the default does nothing."""

    start: Callable[[int], None] = lambda total: None
    advance: Callable[[int], None] = lambda n: None


def select_shard(paths: list[Path], shard: tuple[int, int] | None) -> list[Path]:
    """Deterministic split of the file list across workers (by a hash of the path as given)."""
    if shard is None:
        return paths
    k, n = shard
    return [p for p in paths if int(hashlib.sha1(str(p).encode()).hexdigest()[:8], 16) % n == k]


def prepare(paths: Sequence[Path], cfg: JobConfig, sink: Sink, pool: ThreadPoolExecutor,
            timings: Counter) -> Iterator[Prepared]:
    """Hash → skip described and duplicate content → decode, in engine-sized batches."""
    seen: set[str] = set()
    buf = Prepared([], [])
    step = max(cfg.batch_size, 1)
    for start in range(0, len(paths), step):
        t0 = time.perf_counter()
        chunk = paths[start:start + step]
        got = list(pool.map(lambda p: read_bytes(p, cfg.limits), chunk))
        fresh: list[tuple[Path, bytes, str]] = []
        for path, g in zip(chunk, got):
            if isinstance(g, ReadError):
                buf.errors.append(g)
            elif g[1] in seen:
                buf.duplicates += 1
            else:
                seen.add(g[1])
                fresh.append((path, *g))
        done = sink.done_ids(cfg.model, cfg.prompt_version, [f[2] for f in fresh])
        buf.skipped += sum(f[2] in done for f in fresh)
        todo = [f for f in fresh if f[2] not in done]
        for r in pool.map(lambda f: decode(f[1], str(f[0]), f[2], cfg.limits), todo):
            (buf.errors if isinstance(r, ReadError) else buf.refs).append(r)
        timings["read"] += time.perf_counter() - t0
        while len(buf.refs) >= step:
            yield Prepared(buf.refs[:step], buf.errors, buf.skipped, buf.duplicates)
            buf = Prepared(buf.refs[step:], [])
    if buf.refs or buf.errors or buf.skipped or buf.duplicates:
        yield buf


def _threaded(gen: Iterator[Prepared], depth: int) -> Iterator[Prepared]:
    """Run a generator in a thread, `depth` items ahead; its exceptions surface in the consumer."""
    q: queue.Queue = queue.Queue(maxsize=max(depth, 1))
    end = object()
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in gen:
                if not put(item):
                    return
            put(end)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            put(e)

    t = threading.Thread(target=run, name="vfr-reader", daemon=True)
    t.start()
    try:
        while (item := q.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def rows_for(batch: Prepared, results: Sequence[SceneDescription | DescribeError], cfg: JobConfig,
             meta: dict[str, Any]) -> tuple[list[ImageRow], list[DescriptionRow], list[ErrorRow]]:
    """Turn a described batch into store rows. Failed descriptions become error rows, never descriptions."""
    images, descs, errors = [], [], []
    meta_json = json.dumps(meta, sort_keys=True)
    for e in batch.errors:
        errors.append((e.image_id, e.path if cfg.keep_paths else None, e.reason, e.detail))
    for ref, res in zip(batch.refs, results):
        path = ref.path if cfg.keep_paths else None
        if isinstance(res, DescribeError):
            errors.append((ref.id, path, res.reason, res.detail))
            continue
        images.append(ImageRow(ref.id, path, cfg.collection, ref.size, ref.width, ref.height))
        descs.append(DescriptionRow(
            image_id=ref.id, text=res.to_text(), model=cfg.model, prompt_version=cfg.prompt_version,
            renderer_version=RENDERER_VERSION, json=res.model_dump_json(exclude_none=True),
            caption=res.caption, meta=meta_json))
    return images, descs, errors


def run(specs: Sequence[str | Path], describer: Describer, sink: Sink, cfg: JobConfig,
        progress: Progress = Progress(), engine_name: str = "offline", redacted: bool = True,
        files: Sequence[Path] | None = None) -> dict[str, Any]:
    """Describe every image under `specs` (or exactly `files`, when the caller already expanded them,
    e.g. `describe.inputs.collect`); returns the final counts (also stored in the job row)."""
    t_start = time.perf_counter()
    timings: Counter = Counter()
    paths = select_shard(list(files) if files is not None else list(discover(specs)), cfg.shard)
    counts: dict[str, Any] = {"files": len(paths), "described": 0, "skipped": 0, "duplicates": 0, "failed": {}}
    job_id = sink.begin({**cfg.params, "model": cfg.model, "prompt_version": cfg.prompt_version,
                         "batch_size": cfg.batch_size, "collection": cfg.collection, "paths": cfg.keep_paths,
                         "shard": list(cfg.shard) if cfg.shard else None})
    counts["job"] = job_id
    meta = {"job": job_id, "engine": engine_name, "redacted": redacted}
    failed: Counter = Counter()
    progress.start(len(paths))
    status = "failed"
    try:
        with ThreadPoolExecutor(max_workers=max(cfg.read_workers, 1), thread_name_prefix="vfr-decode") as pool:
            for batch in _threaded(prepare(paths, cfg, sink, pool, timings), cfg.prefetch):
                results = describer.describe(batch.refs) if batch.refs else []
                images, descs, errors = rows_for(batch, results, cfg, meta)
                failed.update(e[2] for e in errors)
                counts.update(described=counts["described"] + len(descs),
                              skipped=counts["skipped"] + batch.skipped,
                              duplicates=counts["duplicates"] + batch.duplicates)
                _finish_counts(counts, failed, describer, timings, t_start)
                t0 = time.perf_counter()
                sink.write(images, descs, errors, counts)
                timings["write"] += time.perf_counter() - t0
                progress.advance(len(batch.refs) + len(batch.errors) + batch.skipped + batch.duplicates)
        status = "done"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        _finish_counts(counts, failed, describer, timings, t_start)
        counts["status"] = status
        sink.end(counts, status)
    return counts


def _finish_counts(counts: dict[str, Any], failed: Counter, describer: Describer, timings: Counter,
                   t_start: float) -> None:
    elapsed = time.perf_counter() - t_start
    stats = getattr(describer, "stats", None)
    engine_s = getattr(stats, "engine_s", 0.0)
    stages = {"read": timings["read"], "engine": engine_s, "validate": getattr(stats, "validate_s", 0.0),
              "write": timings["write"]}
    tokens = getattr(stats, "prompt_tokens", 0) + getattr(stats, "completion_tokens", 0)
    counts.update(
        failed=dict(sorted(failed.items())), retried=getattr(stats, "retried", 0),
        prompt_tokens=getattr(stats, "prompt_tokens", 0), completion_tokens=getattr(stats, "completion_tokens", 0),
        elapsed_s=round(elapsed, 3), stages_s={k: round(v, 3) for k, v in stages.items()},
        images_per_s=round(counts["described"] / elapsed, 3) if elapsed else 0.0,
        tokens_per_s=round(tokens / engine_s, 1) if engine_s else 0.0)
