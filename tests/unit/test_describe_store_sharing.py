"""Describe and ingest jobs hold the DuckDB store only for each batch's transaction: real second
processes read and write it while a job runs, and the job still ends with counts that match the rows."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vfr.describe import job, shards
from vfr.describe.describer import ValidatingDescriber
from vfr.describe.job import JobConfig, StoreSink
from vfr.describe.jobstore import JobLock, JobLockError
from vfr.describe.prompt import prompt_version
from vfr.describe.reader import ReaderLimits
from vfr.store.store import Store
from tests.describe_helpers import FakeEngine, make_images

REPO = Path(__file__).resolve().parents[2]
# A generous wait: the job's windows are short, but the machine may be loaded. The old code held the
# store for the whole job, so there these processes failed after this wait with "in use".
ENV = {**os.environ, "PYTHONPATH": str(REPO), "VFR_LOCK_TIMEOUT": "30"}

READER = """
import json, sys
from vfr.store.store import Store
with Store(sys.argv[1], read_only=True) as s:
    job = s.jobs(1)[0]
    n = s.con.execute("SELECT count(*) FROM descriptions WHERE model = 'fake-vlm'").fetchone()[0]
print(json.dumps({"status": job["status"], "described": job["counts"]["described"], "rows": n}))
"""


def _cfg(batch_size=4):
    return JobConfig(model="fake-vlm", prompt_version=prompt_version(True), batch_size=batch_size,
                     limits=ReaderLimits(max_pixels=224 * 224))


def _other_processes(db: Path, tmp_path: Path, tag: str) -> dict:
    """A real writer (`vfr import`) and a real reader, each in its own process, while the job runs."""
    src = tmp_path / f"{tag}.jsonl"
    src.write_text(json.dumps({"id": f"imported-{tag}", "text": f"written by another process {tag}"}) + "\n")
    w = subprocess.run([sys.executable, "-m", "vfr", "import", str(src), "--db", str(db)], env=ENV,
                       capture_output=True, text=True, timeout=300)
    assert w.returncode == 0, w.stderr
    r = subprocess.run([sys.executable, "-c", READER, str(db)], env=ENV, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


class _Meanwhile(FakeEngine):
    """Before describing batch `at`, other processes use the store (the job is mid-run: batches done, more to come)."""

    def __init__(self, at: int, action) -> None:
        super().__init__()
        self.at, self.action, self.seen_mid_run = at, action, None

    def generate(self, batch, retry=False):
        if len(self.calls) == self.at and self.seen_mid_run is None:
            self.seen_mid_run = self.action()
        return super().generate(batch, retry)


def test_other_processes_read_and_write_during_a_describe_job(tmp_path):
    make_images(tmp_path / "img", 12)
    db = tmp_path / "db.duckdb"
    engine = _Meanwhile(2, lambda: _other_processes(db, tmp_path, "a"))
    counts = job.run([tmp_path / "img"], ValidatingDescriber(engine), StoreSink(db), _cfg())
    mid = engine.seen_mid_run
    # the reader saw the running job after two committed batches, with counts that match the rows
    assert mid == {"status": "running", "described": 8, "rows": 8}
    assert counts["described"] == 12 and counts["status"] == "done"
    with Store(db, read_only=True) as s:
        assert s.get(["imported-a"])["imported-a"].text == "written by another process a"
        n = s.con.execute("SELECT count(*) FROM descriptions WHERE model = 'fake-vlm'").fetchone()[0]
        assert n == 12 and s.jobs(1)[0]["counts"]["described"] == 12 and s.jobs(1)[0]["status"] == "done"


def test_other_processes_read_and_write_during_ingest(tmp_path, monkeypatch):
    make_images(tmp_path / "img", 9)
    job.run([tmp_path / "img"], ValidatingDescriber(FakeEngine()), shards.ShardSink(tmp_path / "sh"), _cfg(3))
    db = tmp_path / "db.duckdb"
    real, calls, mid = shards.read_shard, [], {}

    def read_shard(path):
        calls.append(path)
        if len(calls) == 2:   # one shard ingested, two to go
            src = tmp_path / "b.jsonl"
            src.write_text(json.dumps({"id": "imported-b", "text": "written during ingest"}) + "\n")
            w = subprocess.run([sys.executable, "-m", "vfr", "import", str(src), "--db", str(db)], env=ENV,
                               capture_output=True, text=True, timeout=300)
            assert w.returncode == 0, w.stderr
            r = subprocess.run([sys.executable, "-m", "vfr", "jobs", "--db", str(db), "--json"], env=ENV,
                               capture_output=True, text=True, timeout=300)
            assert r.returncode == 0, r.stderr
            mid.update(json.loads(r.stdout)[0])
        return real(path)
    monkeypatch.setattr(shards, "read_shard", read_shard)
    counts = shards.ingest(db, tmp_path / "sh")
    assert mid["kind"] == "ingest" and mid["status"] == "running" and mid["counts"]["descriptions"] == 3
    assert counts["descriptions"] == 9 and counts["ingested_shards"] == 3
    with Store(db, read_only=True) as s:
        assert s.stats()["descriptions"] == 10 and s.get(["imported-b"])
        assert s.jobs(1)[0]["status"] == "done" and s.jobs(1)[0]["counts"]["descriptions"] == 9


def test_one_describe_job_per_store_and_live_jobs_are_not_marked_interrupted(tmp_path):
    make_images(tmp_path / "img", 2)
    db = tmp_path / "db.duckdb"
    with Store(db) as s:
        live = s.start_job("describe", {})   # a job row whose process is alive: it holds the lock below
    with JobLock(db, "describe"):
        with pytest.raises(JobLockError, match="another describe job is running"):
            job.run([tmp_path / "img"], ValidatingDescriber(FakeEngine()), StoreSink(db), _cfg())
    with Store(db, read_only=True) as s:
        assert [(j["id"], j["status"]) for j in s.jobs()] == [(live, "running")]
    counts = job.run([tmp_path / "img"], ValidatingDescriber(FakeEngine()), StoreSink(db), _cfg())
    with Store(db, read_only=True) as s:   # the lock is free now: that job's process is gone
        assert {j["id"]: j["status"] for j in s.jobs()} == {live: "interrupted", int(counts["job"]): "done"}


def test_a_job_waits_for_a_long_writer_and_says_so(tmp_path, monkeypatch):
    """A writer that outlasts VFR_LOCK_TIMEOUT delays a batch; the job notes it and carries on."""
    make_images(tmp_path / "img", 4)
    db = tmp_path / "db.duckdb"
    Store(db).close()
    monkeypatch.setenv("VFR_LOCK_TIMEOUT", "0.2")
    hold = ("import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); "
            "time.sleep(float(sys.argv[2]))")
    notes: list[str] = []
    holders: list[subprocess.Popen] = []

    class Blocked(FakeEngine):
        def generate(self, batch, retry=False):
            if not self.calls:   # a real process takes the write lock for a while, before the first write
                p = subprocess.Popen([sys.executable, "-c", hold, str(db), "3"], stdout=subprocess.PIPE, text=True)
                holders.append(p)
                assert p.stdout.readline().strip() == "held"
            return super().generate(batch, retry)
    counts = job.run([tmp_path / "img"], ValidatingDescriber(Blocked()), StoreSink(db, note=notes.append),
                     _cfg(batch_size=2))
    assert holders[0].wait(60) == 0 and holders[0].stdout.close() is None
    assert counts["described"] == 4 and counts["status"] == "done"
    assert len(notes) >= 1 and "in use by another process" in notes[0] and "VFR_JOB_LOCK_TIMEOUT" in notes[0]
