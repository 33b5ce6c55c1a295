"""kill -9 at named points of index update, delete, retraction of a describer, compaction, merge and full
build (25 points), then restart: the index agrees with the store (equivalence with a fresh build), nothing is
lost or duplicated, and an acknowledged delete never comes back, neither to the reader process that searches
throughout nor after recovery. Each kill is checked to have landed at its point: the process writes the
point's name to a marker file and stops there until killed (tests/faults/conftest.py)."""
import shutil

import pytest

from tests.faults.helpers import assert_index_matches_store, stop_at
from tests.live_helpers import assert_equivalent, rebuild_copy
from vfr.engine import Engine

pytestmark = pytest.mark.integration

CASES = [
    ("update", "commit:analysed"), ("update", "segment:lucene-written"), ("update", "commit:segment-written"),
    ("update", "commit:lucene-deleted"), ("update", "publish:manifest-written"), ("update", "publish:head-written"),
    ("update", "gc:start"),
    ("delete", "delete:store-committed"), ("delete", "commit:lucene-deleted"), ("delete", "publish:manifest-written"),
    ("delete", "publish:head-written"),
    ("retract", "retract:store-committed"), ("retract", "commit:lucene-deleted"), ("retract", "publish:head-written"),
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
    # a second describer (retracted by the "retract" cases): a newer view of one image, the only one of another
    eng.upsert([{"id": "sample-040", "model": "second-vlm", "text": "a yellow tram crosses a stone bridge"},
                {"id": "only-second", "model": "second-vlm", "text": "a green parrot on a wooden perch"}])
    eng.close()
    return root


@pytest.mark.parametrize("op,point", CASES, ids=[f"{o}@{p}" for o, p in CASES])
def test_kill_at_point_then_recover(base, reader, tmp_path, op, point):
    shutil.copytree(base, tmp_path / "w")
    db = tmp_path / "w" / "s.duckdb"
    case = f"{op}-{point}"
    reader.watch(case, db, forbidden={"sample-001"})  # searches all along: before, at and after the kill
    stop_at(["tests.fault_worker", str(db), op], point, tmp_path / "marker").kill()

    eng = Engine.open(db)  # a reader right after the crash: old or new generation, never broken
    assert all(h.id != "sample-001" for h in eng.search("a woman in a red coat walks along a snowy sidewalk", 20))
    eng.close()
    eng = Engine.open(db)  # the next command recovers by itself
    eng.update_index()
    in_store = assert_index_matches_store(eng, db)
    assert "extra-1" in in_store  # acknowledged writes kept
    assert_equivalent(eng, rebuild_copy(db, tmp_path / "rebuilt"), queries=["a red kite", "dog", "snowy sidewalk"])
    eng.close()
    reader.check(case)
