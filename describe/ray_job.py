"""`vfr describe --executor ray`: the describe job as a Ray Data pipeline on a cluster of vLLM workers.

    list files (driver) → read + hash (CPU tasks) → skip described / duplicates (the job's `Planner`
      actor: no engine sees them) → decode (same CPU tasks) → describe (actor pool, one vLLM engine per
      actor) → one Parquet shard per batch → one idempotent `vfr ingest` of the shard folder (driver)

It is one streaming pipeline: files are read and decoded while the engines describe earlier blocks.
The driver keeps the job row (`vfr jobs`) up to date and shows progress; the workers are in
`describe.ray_worker`. Shards are durable as soon as a batch is done, so a killed driver or worker loses
at most the batches in flight: a rerun skips everything already in the store or in the folder's shards,
describes the rest, and ingests the lot. A rerun also settles a killed run's job row from its shards, so
the `described` counts of all describe jobs add up to the descriptions stored. Ray is imported only
inside the functions that need it.
"""
from __future__ import annotations

import json
import math
import os
import secrets
import socket
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import pyarrow.parquet as pq

from vfr.describe import shards
from vfr.describe.job import JobConfig
from vfr.describe.jobstore import JobLock, job_lock_timeout, open_for_job
from vfr.describe.ray_worker import DescribeWorker, Planner, RunFolder, WorkerSpec, prepare_files
from vfr.describe.reader import discover
from vfr.store.store import Store, StoreError

ProgressFn = Callable[[dict[str, Any]], None]
SAVE_EVERY_S = 10.0                # job row updates while running


class RayJobError(RuntimeError):
    """A problem the operator can act on; the message is one line that says what to do."""


@dataclass
class RayOptions:
    address: str | None = None          # None: RAY_ADDRESS, else a local Ray instance
    workers: int | None = None          # actors (engines); None: GPUs // gpus_per_worker, or 1 without GPUs
    gpus_per_worker: float | None = None  # None: tensor_parallel_size on a GPU cluster, else 0
    cpus_per_worker: float = 0.5
    decode_cpus: float = 1.0            # per read/hash/decode task
    crash_limit: int = 1
    engine_factory: Callable[[Any], Any] | str | None = None   # see WorkerSpec; tests inject faults with it
    log_to_driver: bool = False         # workers' logs stay in each node's Ray log folder


def run(specs: Sequence[str | Path], db: str | Path, out_dir: str | Path, cfg: JobConfig, engine: Any,
        opts: RayOptions = RayOptions(), redact: bool = True, progress: ProgressFn = lambda s: None,
        files: Sequence[Path] | None = None, note: Callable[[str], None] = lambda msg: None) -> dict[str, Any]:
    """Describe every image under `specs` (or exactly `files`) on a Ray cluster; returns the final counts
    (the job row's). Holds the store's describe job lock throughout, like the single-process job."""
    db, out = Path(db), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [str(p) for p in (files if files is not None else discover(specs))]
    with JobLock(db, "describe"):
        return _Job(db, out, cfg, engine, opts, redact, progress, note).run(paths)


