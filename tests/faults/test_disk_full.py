"""A full disk during `vfr import`, `vfr index` (an update) and `vfr compact`: the command fails with one line
(no traceback), nothing acknowledged is lost, a reader searching throughout never fails and never sees a
deleted id, and the same command run again once there is room finishes the work.

The disk is a real small tmpfs in a private mount namespace (tests/faults/diskfull_driver.py); where the
machine forbids namespaces, a file-size limit makes writes fail instead (EFBIG rather than ENOSPC). Each
round leaves a random fraction of the room the command needs (the seed is printed; VFR_FAULT_SEED repeats a
run), and one round leaves none."""
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.faults.helpers import ENV, REPO, assert_index_matches_store
from vfr.engine import Engine
from vfr.store.store import Store

pytestmark = pytest.mark.integration
SEED = int(os.environ.get("VFR_FAULT_SEED", time.time_ns() % 1_000_000))


def _mode(tmp: Path) -> str:
    if os.environ.get("VFR_DISKFULL_MODE"):
        return os.environ["VFR_DISKFULL_MODE"]
    (tmp / "probe").mkdir()
    try:
        r = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {tmp / 'probe'}"],
                           capture_output=True, timeout=60)
    except OSError:  # no unshare(1) on this machine
        return "rlimit"
    return "tmpfs" if r.returncode == 0 else "rlimit"


def _prepare(template_store: Path, root: Path) -> dict:
    """Three bases: one with an import file to import, one whose store has changes the index lacks, one whose
    index has many deleted rows (compaction work). Each has acknowledged deletes that must never come back."""
    def copy(name: str) -> Engine:
        (root / name).mkdir()
        shutil.copy(template_store, root / name / "s.duckdb")
        shutil.copytree(template_store.with_name("t.index"), root / name / "s.index")
        eng = Engine.open(root / name / "s.duckdb")
        eng.delete(["sample-001"])
        eng.upsert([{"id": "extra-1", "text": "a red kite above a windy beach", "collection": "pets"}])
        return eng

    with Store(template_store, read_only=True) as s:
        recs = list(s.iter_document_records())
    texts = [r.text for r in recs]  # sample texts: their vectors are cached, nothing is encoded
    eng = copy("import")
    eng.close()
    with (root / "import" / "fresh.jsonl").open("w") as f:
        for i in range(300):
            f.write(json.dumps({"id": f"imp-{i}", "text": texts[i % len(texts)], "collection": "imports",
                                "caption": [f"caption {i}", f"another caption {i}"]}) + "\n")
    eng = copy("update")
    eng.close()
    with Store(root / "update" / "s.duckdb") as s:  # store changes only: `vfr index` applies them
        from vfr.store.store import DescriptionRow, ImageRow

        s.upsert([ImageRow(f"new-{i}") for i in range(60)], [DescriptionRow(f"new-{i}", texts[i]) for i in range(60)])
        s.upsert([ImageRow(r.id) for r in recs[100:130]], [DescriptionRow(r.id, texts[i]) for i, r in
                                                            enumerate(recs[100:130])])
        s.delete([r.id for r in recs[140:150]])
    eng = copy("compact")
    gone = [r.id for r in recs[10:50]]  # acknowledged deletes: the index keeps tombstoned rows until compaction
    eng.delete(gone)
    eng.close()
    return {"compact_gone": gone}


