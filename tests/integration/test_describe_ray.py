"""`vfr describe --executor ray` on a real local Ray cluster (2 CPUs, loopback) with 2 vLLM actors running
the tiny model: correctness against the single-process job, and faults (a killed actor, a killed driver,
an image that kills its worker every time)."""
from __future__ import annotations

import functools
import hashlib
import json
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

from vfr.store.store import Store
from tests.describe_helpers import make_bad_files, make_images
from tests.describe_ray import describe_cmd, poison_engine, ray_cluster, ray_env  # noqa: F401 - fixtures
from tests.describe_vllm import tiny_model  # noqa: F401 - fixture

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SIZES = [(64, 48), (224, 224), (300, 200), (640, 480), (97, 333), (1200, 900), (28, 28), (2000, 20)]


def _json_out(stdout: str):
    """The JSON document printed last on stdout (anything printed before it is not ours to parse)."""
    start = min(i for i in (stdout.find("\n{"), stdout.find("\n[")) if i >= 0) if not stdout.startswith(("{", "[")) else -1
    return json.loads(stdout[start + 1:])


def _run(cmd: list[str], timeout: float = 900) -> dict:
    r = subprocess.run(cmd, env=ray_env(), capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return _json_out(r.stdout)


def _content_shards(out: Path) -> list[Path]:
    return [p for p in out.glob("shard-ray-*.parquet") if not p.name.endswith("-read.parquet")]


def _described_in_shards(out: Path) -> Counter:
    ids: Counter = Counter()
    for f in out.glob("shard-*.parquet"):
        ids.update(r["image_id"] for r in pq.read_table(f, columns=["kind", "image_id"]).to_pylist()
                   if r["kind"] == "description")
    return ids


def _wait_for(cond, timeout: float = 600, what: str = "") -> None:
    deadline = time.time() + timeout
    while not cond():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _check_store(db: Path, n: int) -> list[dict]:
    """Every image described exactly once, and the describe jobs' `described` counts add up to that."""
    with Store(db, read_only=True) as store:
        rows = store.con.execute("SELECT image_id, count(*) FROM descriptions GROUP BY 1").fetchall()
        assert len(rows) == n and all(c == 1 for _, c in rows)
        assert store.con.execute("SELECT count(*) FROM images").fetchone()[0] == n
        jobs = [j for j in store.jobs() if j["kind"] == "describe"]
    assert sum(j["counts"]["described"] for j in jobs) == n
    return jobs


def test_ray_job_describes_every_image_once_like_the_local_job(tmp_path, tiny_model, ray_cluster):
    img = tmp_path / "img"
    good = make_images(img, 10, sizes=SIZES)
    bad = make_bad_files(img, good[1])
    shutil.copy(good[0], img / "same-bytes.jpg")
    db = tmp_path / "ray.duckdb"
    c = _run(describe_cmd(img, db, tiny_model, "--batch-size", "3", "--json", "--quiet", address=ray_cluster))
    assert c["status"] == "done" and c["executor"] == "ray" and c["workers"] == 2
    assert c["described"] == 10 and c["duplicates"] == 1 and c["skipped"] == 0
    assert c["failed"] == {reason: 1 for reason in bad.values()}
    assert c["files"] == c["described"] + c["skipped"] + c["duplicates"] + sum(c["failed"].values()) == 15
    assert c["completion_tokens"] > 0 and c["ingest"]["descriptions"] == 10
    _check_store(db, 10)

    local_db = tmp_path / "local.duckdb"
    _run(describe_cmd(img, local_db, tiny_model, "--batch-size", "3", "--json", "--quiet"))
    query = "SELECT image_id, model, prompt_version, json, text FROM descriptions ORDER BY image_id"
    with Store(db, read_only=True) as ray_store, Store(local_db, read_only=True) as local_store:
        ray_rows, local_rows = ray_store.con.execute(query).fetchall(), local_store.con.execute(query).fetchall()
        assert len(ray_rows) == 10 and ray_rows == local_rows     # greedy decoding: the same stored JSON
        errors = ray_store.con.execute("SELECT path, reason FROM job_errors").fetchall()
    assert {(Path(p).name, r) for p, r in errors} == set(bad.items())

    jobs = subprocess.run([*describe_cmd(img, db, tiny_model)[:3], "jobs", "--db", str(db), "--json"],
                          env=ray_env(), capture_output=True, text=True, timeout=120)
    listed = {j["kind"]: j for j in _json_out(jobs.stdout)}
    assert listed["describe"]["status"] == "done" and listed["describe"]["params"]["executor"] == "ray"
    assert listed["describe"]["counts"]["described"] == 10 and listed["ingest"]["counts"]["descriptions"] == 10


def test_killed_actor_batch_is_redone_nothing_lost_nothing_twice(tmp_path, tiny_model, ray_cluster):
    n, batch = 40, 2
    img, db = tmp_path / "img", tmp_path / "db.duckdb"
    make_images(img, n, seed=1, sizes=SIZES)
    out = db.with_name(db.name + ".shards")
    proc = subprocess.Popen(describe_cmd(img, db, tiny_model, "--batch-size", str(batch), "--json", "--quiet",
                                         address=ray_cluster), env=ray_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        def busy_worker() -> dict | None:
            for f in out.glob("_ray/*/workers/*.json"):
                w = json.loads(f.read_text())
                if w.get("current") and psutil.pid_exists(w["pid"]):
                    return w
            return None
        _wait_for(lambda: len(_content_shards(out)) >= 2 and busy_worker(), what="a worker mid-batch")
        victim = busy_worker()
        assert "DescribeWorker" in " ".join(psutil.Process(victim["pid"]).cmdline())   # a Ray actor of ours
        at_kill = len(_content_shards(out))
        psutil.Process(victim["pid"]).send_signal(signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=900)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr[-3000:]
    c = _json_out(stdout)
    print(f"actor {victim['pid']} killed with {at_kill}/{n // batch} shards written; counts {c}")
    assert 2 <= at_kill < n // batch                                  # the kill landed mid-run
    assert c["recovered_batches"] >= 1 and c["worker_starts"] >= 3   # its batch was redone by a new actor
    assert c["described"] == n and c["shards"] == n // batch and c["failed"] == {}
    assert set(_described_in_shards(out).values()) == {1}           # no image twice, even in the shards
    _check_store(db, n)

    again = _run(describe_cmd(img, db, tiny_model, "--batch-size", str(batch), "--json", "--quiet",
                              address=ray_cluster))
    assert again["described"] == 0 and again["skipped"] == n and again["ingest"]["ingested_shards"] == 0
    _check_store(db, n)


def test_killed_driver_rerun_finishes_the_rest(tmp_path, tiny_model, ray_cluster):
    n, batch = 40, 2
    img, db = tmp_path / "img", tmp_path / "db.duckdb"
    make_images(img, n, seed=2, sizes=SIZES)
    out = db.with_name(db.name + ".shards")
    cmd = describe_cmd(img, db, tiny_model, "--batch-size", str(batch), "--json", "--quiet", address=ray_cluster)
    proc = subprocess.Popen(cmd, env=ray_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: len(_content_shards(out)) >= 2, what="the first shards")
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
    finally:
        proc.kill()
    at_kill = _described_in_shards(out)
    assert 2 * batch <= sum(at_kill.values()) < n                      # the kill landed mid-run
    with Store(db, read_only=True) as store:
        assert store.jobs()[0]["status"] == "running"                  # nobody finished the killed job's row

    c = _run(cmd)
    print(f"driver killed with {sum(at_kill.values())}/{n} images in shards; rerun counts {c}")
    assert c["status"] == "done" and c["skipped"] >= sum(at_kill.values())
    assert c["described"] + c["skipped"] == n and c["failed"] == {}
    assert set(_described_in_shards(out).values()) == {1}             # nothing described twice
    jobs = _check_store(db, n)
    killed = jobs[-1]
    assert killed["status"] == "interrupted" and killed["counts"]["described"] == n - c["described"]


def test_image_that_keeps_killing_its_worker_is_an_error_and_the_job_goes_on(tmp_path, tiny_model, ray_cluster):
    from vfr.describe import ray_job
    from vfr.describe.engine_vllm import VllmOptions, model_max_pixels
    from vfr.describe.job import JobConfig
    from vfr.describe.prompt import prompt_version
    from vfr.describe.reader import ReaderLimits

    img = tmp_path / "img"
    paths = make_images(img, 7, seed=3, sizes=SIZES)
    poison = hashlib.sha256(paths[3].read_bytes()).hexdigest()
    cfg = JobConfig(model=str(tiny_model), prompt_version=prompt_version(True), batch_size=4,
                    limits=ReaderLimits(max_pixels=model_max_pixels(str(tiny_model))))
    opts = ray_job.RayOptions(address=ray_cluster, workers=2,
                              engine_factory=functools.partial(poison_engine, poison=(poison,)))
    db = tmp_path / "db.duckdb"
    c = ray_job.run([img], db, tmp_path / "shards", cfg, VllmOptions(model=str(tiny_model), max_model_len=4096), opts)
    print(f"counts with a poison image: {c}")
    assert c["status"] == "done" and c["described"] == 6 and c["failed"] == {"worker_crash": 1}
    assert c["recovered_batches"] >= 1 and c["worker_starts"] >= 4     # it killed its worker twice
    with Store(db, read_only=True) as store:
        assert store.con.execute("SELECT image_id, reason FROM job_errors").fetchall() == [(poison, "worker_crash")]
    _check_store(db, 6)
