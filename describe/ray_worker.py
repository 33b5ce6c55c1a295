"""What runs on the Ray cluster for `vfr describe --executor ray` (the driver is `describe.ray_job`).

CPU tasks (`prepare_files`) read each file once, hash it, ask the job's `Planner` whether it is new,
already described or a duplicate of another file, and decode the new ones exactly as the local reader
does. An actor pool of `DescribeWorker`s, one vLLM engine each, describes each block with the same
`ValidatingDescriber` (prompt, schema, structured decoding, retry, redaction) as the single-process job
and writes it as one Parquet shard (the `describe.shards` schema, so `vfr ingest` loads it). Nothing
here imports Ray at module level: Ray Data calls plain functions and classes, and the unit tests drive
them directly with a fake engine and a plain `Planner`.

Faults. A shard is named after its batch's content and written atomically, so a batch that Ray retries
after its actor died finds its shard (if it was written) instead of describing it twice. Marker files in
the run's folder survive a worker's death: a batch that was in flight when its worker died is retried
one image at a time, and an image that was in flight when a worker died `crash_limit` more times is
recorded as a `worker_crash` error instead of being tried again, so one poisonous image cannot stall
the job. An exception from the engine fails only its images (`engine_error`), never the job.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import socket
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from vfr.describe.describer import ENGINE_ERROR, DescribeError, ValidatingDescriber
from vfr.describe.job import JobConfig, Prepared, rows_for
from vfr.describe.reader import ImageRef, ReaderLimits, ReadError, decode, read_bytes
from vfr.describe.schema import SceneDescription
from vfr.describe.shards import to_table, write_table

WORKER_CRASH = "worker_crash"   # error reason: the worker process died on this image again and again

TODO, SKIPPED, DUPLICATE = "todo", "skipped", "duplicate"
PREPARED = pa.schema([("idx", pa.int64()), ("path", pa.string()), ("status", pa.string()), ("id", pa.string()),
                      ("size", pa.int64()), ("width", pa.int32()), ("height", pa.int32()), ("pw", pa.int32()),
                      ("ph", pa.int32()), ("pixels", pa.large_binary()), ("reason", pa.string()),
                      ("detail", pa.string())])
SUMMARY = pa.schema([("shard", pa.string()), ("files", pa.int64()), ("described", pa.int64()),
                     ("skipped", pa.int64()), ("duplicates", pa.int64()), ("failed", pa.string()),
                     ("errors", pa.string()), ("retried", pa.int64()), ("prompt_tokens", pa.int64()),
                     ("completion_tokens", pa.int64()), ("engine_s", pa.float64()), ("started", pa.float64()),
                     ("ended", pa.float64()), ("recovered", pa.bool_()), ("pid", pa.int64())])


class Planner:
    """The job's one decision point, as a Ray actor: is this content new, already described (in the store
    or the shard folder when the job started), or a second file with the same content? The first file
    to claim a content wins; a retried task claiming again with the same file gets the same answer."""

    def __init__(self, done_ids: Sequence[str]) -> None:
        self.done = set(done_ids)
        self.first: dict[str, int] = {}

    def claim(self, ids: Sequence[str], idxs: Sequence[int]) -> list[str]:
        out = []
        for image_id, idx in zip(ids, idxs):
            if image_id in self.done:
                out.append(SKIPPED)
            else:
                out.append(TODO if self.first.setdefault(image_id, idx) == idx else DUPLICATE)
        return out


def _claim(planner: Any, ids: list[str], idxs: list[int]) -> list[str]:
    if not ids:
        return []
    if hasattr(planner.claim, "remote"):       # a Ray actor handle
        import ray
        return ray.get(planner.claim.remote(ids, idxs))
    return planner.claim(ids, idxs)


def prepare_files(batch: pa.Table, limits: ReaderLimits, planner: Any) -> pa.Table:
    """CPU task: read each file once, hash it, settle it with the planner (skipped and duplicate files
    never reach an engine), and decode the new ones as the local reader does; the pixels travel to the
    engine as raw RGB bytes (lossless, so the outputs match the local job's)."""
    rows: list[dict[str, Any]] = []
    data: dict[int, bytes] = {}
    for idx, path in zip(batch.column("idx").to_pylist(), batch.column("path").to_pylist()):
        got = read_bytes(Path(path), limits)
        if isinstance(got, ReadError):
            rows.append({"idx": idx, "path": path, "status": "error", "reason": got.reason, "detail": got.detail})
        else:
            data[idx] = got[0]
            rows.append({"idx": idx, "path": path, "status": TODO, "id": got[1], "size": len(got[0])})
    hashed = [r for r in rows if r["status"] == TODO]
    for r, status in zip(hashed, _claim(planner, [r["id"] for r in hashed], [r["idx"] for r in hashed])):
        r["status"] = status
        if status != TODO:
            continue
        res = decode(data[r["idx"]], r["path"], r["id"], limits)
        if isinstance(res, ReadError):
            r.update(status="error", reason=res.reason, detail=res.detail)
        else:
            r.update(width=res.width, height=res.height, pw=res.image.width, ph=res.image.height,
                     pixels=res.image.tobytes())
    return pa.Table.from_pylist(rows, schema=PREPARED)


def to_prepared(rows: Sequence[dict[str, Any]]) -> Prepared:
    """Prepared rows back into engine inputs and the read errors that travel with them (skipped and
    duplicate files are only counted)."""
    from PIL import Image

    refs, errors = [], []
    for r in rows:
        if r["status"] == "error":
            errors.append(ReadError(r["path"], r["reason"], r["detail"] or "", r["id"]))
        elif r["status"] == TODO:
            image = Image.frombytes("RGB", (r["pw"], r["ph"]), r["pixels"])
            refs.append(ImageRef(r["id"], r["path"], r["size"], r["width"], r["height"], image))
    return Prepared(refs, errors, skipped=sum(r["status"] == SKIPPED for r in rows),
                    duplicates=sum(r["status"] == DUPLICATE for r in rows))


def batch_key(rows: Sequence[dict[str, Any]]) -> str:
    """Names a batch by its content, so a retried batch maps to the same shard."""
    h = hashlib.sha256()
    for r in sorted(rows, key=lambda r: r["idx"]):
        h.update(f"{r['idx']}\0{r['path']}\0{r['id']}\n".encode())
    return h.hexdigest()[:20]


class RunFolder:
    """`<out>/_ray/<run>/`: markers that survive a worker's death, workers' status, the current run."""

    def __init__(self, out_dir: str | Path, run: str) -> None:
        self.out = Path(out_dir)
        self.run = run
        self.root = self.out / "_ray" / run
        (self.root / "inflight").mkdir(parents=True, exist_ok=True)
        (self.root / "workers").mkdir(parents=True, exist_ok=True)

    def shard_name(self, key: str) -> str:
        return f"shard-ray-{self.run}-{key}.parquet"

    def claim(self) -> None:
        """The driver makes this run the folder's current one; workers of an older run stop writing."""
        _write_atomic(self.out / "_ray" / "current", self.run)

    def is_current(self) -> bool:
        try:
            return (self.out / "_ray" / "current").read_text() == self.run
        except OSError:
            return False

    def enter(self, name: str) -> int:
        """Mark `name` in flight; returns how many earlier attempts died with it in flight."""
        path = self.root / "inflight" / name
        try:
            before = int(path.read_text() or 0)
        except (OSError, ValueError):
            before = 0
        _write_atomic(path, str(before + 1))
        return before

    def leave(self, name: str) -> None:
        (self.root / "inflight" / name).unlink(missing_ok=True)

    def worker_status(self, status: dict[str, Any]) -> None:
        _write_atomic(self.root / "workers" / f"{status['host']}-{status['pid']}.json", json.dumps(status))

    def workers(self) -> list[dict[str, Any]]:
        out = []
        for p in sorted((self.root / "workers").glob("*.json")):
            try:
                out.append(json.loads(p.read_text()))
            except (OSError, ValueError):
                continue
        return out


@dataclass
class WorkerSpec:
    """Everything an actor needs; pickled to the cluster once per actor."""

    out_dir: str
    run: str
    job: str
    engine: Any                       # describe.engine_vllm.VllmOptions
    config: JobConfig                 # stored model name, prompt version, collection, paths
    redact: bool = True
    crash_limit: int = 1              # deaths with an image in flight alone before it becomes an error
    engine_factory: Callable[[Any], Any] | str | None = None  # (VllmOptions) -> Engine, or "module:name";
    #                                                             default the vLLM engine (tests inject faults)


def load_engine(spec: WorkerSpec) -> Any:
    factory = spec.engine_factory
    if isinstance(factory, str):
        module, _, name = factory.partition(":")
        factory = getattr(importlib.import_module(module), name)
    if factory is not None:
        return factory(spec.engine)
    from vfr.describe.engine_vllm import VllmEngine
    return VllmEngine(spec.engine)


class DescribeWorker:
    """One engine per actor; `__call__` describes one batch into one shard and returns a one-row summary."""

    def __init__(self, spec: WorkerSpec) -> None:
        t0 = time.perf_counter()
        self.spec = spec
        self.folder = RunFolder(spec.out_dir, spec.run)
        engine = load_engine(spec)
        self.describer = ValidatingDescriber(engine, redact_text=spec.redact)
        self.meta = {"job": spec.job, "engine": engine.name, "redacted": spec.redact, "executor": "ray"}
        self.status = {"pid": os.getpid(), "host": socket.gethostname(), "run": spec.run,
                       "load_s": round(time.perf_counter() - t0, 3), "batches": 0, "current": None}
        self.folder.worker_status(self.status)

    def __call__(self, batch: pa.Table) -> pa.Table:
        started = time.time()
        rows = batch.to_pylist()
        key = batch_key(rows)
        name = self.folder.shard_name(key)
        prepared = to_prepared(rows)
        tally = {"skipped": prepared.skipped, "duplicates": prepared.duplicates}
        if not prepared.refs and not prepared.errors:    # nothing new in this block: no engine, no shard
            return _summary("", len(rows), 0, [], tally, started, False)
        if (self.folder.out / name).exists():      # written before this batch's worker died: reuse it
            return summary_of_shard(self.folder.out / name, len(rows), tally, started)
        self._status(current=key)
        careful = self.folder.enter(f"b-{key}") > 0
        before = _stats(self.describer)
        results = self._describe(prepared.refs, careful)
        images, descs, errors = rows_for(prepared, results, self.spec.config, self.meta)
        if not self.folder.is_current():
            raise RuntimeError(f"run {self.spec.run} is no longer current in {self.folder.out} (a newer job took "
                               "the folder over); this worker stops writing")
        write_table(to_table(images, descs, errors), self.folder.out, name)
        self.folder.leave(f"b-{key}")
        self._status(current=None, batches=self.status["batches"] + 1)
        delta = {k: v - before[k] for k, v in _stats(self.describer).items()}
        return _summary(name, len(rows), len(descs), errors, {**delta, **tally}, started, careful)

    def _describe(self, refs: list[ImageRef], careful: bool) -> list[SceneDescription | DescribeError]:
        if not refs:
            return []
        if not careful:
            try:
                return self.describer.describe(refs)
            except Exception:  # noqa: BLE001 - one bad image must not fail the batch: go one by one
                pass
        return [self._describe_one(ref) for ref in refs]

    def _describe_one(self, ref: ImageRef) -> SceneDescription | DescribeError:
        deaths = self.folder.enter(f"i-{ref.id}")
        if deaths >= self.spec.crash_limit:
            self.folder.leave(f"i-{ref.id}")
            return DescribeError(WORKER_CRASH, f"the describe worker died {deaths + 1} times while this image "
                                               "was in flight; not tried again")
        try:
            res = self.describer.describe([ref])[0]
        except Exception as e:  # noqa: BLE001 - recorded as this image's error; the job goes on
            res = DescribeError(ENGINE_ERROR, f"{type(e).__name__}: {e}"[:500])
        self.folder.leave(f"i-{ref.id}")
        return res

    def _status(self, **changes: Any) -> None:
        self.status.update(changes, updated=time.time())
        self.folder.worker_status(self.status)


def _stats(describer: ValidatingDescriber) -> dict[str, float]:
    s = describer.stats
    return {"retried": s.retried, "prompt_tokens": s.prompt_tokens, "completion_tokens": s.completion_tokens,
            "engine_s": s.engine_s}


def _summary(shard: str, files: int, described: int, errors: Sequence[tuple], stats: dict[str, float],
             started: float, recovered: bool) -> pa.Table:
    failed = Counter(e[2] for e in errors)
    return pa.Table.from_pylist([{
        "shard": shard, "files": files, "described": described, "skipped": int(stats.get("skipped", 0)),
        "duplicates": int(stats.get("duplicates", 0)), "failed": json.dumps(dict(failed)),
        "errors": json.dumps([[e[1] or e[0], e[2], e[3]] for e in errors[:10]]),
        "retried": int(stats.get("retried", 0)), "prompt_tokens": int(stats.get("prompt_tokens", 0)),
        "completion_tokens": int(stats.get("completion_tokens", 0)), "engine_s": float(stats.get("engine_s", 0.0)),
        "started": started, "ended": time.time(), "recovered": recovered, "pid": os.getpid()}], schema=SUMMARY)


def summary_of_shard(path: Path, files: int, tally: dict[str, int], started: float) -> pa.Table:
    rows = pq.read_table(path, columns=["kind", "image_id", "path", "reason", "detail"]).to_pylist()
    errors = [(r["image_id"], r["path"], r["reason"], r["detail"]) for r in rows if r["kind"] == "error"]
    return _summary(path.name, files, len(rows) - len(errors), errors, dict(tally), started, True)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