class _Job:
    def __init__(self, db: Path, out: Path, cfg: JobConfig, engine: Any, opts: RayOptions, redact: bool,
                 progress: ProgressFn, note: Callable[[str], None]) -> None:
        self.db, self.out, self.cfg, self.engine, self.opts = db, out, cfg, engine, opts
        self.redact, self.progress, self.note = redact, progress, note
        self.lock_timeout = job_lock_timeout()
        self.run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"
        self.counts: dict[str, Any] = {"files": 0, "described": 0, "skipped": 0, "duplicates": 0, "failed": {},
                                       "executor": "ray", "run": self.run_id}
        self.failed: Counter = Counter()
        self.t0 = time.perf_counter()
        self.stages: Counter = Counter()
        self.last_save = 0.0
        self.done_files = 0

    def run(self, paths: list[str]) -> dict[str, Any]:
        connected = _connect(self.opts) if paths else False   # an unreachable cluster leaves no job row
        try:
            return self._run(paths)
        finally:
            if connected:
                import ray
                ray.shutdown()

    def _run(self, paths: list[str]) -> dict[str, Any]:
        self.counts["files"] = len(paths)
        params = {**self.cfg.params, "executor": "ray", "model": self.cfg.model, "out_dir": str(self.out.resolve()),
                  "run": self.run_id, "prompt_version": self.cfg.prompt_version, "batch_size": self.cfg.batch_size,
                  "collection": self.cfg.collection, "paths": self.cfg.keep_paths}
        with self._store() as store:
            settle_stale_jobs(store)
            self.job_id = store.start_job("describe", params)
        self.counts["job"] = str(self.job_id)
        folder = RunFolder(self.out, self.run_id)
        folder.claim()
        for tmp in self.out.glob(".tmp-shard-ray-*"):
            tmp.unlink(missing_ok=True)   # left by a killed run; we hold the describe lock, no run is live
        status = "failed"
        try:
            if paths:
                self._work(paths)
            status = "done"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        except RayJobError:
            raise
        except Exception as e:  # noqa: BLE001 - Ray's errors are long; the operator gets one line
            raise RayJobError(f"the Ray job failed: {_short(e)} (the workers' logs are in each node's "
                              "/tmp/ray/session_latest/logs); rerun to finish the rest") from e
        finally:
            self._finish(status, folder)
        return self.counts

    def _work(self, paths: list[str]) -> None:
        import ray
        workers, gpus = plan_resources(self.opts, self.engine, ray.cluster_resources())
        self.counts.update(workers=workers, gpus_per_worker=gpus)
        t = time.perf_counter()
        done = shards.described_in(self.out).get((self.cfg.model, self.cfg.prompt_version), set())
        with self._store() as store:
            done.update(store.described_ids(self.cfg.model, self.cfg.prompt_version))
        self.stages["plan"] = time.perf_counter() - t
        self._save()
        spec = WorkerSpec(str(self.out), self.run_id, str(self.job_id), self.engine, self.cfg, self.redact,
                          self.opts.crash_limit, self.opts.engine_factory)
        t = time.perf_counter()
        self.t_describe = time.time()
        self.progress({"phase": "describe", "total": len(paths), "done": 0})   # engines loading
        describe_phase(paths, sorted(done), spec, self.cfg, self.opts, workers, gpus, self._on_batch)
        self.stages["describe"] = time.perf_counter() - t

    def _store(self, progress_only: bool = False) -> Store:
        """The store for one short transaction; other processes use it in between (`describe.jobstore`).
        A progress update does not wait long for it: the next one, or the final row, will do."""
        return open_for_job(self.db, 1.0 if progress_only else self.lock_timeout, self.note)

    def _on_batch(self, s: dict[str, Any]) -> None:
        c = self.counts
        self.failed.update(json.loads(s["failed"]))
        self.done_files += s["files"]
        c["failed"] = dict(sorted(self.failed.items()))
        for k in ("described", "skipped", "duplicates", "retried", "prompt_tokens", "completion_tokens"):
            c[k] = c.get(k, 0) + s[k]
        self.stages["engine"] += s["engine_s"]
        if s["shard"]:
            c["shards"] = c.get("shards", 0) + 1
            c["recovered_batches"] = c.get("recovered_batches", 0) + int(s["recovered"])
            self.first_start = min(getattr(self, "first_start", s["started"]), s["started"])
            self.last_end = max(getattr(self, "last_end", s["ended"]), s["ended"])
        elapsed = time.time() - self.t_describe
        self.progress({"phase": "describe", "total": c["files"], "done": self.done_files,
                       "described": c["described"], "failed": sum(self.failed.values()),
                       "images_per_s": round(c["described"] / elapsed, 2) if elapsed > 0 else 0.0,
                       "errors": json.loads(s["errors"])})
        if time.perf_counter() - self.last_save > SAVE_EVERY_S:
            self._save()

    def _save(self, status: str | None = None, ended: bool = False) -> None:
        self.last_save = time.perf_counter()
        try:
            with self._store(progress_only=not ended) as store:
                store.update_job(self.job_id, self._final_counts(status or "running"), status=status, ended=ended)
        except StoreError:
            if ended:
                raise          # the final row must be written; progress updates may wait for the next one

    def _finish(self, status: str, folder: RunFolder) -> None:
        """Counts from the run's shards (exact even after faults), then one idempotent ingest."""
        from_shards = shard_counts(self.out, self.run_id)
        self.counts["described"] = from_shards["described"]
        self.failed = Counter(from_shards["failed"])
        self.counts["failed"] = from_shards["failed"]
        workers = folder.workers()
        self.counts["worker_starts"] = len(workers)   # more than `workers`: Ray restarted dead ones
        self.counts["engine_load_s"] = max((w.get("load_s", 0.0) for w in workers), default=0.0)
        if status != "interrupted" and shards.shard_files(self.out):
            t = time.perf_counter()
            self.progress({"phase": "ingest", "total": self.counts["files"], "done": self.counts["files"]})
            self.counts["ingest"] = shards.ingest(self.db, self.out, self.lock_timeout, self.note)
            self.stages["ingest"] = time.perf_counter() - t
        self._save(status, ended=True)

    def _final_counts(self, status: str) -> dict[str, Any]:
        c = self.counts
        elapsed = time.perf_counter() - self.t0
        busy = getattr(self, "last_end", 0.0) - getattr(self, "first_start", 0.0)
        tokens = c.get("prompt_tokens", 0) + c.get("completion_tokens", 0)
        c.update(status=status, elapsed_s=round(elapsed, 3), stages_s={k: round(v, 3) for k, v in self.stages.items()},
                 images_per_s=round(c["described"] / elapsed, 3) if elapsed else 0.0,
                 images_per_s_engines_up=round(c["described"] / busy, 3) if busy > 0 else 0.0,
                 tokens_per_s=round(tokens / self.stages["engine"], 1) if self.stages["engine"] else 0.0)
        return c


