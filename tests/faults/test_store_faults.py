"""kill -9 inside `vfr import` and a describe job's batch writes (22 points), with a reader searching throughout.

Each kill lands at a named point (store/faults.py) where the process stops until killed; the test also checks
the evidence that it was mid-write: the process holds the database's write lock, and after the commit the
write-ahead log still holds the transaction. After each kill the store holds all of the import or none of it
(whole describe batches, with job counts that match), nothing acknowledged is lost or duplicated, the next
command finishes the work by itself, and the index then agrees with the store."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from typer.testing import CliRunner

from tests.fault_worker import describe
from tests.faults.helpers import ENV, REPO, assert_index_matches_store, stop_at, store_is_held, wal_bytes
from vfr.cli import app
from vfr.engine import Engine
from vfr.store.store import Store

pytestmark = pytest.mark.integration

IN_TRANSACTION = ("store:upsert-begun", "store:images-written", "store:descriptions-written",
                  "store:captions-written", "store:changes-logged", "describe:errors-written", "describe:counts-written")
IMPORT_POINTS = ["import:parsed", *IN_TRANSACTION[:5], "import:committed"]
# (point, passes let by): a describe job of 12 images writes 3 batches of 4
DESCRIBE_CASES = [("describe:batch-start", 0), ("store:upsert-begun", 0), ("store:images-written", 1),
                  ("store:descriptions-written", 1), ("store:changes-logged", 0), ("describe:errors-written", 1),
                  ("describe:counts-written", 0), ("describe:batch-committed", 1)]


def _state(db: Path) -> dict:
    """What a user stored: current documents, every description, captions, images (no timestamps)."""
    with Store(db, read_only=True) as s:
        q = lambda sql: s.con.execute(sql).fetchall()  # noqa: E731
        return {"fingerprint": s.fingerprint(),
                "descriptions": q("SELECT image_id, model, prompt_version, text FROM descriptions ORDER BY ALL"),
                "captions": q("SELECT image_id, text FROM captions ORDER BY ALL"),
                "images": q("SELECT id, path, collection, size, width, height FROM images ORDER BY ALL")}


def _inputs(root: Path) -> dict[str, Path]:
    """New images, and new texts and captions for existing ones. The texts are other sample documents' (their
    vectors are in the store's embedding cache, so the index updates without encoding)."""
    with Store(root / "s.duckdb", read_only=True) as s:
        texts = [r.text for r in s.document_records_after(None, 100)]
        ids = [r.id for r in s.document_records_after(None, 100)]
    fresh, update = root / "fresh.jsonl", root / "update.jsonl"
    fresh.write_text("".join(json.dumps({"id": f"imp-{i}", "text": t, "collection": "imports",
                                         "caption": [f"first caption {i}", f"second caption {i}"]}) + "\n"
                             for i, t in enumerate(texts[:40])))
    update.write_text("".join(json.dumps({"id": i, "text": t, "caption": [f"replaced caption {i}"]}) + "\n"
                              for i, t in zip(ids[40:60], texts[80:100])))
    return {"fresh": fresh, "update": update}


@pytest.fixture(scope="module")
def base(template_store, tmp_path_factory):
    """A store and index with an acknowledged delete and an acknowledged upsert, plus the import inputs, the
    state each import must leave, and a folder of 12 images."""
    from tests.describe_helpers import make_images

    root = tmp_path_factory.mktemp("storefaults")
    shutil.copy(template_store, root / "s.duckdb")
    shutil.copytree(template_store.with_name("t.index"), root / "s.index")
    eng = Engine.open(root / "s.duckdb")
    eng.delete(["sample-001"])  # acknowledged: must never come back
    eng.upsert([{"id": "extra-1", "text": "a red kite above a windy beach", "collection": "pets"}])
    eng.close()
    inputs = _inputs(root)
    expected = {}
    for name, path in inputs.items():  # the state a finished import leaves (imported once, no crash)
        shutil.copy(root / "s.duckdb", root / f"expect-{name}.duckdb")
        r = _vfr("import", str(path), "--db", str(root / f"expect-{name}.duckdb"))
        assert r.returncode == 0, r.stderr
        expected[name] = _state(root / f"expect-{name}.duckdb")
    make_images(root / "images", 12)
    return {"root": root, "inputs": inputs, "before": _state(root / "s.duckdb"), "expected": expected,
            "images": root / "images"}


