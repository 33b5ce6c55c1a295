"""kill -9 at named points of index update, delete, compaction, merge and full build (22 points), then
restart: the index agrees with the store (equivalence with a fresh build), nothing is lost or duplicated,
and an acknowledged delete never comes back. Each kill is checked to have landed at its point: the process
writes the point's name to a marker file and stops there until killed."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.live_helpers import assert_equivalent, rebuild_copy
from vfr.engine import Engine
from vfr.store.store import Store

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]

CASES = [
    ("update", "commit:analysed"), ("update", "segment:lucene-written"), ("update", "commit:segment-written"),
    ("update", "commit:lucene-deleted"), ("update", "publish:manifest-written"), ("update", "publish:head-written"),
    ("update", "gc:start"),
    ("delete", "delete:store-committed"), ("delete", "commit:lucene-deleted"), ("delete", "publish:manifest-written"),
    ("delete", "publish:head-written"),
    ("compact", "compact:start"), ("compact", "compact:segment-written"), ("compact", "publish:manifest-written"),
    ("compact", "publish:head-written"), ("compact", "store:copied"), ("compact", "store:replaced"),
    ("merge", "merge:start"), ("merge", "merge:segment-written"),
    ("full", "commit:analysed"), ("full", "segment:lucene-written"), ("full", "publish:manifest-written"),
]


@pytest.fixture(scope="module")
def base(template_store, tmp_path_factory):
    """A store and index with an acknowledged delete and a few extra segments (so compaction has work)."""
    root = tmp_path_factory.mktemp("faultbase")
    db = root / "s.duckdb"
    shutil.copy(template_store, db)
    eng = Engine.open(db)
    eng.update_index()
    eng.delete(["sample-001"])  # acknowledged: must never come back
    eng.upsert([{"id": "extra-1", "text": "a red kite above a windy beach", "collection": "pets"}])
    eng.close()
    return root


def _run_until(db: Path, op: str, point: str, marker: Path) -> subprocess.Popen:
    env = {**os.environ, "VFR_FAULT_POINT": point, "VFR_FAULT_MARKER": str(marker), "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "tests.fault_worker", str(db), op], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("op,point", CASES, ids=[f"{o}@{p}" for o, p in CASES])
def test_kill_at_point_then_recover(base, tmp_path, op, point):
    shutil.copytree(base, tmp_path / "w")
    db = tmp_path / "w" / "s.duckdb"
    marker = tmp_path / "marker"
    proc = _run_until(db, op, point, marker)
    deadline = time.monotonic() + 600
    while not (marker.exists() and point in marker.read_text()):
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"{op} ended without reaching {point}: {err[-2000:]}")
        assert time.monotonic() < deadline, f"{point} not reached in time"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # the process is stopped at the point: the kill lands mid-write
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    eng = Engine.open(db)  # a reader right after the crash: old or new generation, never broken
    assert all(h.id != "sample-001" for h in eng.search("a woman in a red coat walks along a snowy sidewalk", 20))
    eng.close()
    eng = Engine.open(db)  # the next command recovers by itself
    eng.update_index()
    with Store(db, read_only=True) as s:
        in_store = {r.id for r in s.iter_document_records()}
    with eng.index.handle.acquire() as snap:
        indexed = [i for seg, live in zip(snap.segments, snap.live) for i, ok in zip(seg.ids, live) if ok]
    assert len(indexed) == len(set(indexed)), "a document is indexed twice"
    assert set(indexed) == in_store, "the index and the store disagree"
    assert "sample-001" not in in_store and "extra-1" in in_store  # acknowledged writes kept
    assert_equivalent(eng, rebuild_copy(db, tmp_path / "rebuilt"), queries=["a red kite", "dog", "snowy sidewalk"])
    eng.close()
