"""The describe pipeline with a fake engine: writes, resume, dedupe, errors, retry, shards and ingest."""
from __future__ import annotations

import json
import shutil

import pytest

from vfr.describe import job
from vfr.describe.describer import ValidatingDescriber
from vfr.describe.job import JobConfig, StoreSink
from vfr.describe.prompt import prompt_version
from vfr.describe.reader import ReaderLimits
from vfr.describe.schema import SceneDescription
from vfr.describe.shards import ShardSink, ingest
from vfr.store.store import Store
from tests.describe_helpers import FakeEngine, make_bad_files, make_images


def _cfg(**kw):
    return JobConfig(model="fake-vlm", prompt_version=prompt_version(True), batch_size=kw.pop("batch_size", 4),
                     limits=ReaderLimits(max_pixels=224 * 224), **kw)


def _run(store, paths, engine=None, **kw):
    engine = engine or FakeEngine()
    return job.run(paths, ValidatingDescriber(engine), StoreSink(store), _cfg(**kw)), engine


def test_describes_writes_and_resumes(tmp_path):
    imgs = make_images(tmp_path / "img", 10)
    with Store(tmp_path / "db.duckdb") as store:
        counts, _ = _run(store, [tmp_path / "img"], collection="c1")
        assert counts["described"] == 10 and counts["status"] == "done" and counts["failed"] == {}
        docs = store.get([store.con.execute("SELECT min(id) FROM images").fetchone()[0]])
        doc = next(iter(docs.values()))
        SceneDescription.model_validate(doc.json)
        assert doc.model == "fake-vlm" and doc.collection == "c1" and doc.path.startswith(str(tmp_path))
        assert "[phone]" in doc.text and "555" not in doc.text          # redacted by default
        again, engine = _run(store, [tmp_path / "img"])
        assert again["described"] == 0 and again["skipped"] == 10 and engine.calls == []
        jobs = store.jobs()
        assert [j["status"] for j in jobs] == ["done", "done"] and jobs[1]["counts"]["described"] == 10
        assert set(jobs[1]["counts"]["stages_s"]) == {"read", "engine", "validate", "write"}
    assert len(imgs) == 10


def test_duplicates_by_content_described_once(tmp_path):
    imgs = make_images(tmp_path / "img", 3)
    shutil.copy(imgs[0], tmp_path / "img" / "copy.jpg")
    shutil.copy(imgs[0], tmp_path / "img" / "copy2.png")  # same bytes, other name and suffix
    with Store(tmp_path / "db.duckdb") as store:
        counts, engine = _run(store, [tmp_path / "img"])
        assert counts["described"] == 3 and counts["duplicates"] == 2
        assert sum(n for n, _ in engine.calls) == 3
        assert store.stats()["descriptions"] == 3


def test_bad_files_are_error_rows_and_job_goes_on(tmp_path):
    good = make_images(tmp_path / "img", 4, sizes=[(300, 200)])
    expected = make_bad_files(tmp_path / "img", good[1])
    with Store(tmp_path / "db.duckdb") as store:
        counts, _ = _run(store, [tmp_path / "img", tmp_path / "img" / "missing.jpg"], batch_size=2)
        assert counts["described"] == 4
        assert counts["failed"] == {"corrupt": 1, "empty": 1, "not_image": 1, "truncated": 1, "unreadable": 1}
        errors = store.job_errors(int(counts["job"]))
        by_name = {e["path"].rsplit("/", 1)[-1]: e["reason"] for e in errors}
        assert {k: by_name[k] for k in expected} == expected


def test_invalid_output_retried_once_then_error_never_stored(tmp_path):
    make_images(tmp_path / "img", 6, sizes=[(64, 64)])
    with Store(tmp_path / "db.duckdb") as store:
        probe = FakeEngine()
        job.run([tmp_path / "img"], ValidatingDescriber(probe), _MemorySink(), _cfg())
        all_ids = sorted(probe.seen)
        flaky, broken = all_ids[0], all_ids[1]
        engine = _Both(FakeEngine(bad={flaky}, bad_rounds=1), FakeEngine(bad={broken}, bad_rounds=99))
        c1, _ = _run(store, [tmp_path / "img"], engine=engine)
        assert c1["described"] == 5 and c1["failed"] == {"invalid_output": 1} and c1["retried"] == 2
        stored = {r[0] for r in store.con.execute("SELECT image_id FROM descriptions").fetchall()}
        assert flaky in stored and broken not in stored
        err = store.job_errors(int(c1["job"]))[0]
        assert err["image_id"] == broken and "max_tokens" in err["detail"]


