"""`vfr describe --executor ray`: options, progress line and summary around `describe.ray_job`."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from vfr.common import console, fail, stdout_for_results
from vfr.store.textfiles import json_dumps


def describe_ray(paths: Optional[list[str]], db: Path, model: Optional[str], engine: str, batch_size: int,
                 collection: Optional[str], no_paths: bool, no_redact: bool, out_parquet: Optional[Path],
                 shard: Optional[str], model_name: Optional[str], max_tokens: int, max_pixels: Optional[int],
                 dtype: str, max_model_len: int, tensor_parallel_size: int, data_parallel_size: int,
                 gpu_memory_utilization: float, seed: int, quiet: bool, log_batches: bool, as_json: bool,
                 check: bool, executor: str, ray_address: Optional[str], workers: Optional[int],
                 gpus_per_worker: Optional[float], cpus_per_worker: float, **_local_only: Any) -> None:
    """Check what only the Ray executor accepts and the usual first-contact checks (inputs, model,
    database, shard folder), run the job, print its summary."""
    from vfr.cmd_describe import _check_output, _collect_inputs, _resolve_model, _stored_model_name

    _check_ray_options(executor, engine, shard, data_parallel_size, check, ray_address)
    files = _collect_inputs(paths or [])
    _resolve_model(model)
    shards_dir = out_parquet or db.with_name(db.name + ".shards")
    _check_output(db, None)
    _check_output(db, shards_dir)

    from vfr.describe.engine_vllm import DEFAULT_MODEL, VllmOptions, model_max_pixels
    from vfr.describe.job import JobConfig
    from vfr.describe.prompt import prompt_version
    from vfr.describe.ray_job import RayJobError, RayOptions, run
    from vfr.describe.reader import ReaderLimits
    from vfr.store.store import StoreError

    model = model or DEFAULT_MODEL
    opts = VllmOptions(model=str(Path(model).resolve()) if Path(model).is_dir() else model, dtype=dtype,
                       max_tokens=max_tokens, max_model_len=max_model_len, tensor_parallel_size=tensor_parallel_size,
                       gpu_memory_utilization=gpu_memory_utilization, seed=seed, max_pixels=max_pixels)
    if tensor_parallel_size > 1:
        opts.extra["distributed_executor_backend"] = "mp"   # the TP ranks live inside the actor's GPUs
    cfg = JobConfig(model=model_name or _stored_model_name(model, "offline"), prompt_version=prompt_version(not no_redact),
                    batch_size=batch_size, collection=collection, keep_paths=not no_paths,
                    limits=ReaderLimits(max_pixels=max_pixels or model_max_pixels(model)),
                    params={"engine": "offline", "options": {**vars(opts)}})
    ray_opts = RayOptions(address=ray_address, workers=workers, gpus_per_worker=gpus_per_worker,
                          cpus_per_worker=cpus_per_worker)
    show = _Progress(quiet, log_batches)
    note = lambda msg: console.print(f"note: {msg}", highlight=False, markup=False)  # noqa: E731
    with stdout_for_results() as results:      # --json stays parseable whatever Ray prints
        try:
            with show:
                counts = run([], db, shards_dir, cfg, opts, ray_opts, redact=not no_redact, progress=show.update,
                             files=files, note=note)
        except KeyboardInterrupt:
            fail("interrupted: the shards already written are kept; run the same command again to continue", 130)
        except (RayJobError, StoreError) as e:
            fail(str(e))
        _summary(counts, shards_dir)
        if as_json:
            results.print_json(json_dumps(counts))
    if counts["files"] and not counts["described"] and not counts["skipped"] and counts["failed"]:
        fail(f"nothing was described: all {sum(counts['failed'].values())} files that were tried failed "
             f"(`vfr jobs --db {db}` keeps the counts)")


def _check_ray_options(executor: str, engine: str, shard: Optional[str], data_parallel_size: int,
                       check: bool, ray_address: Optional[str]) -> None:
    if executor != "ray":
        fail(f"--executor must be local or ray, not {executor!r}")
    if engine != "offline":
        fail("--executor ray runs vLLM engines on the cluster: use it with --engine offline (the default)")
    if shard is not None:
        fail("--shard is for hand-made splits; --executor ray splits the files over its workers itself")
    if data_parallel_size != 1:
        fail("with --executor ray, use --workers N for more engines instead of --data-parallel-size")
    if check:
        fail("--check verifies the engine on this machine: run it without --executor ray (on a worker node)")
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError as e:
        fail(f"Ray is not installed ({e}); install the extra: pip install 'vfr[ray]' (or 'ray[data]==2.60.0')")
    from vfr.describe.ray_job import RayJobError, check_reachable

    try:
        check_reachable(ray_address or os.environ.get("RAY_ADDRESS"))
    except RayJobError as e:
        fail(str(e))


class _Progress:
    """One rich bar (stderr): files settled, images/s and errors; or one line per batch with --log-batches."""

    def __init__(self, quiet: bool, log_batches: bool) -> None:
        self.quiet, self.log = quiet, log_batches
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> "_Progress":
        return self

    def _start_bar(self) -> None:
        """On the first update, so a first-contact error is not preceded by an empty bar."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=console)
        self.task = self.bar.add_task("starting", total=None, rate="")
        self.bar.start()

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def update(self, s: dict[str, Any]) -> None:
        rate = (f"{s['images_per_s']} images/s, {s['failed']} errors" if "images_per_s" in s else "")
        if self.bar is None and not (self.quiet or self.log):
            self._start_bar()
        if self.bar is not None:
            label = {"describe": "describing", "ingest": "ingesting"}[s["phase"]]
            self.bar.update(self.task, description=label, total=s["total"], completed=s["done"], rate=rate)
        elif self.log:      # one line per finished batch (and one when the engines start, one for the ingest)
            console.print(f"{s['phase']}: {s['done']}/{s['total']} files settled" + (f"; {rate}" if rate else ""),
                          highlight=False)


def _summary(c: dict[str, Any], shards_dir: Path) -> None:
    failed = c.get("failed") or {}
    ing = c.get("ingest") or {}
    console.print(
        f"job {c.get('job')} {c.get('status')} on {c.get('workers', 0)} Ray worker(s): {c['described']} described, "
        f"{c['skipped']} already done, {c['duplicates']} duplicate files, {sum(failed.values())} failed"
        + (f" ({', '.join(f'{k} {v}' for k, v in failed.items())})" if failed else "")
        + f"; {c.get('images_per_s', 0)} images/s ({c.get('images_per_s_engines_up', 0)} once the engines were up); "
        f"shards in {shards_dir}, {ing.get('ingested_shards', 0)} ingested", highlight=False)
