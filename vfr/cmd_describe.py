"""`vfr describe`, `vfr ingest`, `vfr jobs` and `vfr dev tiny-vlm`: images → structured descriptions."""
from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from vfr.common import DbOption, console, fail, out, stdout_for_results
from vfr.store.textfiles import json_dumps

ENGINES = ("offline", "server")


def register(app: typer.Typer) -> None:
    app.command("describe")(describe_cmd)
    app.command("ingest")(ingest_cmd)
    app.command("jobs")(jobs_cmd)
    dev = typer.Typer(help="Developer tools: tiny test models and install checks.", no_args_is_help=True)
    dev.command("tiny-vlm")(tiny_vlm_cmd)
    app.add_typer(dev, name="dev")


def describe_cmd(
    db: DbOption,
    paths: Annotated[Optional[list[str]], typer.Argument(help="Image files, folders (recursive), globs, or "
                                                               "@list.txt files.", show_default=False,
                                                         metavar="PATHS")] = None,
    model: Annotated[Optional[str], typer.Option(help="vLLM model (hub name or local folder); server: served name "
                                                      "(default: the first it lists). [default offline: "
                                                      "Qwen/Qwen2.5-VL-3B-Instruct]")] = None,
    engine: Annotated[str, typer.Option(help="offline (vLLM in this process) | server (OpenAI-compatible URL).")] = "offline",
    server_url: Annotated[str, typer.Option(help="Base URL of the OpenAI-compatible API.")] = "http://127.0.0.1:8000/v1",
    batch_size: Annotated[int, typer.Option(min=1, max=100_000, help="Images per engine call and per database transaction.")] = 32,
    collection: Annotated[Optional[str], typer.Option(help="Collection name stored with each image.")] = None,
    no_paths: Annotated[bool, typer.Option("--no-paths", help="Store only content hashes, never file paths.")] = False,
    no_redact: Annotated[bool, typer.Option("--no-redact", help="Keep e-mails, phone numbers, URLs, plates and long "
                                                                 "numbers in visible text (redacted by default).")] = False,
    out_parquet: Annotated[Optional[Path], typer.Option(help="Write Parquet shards here instead of the database "
                                                             "(load them with `vfr ingest`).")] = None,
    shard: Annotated[Optional[str], typer.Option(help="K/N: this worker takes its 1/N share of the files.")] = None,
    model_name: Annotated[Optional[str], typer.Option(help="Name stored with descriptions (default: --model).")] = None,
    max_tokens: Annotated[int, typer.Option(min=16, max=1_000_000, help="Output token budget per image.")] = 1024,
    max_pixels: Annotated[Optional[int], typer.Option(min=1, help="Pixel budget images are downscaled to "
                                                           "(default: the model's, else 1003520).")] = None,
    dtype: Annotated[str, typer.Option(help="Offline: weights dtype (auto, bfloat16, float16, float32).")] = "auto",
    max_model_len: Annotated[int, typer.Option(min=1, help="Offline: context length.")] = 8192,
    tensor_parallel_size: Annotated[int, typer.Option(min=1, help="Offline: GPUs per model replica.")] = 1,
    data_parallel_size: Annotated[int, typer.Option(min=1, help="Offline: model replicas (vLLM data parallel).")] = 1,
    gpu_memory_utilization: Annotated[float, typer.Option(min=0.01, max=1.0, help="Offline: fraction of GPU memory vLLM may use.")] = 0.9,
    concurrency: Annotated[int, typer.Option(min=1, help="Server: requests in flight.")] = 8,
    timeout: Annotated[float, typer.Option(min=0.001, max=86_400.0, help="Server: seconds per request.")] = 120.0,
    seed: Annotated[int, typer.Option(min=0, help="Sampling seed (decoding is greedy; the retry samples).")] = 0,
    read_workers: Annotated[int, typer.Option(min=1, help="Threads hashing and decoding images.")] = 4,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    log_batches: Annotated[bool, typer.Option("--log-batches", help="One line per committed batch on stderr "
                                                                     "(for logs of unattended jobs).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the final counts as JSON on stdout.")] = False,
    check: Annotated[bool, typer.Option("--check", help="Only verify the engine: load it, describe generated "
                                                         "images, print engine, model, device and images/s.")] = False,
    executor: Annotated[str, typer.Option(help="local (this process) | ray (a Ray Data job on a cluster of vLLM "
                                               "workers; needs the ray extra of vfr).")] = "local",
    ray_address: Annotated[Optional[str], typer.Option(help="Ray: cluster address HOST:PORT (default: RAY_ADDRESS, "
                                                            "else a local Ray instance).")] = None,
    workers: Annotated[Optional[int], typer.Option(min=1, help="Ray: vLLM engines, one actor each (default: the "
                                                               "cluster's GPUs / --gpus-per-worker, else 1).")] = None,
    gpus_per_worker: Annotated[Optional[float], typer.Option(min=0, max=1024, help="Ray: GPUs per engine (default: "
                                                                         "--tensor-parallel-size on GPU clusters, "
                                                                         "else 0).")] = None,
    cpus_per_worker: Annotated[float, typer.Option(min=0, max=4096, help="Ray: CPUs reserved per engine actor.")] = 0.5,
) -> None:
    """Describe images with a vision LLM and store structured descriptions (resumable; skips done images).

    Images already described with the same model and prompt version are skipped, so rerunning after an
    interruption (even kill -9) continues where it stopped. Bad files become error rows; the job goes on.
    Pixels are never stored or copied. Inputs, model and database are checked before the engine loads.
    """
    from vfr.describe.prompt import prompt_version

    if engine not in ENGINES:
        fail(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    shard_t = _parse_shard(shard)
    redact = not no_redact
    if executor != "local":   # every option goes by name to the Ray job's front end
        from vfr.cmd_describe_ray import describe_ray
        return describe_ray(**{k: v for k, v in locals().items() if k not in ("shard_t", "redact", "prompt_version")})
    files = None if check else _collect_inputs(paths or [])
    source = _resolve_model(model) if engine == "offline" else None
    if not check:
        _check_output(db, out_parquet)
    with stdout_for_results() as results:
        t_load = time.perf_counter()
        eng = _build_engine(engine, model, server_url, max_tokens, max_pixels, dtype, max_model_len,
                            tensor_parallel_size, data_parallel_size, gpu_memory_utilization, concurrency,
                            timeout, seed)
        if check:
            from vfr.describe.engine_vllm import DEFAULT_MODEL
            label = (model or DEFAULT_MODEL) if engine == "offline" else eng.model
            _run_check(eng, label, min(batch_size, 8), time.perf_counter() - t_load, source, results, as_json)
            return
        stored_model = model_name or _stored_model_name(model if engine == "offline" else eng.model, engine)
        from vfr.describe.describer import ValidatingDescriber
        from vfr.describe.job import JobConfig
        from vfr.describe.reader import ReaderLimits

        cfg = JobConfig(model=stored_model, prompt_version=prompt_version(redact), batch_size=batch_size,
                        collection=collection, keep_paths=not no_paths,
                        limits=ReaderLimits(max_pixels=eng.max_pixels), read_workers=read_workers, shard=shard_t,
                        params={"engine": engine, "options": _options(eng)})
        describer = ValidatingDescriber(eng, redact_text=redact)
        counts = _run_job(files, describer, cfg, db, out_parquet, shard_t, quiet or log_batches, engine, redact,
                          log_batches)
        _summary(counts)
        if as_json:
            results.print_json(json_dumps(counts))
    if counts["files"] and not counts["described"] and not counts["skipped"] and counts["failed"]:
        fail(f"nothing was described: all {sum(counts['failed'].values())} files that were tried failed "
             f"(reasons above; `vfr jobs --db {db}` keeps the counts)")


def _run_job(files: list[Path], describer: Any, cfg: Any, db: Path, out_parquet: Path | None,
             shard: tuple[int, int] | None, quiet: bool, engine: str, redact: bool,
             log_batches: bool = False) -> dict[str, Any]:
    from vfr.describe import job
    from vfr.describe.shards import ShardSink
    from vfr.store.store import DatabaseErrors, StoreError

    note = lambda msg: console.print(f"note: {msg}", highlight=False, markup=False)  # noqa: E731
    worker = f"w{shard[0]}of{shard[1]}" if shard else "w0"
    sink = ShardSink(out_parquet, worker) if out_parquet is not None else job.StoreSink(db, note=note)
    try:
        with _progress(quiet, log_batches) as progress:
            counts = job.run([], describer, sink, cfg, progress, engine, redact, files=files)
        if counts.get("failed") and isinstance(sink, job.StoreSink):
            try:
                counts["errors_sample"] = sink.errors(10)
            except StoreError:   # the job is done; the sample is only for the summary
                counts["errors_sample"] = []
        return counts
    except KeyboardInterrupt:
        fail("interrupted: the batches already written are kept; run the same command again to continue", 130)
    except (StoreError, *DatabaseErrors, OSError) as e:
        fail(f"the job stopped: {str(e).splitlines()[0] if str(e) else type(e).__name__} (the batches already "
             "written are kept; run the same command again to continue)")


def _collect_inputs(paths: list[str]) -> list[Path]:
    """Expand and check the inputs before anything heavy starts (one line and exit 1 if nothing can come of them)."""
    from vfr.describe.inputs import InputError, collect

    try:
        inputs = collect(paths)
    except InputError as e:
        fail(str(e))
    for spec in inputs.empty:
        console.print(f"note: {spec} has no image files", highlight=False, markup=False)
    return inputs.files


def _resolve_model(model: str | None) -> str:
    """Find the offline engine's model before vLLM starts; returns where it will come from."""
    from vfr.describe.engine_vllm import DEFAULT_MODEL
    from vfr.describe.models import ModelNotFound, resolve

    try:
        return resolve(model or DEFAULT_MODEL).source
    except ModelNotFound as e:
        fail(str(e))


def _check_output(db: Path, out_parquet: Path | None) -> None:
    """The database (or shard folder) must be writable, and no other describe job running on it."""
    from vfr.store.store import StoreError

    try:
        if out_parquet is not None:
            from vfr.describe.shards import check_out_dir
            check_out_dir(out_parquet)
        else:
            from vfr.describe.jobstore import check_store
            check_store(db)
    except (StoreError, OSError, ValueError) as e:
        fail(str(e))


def _run_check(eng: Any, model: str, batch: int, load_s: float, source: str | None, results: Any,
               as_json: bool) -> None:
    from vfr.describe import check

    report = {**check.run(eng, model, batch, load_s), "source": source}
    if as_json:
        results.print_json(json_dumps(report))
    else:
        for line in check.lines(report):
            results.print(line, highlight=False, markup=False)
    if not report["ok"]:
        fail("the engine's output did not validate against the schema (see `error` above)")


def _build_engine(engine: str, model: str | None, server_url: str, max_tokens: int, max_pixels: int | None,
                  dtype: str, max_model_len: int, tp: int, dp: int, gpu_mem: float, concurrency: int,
                  timeout: float, seed: int) -> Any:
    if engine == "server":
        from vfr.describe.engine_server import ServerEngine, ServerOptions
        try:
            eng = ServerEngine(ServerOptions(url=server_url, model=model, max_tokens=max_tokens, seed=seed,
                                             concurrency=concurrency, timeout_s=timeout))
        except ConnectionError as e:
            fail(str(e))
        from vfr.describe.reader import DEFAULT_MAX_PIXELS
        eng.max_pixels = max_pixels or DEFAULT_MAX_PIXELS
        return eng
    from vfr.describe.engine_vllm import DEFAULT_MODEL, VllmOptions
    _require_vllm()
    console.print(f"loading {model or DEFAULT_MODEL} with vLLM …")
    return _start_vllm(VllmOptions(model=model or DEFAULT_MODEL, dtype=dtype, max_tokens=max_tokens,
                                   max_model_len=max_model_len, tensor_parallel_size=tp, data_parallel_size=dp,
                                   gpu_memory_utilization=gpu_mem, seed=seed, max_pixels=max_pixels))


def _require_vllm() -> None:
    try:
        import vllm  # noqa: F401
    except ImportError as e:
        fail(f"vLLM is not importable ({e}). GPU: `pip install vllm`; CPU: `bash scripts/install_vllm_cpu.sh .venv`.")


def _start_vllm(opts: Any) -> Any:
    """vLLM's own failures (memory, context length, an architecture it lacks) as one line;
    VFR_DEBUG=1 shows the traceback."""
    from vfr.describe.engine_vllm import VllmEngine
    from vfr.describe.models import engine_failure

    try:
        return VllmEngine(opts)
    except Exception as e:  # noqa: BLE001 - reported in one line; the traceback is one env var away
        if os.environ.get("VFR_DEBUG"):
            raise
        fail(engine_failure(opts.model, e))


def _stored_model_name(model: str | None, engine: str) -> str:
    """Local model folders are stored by absolute path, so `./m` and `/abs/m` resume each other."""
    from vfr.describe.engine_vllm import DEFAULT_MODEL
    model = model or DEFAULT_MODEL
    return os.path.abspath(model) if engine == "offline" and Path(model).is_dir() else model


def _options(eng: Any) -> dict[str, Any]:
    if hasattr(eng, "describe_options"):
        return eng.describe_options()
    o = dict(vars(eng.opts))
    o.pop("api_key", None)
    return o


def _parse_shard(shard: str | None) -> tuple[int, int] | None:
    if shard is None:
        return None
    m = re.fullmatch(r"(\d+)/(\d+)", shard)
    if not m or not 0 <= int(m[1]) < int(m[2]):
        fail(f"--shard must be K/N with 0 <= K < N (e.g. 0/4), not {shard!r}")
    return int(m[1]), int(m[2])


class _progress:
    """A rich progress bar (stderr) that `describe.job.run` drives through callbacks."""

    def __init__(self, quiet: bool, log_batches: bool = False) -> None:
        from vfr.describe.job import Progress
        self.quiet = quiet
        self.bar: Any = None
        self.callbacks = Progress()
        if log_batches:
            state = {"done": 0, "total": 0, "batches": 0}

            def advance(n: int) -> None:
                state["done"] += n
                state["batches"] += 1
                console.print(f"batch {state['batches']} committed: {state['done']}/{state['total']} files",
                              highlight=False)
            self.callbacks = Progress(start=lambda n: state.update(total=n), advance=advance)
        if not quiet:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeRemainingColumn
            self.bar = Bar(TextColumn("describing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                           console=console, transient=False)
            task = self.bar.add_task("describe", total=None)
            self.callbacks = Progress(start=lambda n: self.bar.update(task, total=n),
                                      advance=lambda n: self.bar.advance(task, n))

    def __enter__(self) -> Any:
        if self.bar is not None:
            self.bar.start()
        return self.callbacks

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def _summary(c: dict[str, Any]) -> None:
    failed = c.get("failed") or {}
    console.print(
        f"job {c.get('job')} {c.get('status')}: {c['described']} described, {c['skipped']} already done, "
        f"{c['duplicates']} duplicate files, {sum(failed.values())} failed"
        + (f" ({', '.join(f'{k} {v}' for k, v in failed.items())})" if failed else "")
        + f"; {c['images_per_s']} images/s, {c['tokens_per_s']} tokens/s; stages (s) {c['stages_s']}",
        highlight=False)
    for e in c.get("errors_sample") or []:
        console.print(f"  {e['reason']}: {e['path'] or e['image_id']} ({e['detail']})", highlight=False, markup=False)


def ingest_cmd(
    directory: Annotated[Path, typer.Argument(help="Folder of shard-*.parquet files from `vfr describe --out-parquet`.")],
    db: DbOption,
) -> None:
    """Load description shards into the database; shards already ingested unchanged are skipped.

    The database is open for one shard's transaction at a time, so searches and other commands work
    meanwhile; an interrupted ingest keeps whole shards and the next one continues."""
    from vfr.describe.shards import ShardError, ingest
    from vfr.store.store import DatabaseErrors, StoreError

    note = lambda msg: console.print(f"note: {msg}", highlight=False, markup=False)  # noqa: E731
    try:
        counts = ingest(db, directory, note=note)
    except (StoreError, FileNotFoundError, ShardError) as e:
        fail(str(e))
    except KeyboardInterrupt:
        fail("interrupted: the shards already ingested are kept; run the same command again to continue", 130)
    except (*DatabaseErrors, OSError) as e:
        fail(f"ingest stopped: {str(e).splitlines()[0] if str(e) else type(e).__name__} (the shards already "
             "ingested are kept; run the same command again to continue)")
    console.print(f"ingested {counts['ingested_shards']} shards ({counts['descriptions']} descriptions, "
                  f"{counts['errors']} error rows); {counts['unchanged_shards']} unchanged shards skipped")


def jobs_cmd(db: DbOption, limit: Annotated[int, typer.Option(min=1, help="How many, newest first.")] = 20,
             as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List describe and ingest jobs with their counts."""
    from rich.table import Table

    from vfr.store.store import Store, StoreError

    try:
        with Store(db, read_only=True) as store:
            jobs = store.jobs(limit)
    except StoreError as e:
        fail(str(e))
    if as_json:
        out.print_json(json_dumps(jobs))
        return
    table = Table("id", "kind", "status", "started", "ended", "described", "skipped", "failed", "images/s")
    for j in jobs:
        c = j["counts"] or {}
        failed = c.get("failed", c.get("errors", ""))
        failed = sum(failed.values()) if isinstance(failed, dict) else failed
        table.add_row(str(j["id"]), j["kind"], j["status"], j["started_at"] or "", j["ended_at"] or "",
                      str(c.get("described", c.get("descriptions", ""))), str(c.get("skipped", "")),
                      str(failed), str(c.get("images_per_s", "")))
    out.print(table)


def tiny_vlm_cmd(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the model into.")],
    seed: Annotated[int, typer.Option(min=0, help="Weights and tokenizer are a pure function of the seed.")] = 0,
    check: Annotated[bool, typer.Option("--check", help="Then load it in vLLM and describe one image.")] = False,
) -> None:
    """Build a tiny random-weight Qwen2.5-VL (offline, < 2 MB) for tests and install checks."""
    from vfr.describe import tiny_vlm

    try:
        tiny_vlm.build(out_dir, seed=seed)
    except OSError as e:
        fail(f"cannot write the tiny model to {out_dir} ({e.strerror or e}); pass a writable folder")
    console.print(f"tiny vision LLM written to {out_dir} (fingerprint {tiny_vlm.fingerprint(out_dir)[:16]})")
    if check:
        from PIL import Image

        from vfr.describe.describer import ValidatingDescriber
        from vfr.describe.engine_vllm import VllmOptions
        from vfr.describe.reader import ImageRef

        _require_vllm()
        eng = _start_vllm(VllmOptions(model=str(out_dir), max_model_len=2048, max_tokens=512))
        ref = ImageRef("check", "check", 0, 64, 48, Image.new("RGB", (64, 48), (200, 30, 30)))
        res = ValidatingDescriber(eng).describe([ref])[0]
        if not hasattr(res, "to_text"):
            fail(f"vLLM ran but the output was not a valid description: {res}")
        console.print("vLLM install check passed: the tiny model produced a schema-valid description")


if __name__ == "__main__":  # `python -m vfr.cmd_describe ...`: these commands without the rest of the CLI
    _app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)
    register(_app)
    _app()