def test_no_paths_keeps_only_hashes(tmp_path):
    make_images(tmp_path / "img", 2)
    (tmp_path / "img" / "zero.jpg").write_bytes(b"")
    with Store(tmp_path / "db.duckdb") as store:
        counts, _ = _run(store, [tmp_path / "img"], keep_paths=False)
        assert store.con.execute("SELECT count(*) FROM images WHERE path IS NOT NULL").fetchone()[0] == 0
        assert all(e["path"] is None for e in store.job_errors(int(counts["job"])))
        assert store.jobs()[0]["params"]["paths"] is False


def test_interrupt_keeps_whole_batches_and_rerun_completes(tmp_path):
    make_images(tmp_path / "img", 12)
    with Store(tmp_path / "db.duckdb") as store:
        with pytest.raises(KeyboardInterrupt):
            _run(store, [tmp_path / "img"], engine=FakeEngine(fail_after=2), batch_size=4)
        assert store.stats()["descriptions"] == 8
        assert store.jobs()[0]["status"] == "interrupted"
        counts, _ = _run(store, [tmp_path / "img"], batch_size=4)
        assert counts["described"] == 4 and counts["skipped"] == 8
        assert store.stats()["descriptions"] == 12


def test_stale_running_job_marked_interrupted(tmp_path):
    make_images(tmp_path / "img", 1)
    with Store(tmp_path / "db.duckdb") as store:
        stale = store.start_job("describe", {})
        _run(store, [tmp_path / "img"])
        assert {j["id"]: j["status"] for j in store.jobs()}[stale] == "interrupted"


def test_shards_partition_resume_and_idempotent_ingest(tmp_path):
    make_images(tmp_path / "img", 9)
    (tmp_path / "img" / "zero.jpg").write_bytes(b"")
    out = tmp_path / "shards"
    totals = 0
    for k in range(3):
        c = job.run([tmp_path / "img"], ValidatingDescriber(FakeEngine()), ShardSink(out, f"w{k}of3"),
                    _cfg(shard=(k, 3), batch_size=2))
        totals += c["described"]
        again = job.run([tmp_path / "img"], ValidatingDescriber(FakeEngine()), ShardSink(out, f"w{k}of3"),
                        _cfg(shard=(k, 3), batch_size=2))
        assert again["described"] == 0 and again["skipped"] == c["described"]
    assert totals == 9
    assert len(list(out.glob("job-*.json"))) == 6
    assert not list(out.glob(".tmp-*"))
    with Store(tmp_path / "db.duckdb") as store:
        first = ingest(store, out)
        assert first["descriptions"] == 9 and first["errors"] == 2  # zero.jpg, once per run
        second = ingest(store, out)
        assert second["ingested_shards"] == 0 and second["unchanged_shards"] == first["shards"]
        assert store.stats()["descriptions"] == 9 and store.stats()["images"] == 9
        assert [j["kind"] for j in store.jobs()] == ["ingest", "ingest"]


class _MemorySink:
    def begin(self, params):
        return "mem"

    def done_ids(self, model, prompt_version, ids):
        return set()

    def write(self, images, descriptions, errors, counts):
        pass

    def end(self, counts, status):
        pass


class _Both:
    """Applies two fakes' failure rules: an image is bad if either says so."""

    name = "fake"

    def __init__(self, a, b):
        self.a, self.b = a, b

    def generate(self, batch, retry=False):
        ga, gb = self.a.generate(batch, retry), self.b.generate(batch, retry)
        return [x if x.finish_reason == "length" else y for x, y in zip(ga, gb)]


def test_job_params_recorded(tmp_path):
    make_images(tmp_path / "img", 1)
    with Store(tmp_path / "db.duckdb") as store:
        _run(store, [tmp_path / "img"], params={"engine": "fake"})
        p = store.jobs()[0]["params"]
        assert p["model"] == "fake-vlm" and p["engine"] == "fake" and p["batch_size"] == 4
        json.dumps(p)