def _vfr(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vfr", *args], cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=600)


def _copy(base, tmp_path) -> Path:
    shutil.copy(base["root"] / "s.duckdb", tmp_path / "s.duckdb")
    shutil.copytree(base["root"] / "s.index", tmp_path / "s.index")
    return tmp_path / "s.duckdb"


CASES = [(v, p) for v in ("fresh", "update") for p in IMPORT_POINTS]


@pytest.mark.parametrize("variant,point", CASES, ids=[f"import-{v}@{p}" for v, p in CASES])
def test_kill_import_then_recover(base, reader, tmp_path, variant, point):
    db = _copy(base, tmp_path)
    case = f"import-{variant}-{point}"
    reader.watch(case, db, forbidden={"sample-001"})
    stopped = stop_at(["vfr", "import", str(base["inputs"][variant]), "--db", str(db)], point, tmp_path / "marker")
    assert store_is_held(db), "the import must hold the database at every point"
    if point == "import:committed":
        assert wal_bytes(db) > 0, "after COMMIT the transaction is in the write-ahead log, not yet checkpointed"
    stopped.kill()

    want_after_kill = base["expected"][variant] if point == "import:committed" else base["before"]
    assert _state(db) == want_after_kill, "an import became partly visible (or a committed one was lost)"
    r = CliRunner().invoke(app, ["import", str(base["inputs"][variant]), "--db", str(db)])  # the next command
    assert r.exit_code == 0 and "imported" in r.output, r.output
    assert _state(db) == base["expected"][variant]
    eng = Engine.open(db)
    eng.update_index()
    ids = assert_index_matches_store(eng, db)
    wanted = {json.loads(line)["id"] for line in base["inputs"][variant].read_text().splitlines()}
    assert "extra-1" in ids and wanted <= ids
    eng.close()
    reader.check(case)


@pytest.mark.parametrize("point,skip", DESCRIBE_CASES, ids=[f"describe@{p}#{s + 1}" for p, s in DESCRIBE_CASES])
def test_kill_describe_then_recover(base, reader, tmp_path, point, skip):
    db = _copy(base, tmp_path)
    case = f"describe-{point}-{skip}"
    reader.watch(case, db, forbidden={"sample-001"})
    stopped = stop_at(["tests.fault_worker", str(db), "describe", str(base["images"])], point, tmp_path / "marker",
                      skip=skip)
    committed = skip + (point == "describe:batch-committed")  # whole batches in the store at the kill
    if point in IN_TRANSACTION or point == "describe:batch-committed":
        assert store_is_held(db), "the batch's transaction must hold the database"
    if point == "describe:batch-committed":
        assert wal_bytes(db) > 0
    stopped.kill()

    with Store(db, read_only=True) as s:
        described = s.con.execute("SELECT count(*) FROM descriptions WHERE model = 'fake-vlm'").fetchone()[0]
        job = s.jobs(1)[0]
    assert described == 4 * committed, "a batch was written in part"
    assert job["status"] == "running" and (job["counts"] or {}).get("described", 0) == described, job
    assert _state(db)["fingerprint"]["documents"] == base["before"]["fingerprint"]["documents"] + described

    counts = describe(db, base["images"])  # the next run resumes: skips what was written, describes the rest
    assert (counts["described"], counts["skipped"]) == (12 - described, described)
    with Store(db, read_only=True) as s:
        rows = s.con.execute("SELECT count(*), count(DISTINCT image_id) FROM descriptions "
                             "WHERE model = 'fake-vlm'").fetchone()
        jobs = s.jobs(2)
    assert rows == (12, 12), "an image was described twice or lost"
    assert [j["status"] for j in jobs] == ["done", "interrupted"]
    eng = Engine.open(db)
    eng.update_index()
    assert len(assert_index_matches_store(eng, db)) == base["before"]["fingerprint"]["documents"] + 12
    eng.close()
    reader.check(case)