def _connect(opts: RayOptions) -> bool:
    """Join the cluster (or start a local one); False when this process was already connected."""
    import logging

    import ray
    from ray.data import DataContext

    if ray.is_initialized():
        return False
    address = opts.address or os.environ.get("RAY_ADDRESS") or "local"   # never a stale or stranger's cluster
    kwargs: dict[str, Any] = {"log_to_driver": opts.log_to_driver, "logging_level": logging.WARNING}
    if address == "local":
        kwargs["include_dashboard"] = False
        _local_token_auth()
    else:
        check_reachable(address)
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise RayJobError(f"cannot join the Ray cluster at {address}: {_short(e)}; start it with "
                          "`ray start --head` and pass --ray-address HOST:PORT") from None
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False      # our own progress line says images/s and errors
    ctx.print_on_execution_start = False
    ctx.issue_detectors_config.detectors = []   # its hints repeat every 30 s in the operator's terminal
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)   # "progress bars disabled"
    warnings.filterwarnings("ignore", message="The minimum number of concurrent actors")   # small jobs
    return True


def _local_token_auth() -> None:
    """A local instance gets token authentication with a token of its own, given by environment (its
    workers inherit it). Ray's default would write ~/.ray/auth_token, which then switches token
    authentication on for every later `ray start` on the machine while drivers that join those clusters
    still come without a token. An operator's own RAY_AUTH_MODE wins."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    from ray._raylet import Config
    Config.initialize("")     # Ray read its configuration at import; this is how Ray itself refreshes it


def check_reachable(address: str | None) -> None:
    """Ray waits minutes for an address nobody answers on; a closed port is worth one line at once."""
    if not address or "://" in address or address in ("auto", "local"):
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=10).close()
    except (OSError, ValueError) as e:
        raise RayJobError(f"nothing answers at --ray-address {address} ({type(e).__name__}: {e}); start the head "
                          "with `ray start --head --port=PORT` and pass HOST:PORT") from None


def plan_resources(opts: RayOptions, engine: Any, res: dict[str, float]) -> tuple[int, float]:
    """Actors and GPUs per actor, checked against the cluster so a job never waits for resources forever."""
    have_gpus, have_cpus = res.get("GPU", 0.0), res.get("CPU", 0.0)
    tp = getattr(engine, "tensor_parallel_size", 1)
    gpus = opts.gpus_per_worker if opts.gpus_per_worker is not None else (float(tp) if have_gpus else 0.0)
    workers = opts.workers or (max(1, int(have_gpus // gpus)) if gpus else 1)
    if gpus * workers > have_gpus:
        raise RayJobError(f"--workers {workers} x --gpus-per-worker {gpus:g} needs {gpus * workers:g} GPUs; the "
                          f"cluster has {have_gpus:g}. Lower --workers, or --gpus-per-worker 0 for vLLM's CPU build")
    need = opts.cpus_per_worker * workers + opts.decode_cpus
    if need > have_cpus:
        raise RayJobError(f"--workers {workers} needs {need:g} CPUs ({opts.cpus_per_worker:g} per worker + "
                          f"{opts.decode_cpus:g} for reading); the cluster has {have_cpus:g}. Lower --workers")
    return workers, gpus


def describe_phase(paths: list[str], done: list[str], spec: WorkerSpec, cfg: JobConfig, opts: RayOptions,
                   workers: int, gpus: float, on_batch: Callable[[dict[str, Any]], None]) -> None:
    """One streaming pipeline: blocks of `batch_size` files are read, hashed, settled by the planner and
    decoded by CPU tasks while the actors describe earlier blocks (one block per engine batch, so a
    retried batch is the same batch)."""
    import ray

    planner = ray.remote(Planner).options(num_cpus=0, max_restarts=-1, max_task_retries=-1).remote(done)
    items = [{"idx": i, "path": p} for i, p in enumerate(paths)]
    ds = ray.data.from_items(items, override_num_blocks=math.ceil(len(items) / cfg.batch_size))
    ds = ds.map_batches(prepare_files, fn_args=(cfg.limits, planner), batch_format="pyarrow", batch_size=None,
                        num_cpus=opts.decode_cpus)
    ds = ds.map_batches(DescribeWorker, fn_constructor_args=(spec,), batch_format="pyarrow", batch_size=None,
                        compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=opts.cpus_per_worker,
                        num_gpus=gpus)
    try:
        for t in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            for s in t.to_pylist():
                on_batch(s)
    finally:
        ray.kill(planner)


def shard_counts(out_dir: Path, run: str) -> dict[str, Any]:
    """What a run really produced, from its shards: distinct images described, error rows by reason."""
    described: set[str] = set()
    failed: Counter = Counter()
    for f in sorted(Path(out_dir).glob(f"shard-ray-{run}-*.parquet")):
        for r in pq.read_table(f, columns=["kind", "image_id", "reason"]).to_pylist():
            if r["kind"] == "description":
                described.add(r["image_id"])
            else:
                failed[r["reason"]] += 1
    return {"described": len(described), "failed": dict(sorted(failed.items()))}


def settle_stale_jobs(store: Any) -> None:
    """Ray jobs left `running` by a killed driver become `interrupted`, with the counts their shards prove."""
    for j in store.jobs(10_000):
        params = j["params"] or {}
        if j["kind"] != "describe" or j["status"] != "running" or params.get("executor") != "ray":
            continue
        counts = dict(j["counts"] or {})
        if Path(params.get("out_dir", "")).is_dir():
            counts.update(shard_counts(Path(params["out_dir"]), params["run"]))
        counts["status"] = "interrupted"
        store.update_job(j["id"], counts, status="interrupted", ended=True)
    store.interrupt_stale_jobs("describe")


def _short(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return (lines[-1] if lines else type(e).__name__)[:300]
