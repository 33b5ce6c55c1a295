"""The Ray describe job's pieces without Ray: hashing and decoding tasks, the describing actor's shard
writing, retries and fault handling (with a fake engine), counts from shards, resources, the CLI's checks."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from vfr.cli import app
from vfr.describe import ray_job, shards
from vfr.describe.job import JobConfig
from vfr.describe.prompt import prompt_version
from vfr.describe.ray_worker import (PREPARED, WORKER_CRASH, DescribeWorker, Planner, RunFolder, WorkerSpec,
                                     batch_key, prepare_files, to_prepared)
from vfr.describe.reader import ReaderLimits, read
from vfr.store.store import Store
from tests.describe_helpers import FakeEngine, make_bad_files, make_images

LIMITS = ReaderLimits(max_pixels=224 * 224)


def _table(paths) -> pa.Table:
    return pa.table({"idx": list(range(len(paths))), "path": [str(p) for p in paths]})


def _decoded(tmp_path: Path, n: int = 5, bad: bool = False) -> pa.Table:
    paths = make_images(tmp_path / "img", n, sizes=[(64, 48), (300, 200), (800, 600)])
    if bad:
        paths += sorted((tmp_path / "img" / name) for name in make_bad_files(tmp_path / "img", paths[0]))
    return prepare_files(_table(paths), LIMITS, Planner([]))


class Engines:
    """Engine factories that keep their engines, so tests can see what reached them."""

    def __init__(self, **kw) -> None:
        self.kw, self.made = kw, []

    def __call__(self, opts) -> FakeEngine:
        self.made.append(FakeEngine(**self.kw))
        return self.made[-1]


def _worker(tmp_path: Path, engines: Engines, run: str = "r1", crash_limit: int = 1) -> DescribeWorker:
    folder = RunFolder(tmp_path / "out", run)
    folder.claim()
    cfg = JobConfig(model="m", prompt_version=prompt_version(True))
    return DescribeWorker(WorkerSpec(str(tmp_path / "out"), run, "7", None, cfg, True, crash_limit, engines))


def test_prepare_task_matches_the_local_reader(tmp_path):
    paths = make_images(tmp_path / "img", 4, sizes=[(64, 48), (1200, 900)])
    expected = make_bad_files(tmp_path / "img", paths[0])
    bad = sorted(tmp_path / "img" / name for name in expected)
    prepared = prepare_files(_table(paths + bad), LIMITS, Planner([]))
    assert prepared.schema == PREPARED
    rows = prepared.to_pylist()
    assert [r["id"] for r in rows[:4]] == [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    batch = to_prepared(rows)
    assert {Path(e.path).name: e.reason for e in batch.errors} == expected
    for ref, path in zip(batch.refs, paths):
        local = read(path, LIMITS)
        assert (ref.id, ref.width, ref.height, ref.size) == (local.id, local.width, local.height, local.size)
        assert ref.image.tobytes() == local.image.tobytes()        # the engine sees the very same pixels


def test_planner_skips_described_and_duplicate_content_before_decoding(tmp_path):
    paths = make_images(tmp_path / "img", 3, sizes=[(64, 48)])
    (tmp_path / "img" / "copy.jpg").write_bytes(paths[0].read_bytes())
    described = hashlib.sha256(paths[1].read_bytes()).hexdigest()
    planner = Planner([described])
    rows = prepare_files(_table([*paths, tmp_path / "img" / "copy.jpg"]), LIMITS, planner).to_pylist()
    assert [r["status"] for r in rows] == ["todo", "skipped", "todo", "duplicate"]
    assert rows[1]["pixels"] is None and rows[3]["pixels"] is None      # never decoded, never sent
    again = prepare_files(_table([*paths, tmp_path / "img" / "copy.jpg"]), LIMITS, planner).to_pylist()
    assert [r["status"] for r in again] == ["todo", "skipped", "todo", "duplicate"]   # a retried task
    batch = to_prepared(rows)
    assert (len(batch.refs), batch.skipped, batch.duplicates) == (2, 1, 1)


def test_worker_writes_one_shard_per_batch_and_a_retried_batch_reuses_it(tmp_path):
    batch = _decoded(tmp_path, 5, bad=True)
    engines = Engines()
    worker = _worker(tmp_path, engines)
    s = worker(batch).to_pylist()[0]
    assert s["files"] == 9 and s["described"] == 5 and json.loads(s["failed"]) == {
        "corrupt": 1, "empty": 1, "not_image": 1, "truncated": 1}
    files = shards.shard_files(tmp_path / "out")
    assert [f.name for f in files] == [f"shard-ray-r1-{batch_key(batch.to_pylist())}.parquet"]
    images, descs, errors = shards.read_shard(files[0])
    assert len(descs) == 5 and len(errors) == 4 and json.loads(descs[0].meta)["executor"] == "ray"
    calls = len(engines.made[0].calls)
    again = _worker(tmp_path, engines)(batch).to_pylist()[0]      # Ray retrying it on a new actor
    assert again["described"] == 5 and again["recovered"] and len(shards.shard_files(tmp_path / "out")) == 1
    assert not engines.made[1].calls and len(engines.made[0].calls) == calls


def test_batch_in_flight_when_a_worker_died_is_redone_one_image_at_a_time(tmp_path):
    batch = _decoded(tmp_path, 4)
    folder = RunFolder(tmp_path / "out", "r1")
    folder.enter(f"b-{batch_key(batch.to_pylist())}")              # a worker died during this batch
    engines = Engines()
    s = _worker(tmp_path, engines)(batch).to_pylist()[0]
    assert s["recovered"] and s["described"] == 4
    assert [size for size, _ in engines.made[0].calls] == [1, 1, 1, 1]
    assert not list((folder.root / "inflight").iterdir())          # markers are cleared once done


def test_image_that_killed_its_worker_again_is_recorded_not_retried(tmp_path):
    batch = _decoded(tmp_path, 4)
    rows = batch.to_pylist()
    folder = RunFolder(tmp_path / "out", "r1")
    folder.enter(f"b-{batch_key(rows)}")
    folder.enter(f"i-{rows[2]['id']}")                             # it was alone in flight when it died
    engines = Engines()
    s = _worker(tmp_path, engines)(batch).to_pylist()[0]
    assert s["described"] == 3 and json.loads(s["failed"]) == {WORKER_CRASH: 1}
    assert rows[2]["id"] not in engines.made[0].seen
    _, _, errors = shards.read_shard(shards.shard_files(tmp_path / "out")[0])
    assert [(e[0], e[2]) for e in errors] == [(rows[2]["id"], WORKER_CRASH)]


def test_engine_exception_fails_only_its_image(tmp_path):
    batch = _decoded(tmp_path, 4)
    poison = batch.to_pylist()[1]["id"]

    class Raising(FakeEngine):
        def generate(self, refs, retry=False):
            if any(r.id == poison for r in refs):
                raise RuntimeError("CUDA error: illegal memory access")
            return super().generate(refs, retry)

    s = _worker(tmp_path, lambda opts: Raising())(batch).to_pylist()[0]
    assert s["described"] == 3 and json.loads(s["failed"]) == {"engine_error": 1}
    assert "illegal memory access" in json.loads(s["errors"])[0][2]


def test_worker_of_a_superseded_run_stops_writing(tmp_path):
    worker = _worker(tmp_path, Engines(), run="old")
    RunFolder(tmp_path / "out", "new").claim()
    with pytest.raises(RuntimeError, match="no longer current"):
        worker(_decoded(tmp_path, 2))
    assert not shards.shard_files(tmp_path / "out")


def test_killed_run_is_settled_from_its_shards(tmp_path):
    batch = _decoded(tmp_path, 3, bad=True)
    _worker(tmp_path, Engines(), run="r1")(batch)
    assert ray_job.shard_counts(tmp_path / "out", "r1") == {
        "described": 3, "failed": {"corrupt": 1, "empty": 1, "not_image": 1, "truncated": 1}}
    with Store(tmp_path / "db.duckdb") as store:
        killed = store.start_job("describe", {"executor": "ray", "out_dir": str(tmp_path / "out"), "run": "r1"})
        store.update_job(killed, {"files": 7, "described": 1})
        local = store.start_job("describe", {"engine": "offline"})
        ray_job.settle_stale_jobs(store)
        jobs = {j["id"]: j for j in store.jobs()}
    assert jobs[killed]["status"] == "interrupted" and jobs[killed]["counts"]["described"] == 3
    assert jobs[killed]["counts"]["files"] == 7 and jobs[local]["status"] == "interrupted"


@pytest.mark.parametrize("res, opts, expected", [
    ({"CPU": 2.0}, {}, (1, 0.0)),
    ({"CPU": 2.0}, {"workers": 2}, (2, 0.0)),
    ({"CPU": 64.0, "GPU": 8.0}, {}, (8, 1.0)),
    ({"CPU": 64.0, "GPU": 8.0}, {"gpus_per_worker": 2.0}, (4, 2.0)),
])
def test_resources_default_to_one_engine_per_gpu(res, opts, expected):
    assert ray_job.plan_resources(ray_job.RayOptions(**opts), None, res) == expected


@pytest.mark.parametrize("res, opts, message", [
    ({"CPU": 2.0}, {"workers": 3}, "needs 2.5 CPUs"),
    ({"CPU": 8.0, "GPU": 2.0}, {"workers": 4}, "needs 4 GPUs"),
])
def test_impossible_resources_fail_instead_of_waiting_forever(res, opts, message):
    with pytest.raises(ray_job.RayJobError, match=message):
        ray_job.plan_resources(ray_job.RayOptions(**opts), None, res)


@pytest.mark.parametrize("args, message", [
    (["--engine", "server"], "--engine offline"),
    (["--shard", "0/2"], "splits the files over its workers"),
    (["--data-parallel-size", "2"], "--workers N"),
])
def test_cli_rejects_options_the_ray_executor_does_not_take(tmp_path, args, message):
    r = CliRunner().invoke(app, ["describe", str(tmp_path), "--db", str(tmp_path / "db.duckdb"),
                                 "--executor", "ray", *args])
    assert r.exit_code == 1 and message in r.output and "Traceback" not in r.output


def test_cli_rejects_an_unknown_executor(tmp_path):
    r = CliRunner().invoke(app, ["describe", str(tmp_path), "--db", str(tmp_path / "db.duckdb"),
                                 "--executor", "spark"])
    assert r.exit_code == 1 and "--executor must be local or ray" in r.output


def test_block_with_nothing_new_reaches_no_engine_and_writes_no_shard(tmp_path):
    paths = make_images(tmp_path / "img", 3, sizes=[(64, 48)])
    done = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    block = prepare_files(_table(paths), LIMITS, Planner(done))
    engines = Engines()
    s = _worker(tmp_path, engines)(block).to_pylist()[0]
    assert (s["files"], s["skipped"], s["described"], s["shard"]) == (3, 3, 0, "")
    assert not engines.made[0].calls and not shards.shard_files(tmp_path / "out")


def test_an_address_nobody_answers_on_fails_at_once(tmp_path):
    from tests.describe_ray import free_ports

    port = free_ports(1)[0]          # free, so nothing listens there
    with pytest.raises(ray_job.RayJobError, match=f"nothing answers at --ray-address 127.0.0.1:{port}"):
        ray_job.check_reachable(f"127.0.0.1:{port}")


def test_cli_unreachable_cluster_is_one_line_before_anything_is_created(tmp_path):
    from tests.describe_ray import free_ports

    (tmp_path / "img").mkdir()
    make_images(tmp_path / "img", 1, sizes=[(64, 48)])
    port = free_ports(1)[0]
    r = CliRunner().invoke(app, ["describe", str(tmp_path / "img"), "--db", str(tmp_path / "db.duckdb"),
                                 "--executor", "ray", "--ray-address", f"127.0.0.1:{port}"])
    assert r.exit_code == 1 and f"nothing answers at --ray-address 127.0.0.1:{port}" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "db.duckdb").exists()