@pytest.fixture(scope="module")
def rounds(template_store, tmp_path_factory):
    root = tmp_path_factory.mktemp("diskfull")
    bases = root / "bases"
    bases.mkdir()
    extra = _prepare(template_store, bases)
    mode = _mode(root)
    rng = random.Random(SEED)
    fractions = lambda: [0.0, round(rng.uniform(0.05, 0.9), 3)]  # noqa: E731
    out, mnt, control = root / "out", root / "mnt", root / "control"
    for d in (out, mnt, control):
        d.mkdir()
    gone = {"import": ["sample-001"], "update": ["sample-001"], "compact": ["sample-001", *extra["compact_gone"]]}
    argv = {"import": ["import", "{dir}/fresh.jsonl", "--db", "{db}"], "update": ["index", "--db", "{db}", "-q"],
            "compact": ["compact", "--db", "{db}"]}
    spec = {"mode": mode, "mnt": str(mnt), "base": str(bases), "out": str(out), "control": str(control),
            "ops": {op: {"base": op, "argv": argv[op], "fractions": fractions(), "forbidden": gone[op]} for op in argv}}
    (root / "spec.json").write_text(json.dumps(spec))
    driver = [sys.executable, "-m", "tests.faults.diskfull_driver", str(root / "spec.json")]
    if mode == "tmpfs":
        driver = ["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o size=512m tmpfs "$0" && exec "$@"', str(mnt), *driver]
    r = subprocess.run(driver, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, f"seed {SEED}, mode {mode}: the driver failed:\n{r.stderr[-5000:]}"
    result = json.loads((out / "result.json").read_text())
    return {"result": result, "out": out, "bases": bases, "gone": gone, "mode": mode}


def _expected_import(bases: Path, tmp: Path) -> dict:
    shutil.copy(bases / "import" / "s.duckdb", tmp / "e.duckdb")
    from vfr.describe.schema import RENDERER
    from vfr.store.io import import_file

    with Store(tmp / "e.duckdb") as s:
        import_file(s, bases / "import" / "fresh.jsonl", RENDERER)
    return _content(tmp / "e.duckdb")


def _content(db: Path) -> dict:
    with Store(db, read_only=True) as s:
        q = lambda sql: s.con.execute(sql).fetchall()  # noqa: E731
        return {"fingerprint": s.fingerprint(), "captions": q("SELECT image_id, text FROM captions ORDER BY ALL"),
                "descriptions": q("SELECT image_id, model, prompt_version, text FROM descriptions ORDER BY ALL")}


@pytest.mark.parametrize("op", ["import", "update", "compact"])
def test_disk_full_then_recover(rounds, tmp_path, op):
    info = rounds["result"]["ops"][op]
    context = f"seed {SEED}, mode {rounds['mode']}, {op} needs {info['need']} bytes"
    failures = 0
    for k, rnd in enumerate(info["rounds"]):
        where = f"{context}, round {k} with {rnd['room']} bytes of room"
        failed, recovered = rnd["failed"], rnd["recovered"]
        if failed["rc"] != 0:
            failures += 1
            errors = [line for line in failed["stderr"].splitlines() if line.startswith("error:")]
            assert failed["rc"] == 1 and len(errors) == 1 and "Traceback" not in failed["stderr"], \
                f"{where}: not one clean line:\n{failed['stderr']}"
        assert recovered["rc"] == 0, f"{where}: running the command again did not recover:\n{recovered['stderr']}"
        seen = rnd["reader"]
        assert seen["searches"] > 0 and not seen["errors"], f"{where}: the reader failed: {seen['errors'][:2]}"
        assert not seen["forbidden_hits"], f"{where}: a deleted id came back to the reader: {seen['forbidden_hits'][:5]}"

        db = rounds["out"] / f"diskfull-{op}-{k}" / "s.duckdb"
        eng = Engine.open(db)
        if op == "import":
            assert _content(db) == _expected_import(rounds["bases"], tmp_path), f"{where}: the import is not whole"
            eng.update_index()
        else:
            report = eng.update_index()  # the recovery already brought the index up to date
            assert (report["added"], report["changed"], report["deleted"]) == (0, 0, 0), (where, report)
        ids = assert_index_matches_store(eng, db, gone=rounds["gone"][op])
        assert "extra-1" in ids
        if op == "compact":
            assert _content(db) == _content(rounds["bases"] / "compact" / "s.duckdb"), f"{where}: compaction changed data"
            assert eng.stats()["deleted_rows"] == 0
        if op == "update":
            assert {f"new-{i}" for i in range(60)} <= ids
        eng.close()
    assert failures >= 1, f"{context}: no round ran out of space (rounds: {[r['room'] for r in info['rounds']]})"
