"""The live index: incremental updates, deletion, scopes, compaction and erasure, against fresh full builds."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.live_helpers import assert_equivalent, copy_store, rebuild_copy
from vfr.engine import Engine, EngineError
from vfr.store.store import DescriptionRow, ImageRow, Store

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def eng(template_store, tmp_path):
    e = Engine.open(copy_store(template_store, tmp_path / "live"))
    e.update_index()
    yield e
    e.close()


def _texts(n: int, word: str) -> list[dict]:
    return [{"id": f"{word}-{i}", "text": f"a {word} number {i} standing next to a red bus in the rain",
             "collection": "extra"} for i in range(n)]


def test_update_applies_only_what_changed(eng):
    with Store(eng.db) as s:
        s.upsert([ImageRow("new-1", collection="pets")], [DescriptionRow("new-1", "a purple giraffe on a skateboard")])
        s.upsert([ImageRow("sample-001")], [DescriptionRow("sample-001", "a completely rewritten text about quokkas",
                                                           model="m2")])
        s.delete(["sample-002"])
    assert eng.pending().describe() == "1 added, 1 changed, 1 deleted"  # the stale message says what changed
    report = eng.update_index()
    assert (report["mode"], report["added"], report["changed"], report["deleted"]) == ("update", 1, 1, 1)
    assert eng.search("purple giraffe skateboard", 1)[0].id == "new-1"
    assert eng.search("quokkas", 1, retriever="bm25")[0].id == "sample-001"
    assert "sample-002" not in eng.get(["sample-002"])
    assert eng.pending().total == 0 and eng.update_index()["added"] == 0  # nothing left to do
    with Store(eng.db, read_only=True) as s:  # the two new texts were cached; sample-002's vector went with
        assert s.stats()["cached_embeddings"] == 180 + 2 - 1  # it (erasure); sample-001's first description stays


def test_upsert_is_searchable_when_it_returns_and_equals_a_full_build(eng, tmp_path):
    eng.upsert(_texts(30, "llama"))
    eng.upsert([{"id": "llama-3", "text": "now a text about a windsurfer at sunset", "collection": "extra"}])
    eng.delete(["llama-5", "sample-010", "sample-011"])
    assert eng.search("llama red bus rain", 3, retriever="bm25")[0].id.startswith("llama-")
    assert "llama-5" not in {h.id for h in eng.search("llama number 5", 50, retriever="bm25")}
    assert_equivalent(eng, rebuild_copy(eng.db, tmp_path / "rebuilt"), scopes=(None, "extra", "pets"))


def test_scoped_search_equals_an_index_of_that_collection_alone(eng, tmp_path):
    """Tenancy: a scoped search returns what an engine holding only that collection returns (same ids,
    same scores): no BM25 statistic of another collection leaks in."""
    with Store(eng.db, read_only=True) as s:
        pets = s.ids_in_collection("pets")
    alone = Engine.open(copy_store(eng.db, tmp_path / "alone"), tmp_path / "alone" / "a.index")
    with Store(alone.db) as s:
        s.delete([d for d in s.document_records_after(None, 1000) and
                  [r.id for r in s.document_records_after(None, 1000)] if d not in pets])
    alone.update_index(full=True)
    for q in ["a dog chasing a cat", "cat", "a black labrador waiting by a bowl", "red"]:
        for retriever in ("bm25", "dense", "hybrid"):
            got = [(h.id, h.score) for h in eng.search(q, 10, retriever=retriever, collection="pets")]
            want = [(h.id, h.score) for h in alone.search(q, 10, retriever=retriever)]
            assert [g[0] for g in got] == [w[0] for w in want], (q, retriever)
            assert np.allclose([g[1] for g in got], [w[1] for w in want], rtol=1e-5), (q, retriever)
    assert eng.get(["sample-001"], collection="pets") == {}  # a document of another collection is not there
    alone.close()


def test_a_reader_that_has_the_index_open_sees_a_delete_at_once(eng):
    reader = Engine.open(eng.db)
    assert reader.search("neon OPEN sign diner", 1)[0].id == "sample-126"
    code = ("import sys; from vfr.engine import Engine; Engine.open(sys.argv[1]).delete(['sample-126'])")
    subprocess.run([sys.executable, "-c", code, str(eng.db)], check=True, cwd=REPO, timeout=600)
    for retriever in ("bm25", "dense", "hybrid"):
        assert "sample-126" not in {h.id for h in reader.search("neon OPEN sign diner", 20, retriever=retriever)}
    assert reader.get(["sample-126"]) == {}
    reader.close()


def test_erasure_leaves_no_trace(eng):
    """A canary in one document's text, JSON and caption: after delete + compact, no file under the
    database's folder or the index holds the token or the document's embedding vector."""
    canary = "zqxcanary7731"
    eng.upsert([{"id": "victim", "json": {"caption": f"a {canary} kite over the beach",
                                          "objects": [{"name": f"{canary} kite", "count": 1}],
                                          "setting": {"scene": "beach"}, "visible_text": [canary]},
                 "caption": [f"{canary} caption one", "a kite"], "collection": "people"}])
    hits = eng.search(f"{canary} kite", 1, retriever="bm25")
    assert hits[0].id == "victim"
    needles = [canary.encode(), *_vector_needles(eng, "victim", "image_id='victim'")]
    folder = eng.db.parent
    assert _files_containing(folder, needles[:1]), "the canary should be on disk before erasure"
    eng.delete(["victim"])
    eng.compact()
    found = _files_containing(folder, needles)
    assert not found, f"erased data still on disk in {found}"
    assert eng.search("kite beach", 3)  # still a working engine


def test_retracted_describer_leaves_no_trace(eng):
    """A canary in a second describer's view of an image: after `delete_descriptions` + compact no file holds
    the token or its cached vector, and the image is found by its first describer's text again."""
    canary = "zqxretract5519"
    before = eng.get(["sample-005"])["sample-005"]["text"]
    eng.upsert([{"id": "sample-005", "model": "leaky-vlm", "text": f"a {canary} parade of marching lanterns"}])
    assert eng.search(f"{canary} parade", 1, retriever="bm25")[0].id == "sample-005"
    needles = [canary.encode(), *_vector_needles(eng, "sample-005", "model='leaky-vlm'")]
    done = eng.delete_descriptions("leaky-vlm")
    assert (done["descriptions"], done["images"], done["undescribed"]) == (1, 1, 0)
    assert not eng.search(canary, 3, retriever="bm25")  # no search matches it once this returns
    assert eng.get(["sample-005"])["sample-005"]["text"] == before
    eng.compact()
    found = _files_containing(eng.db.parent, needles)
    assert not found, f"retracted text still on disk in {found}"


def _vector_needles(eng: Engine, doc_id: str, description_sql: str) -> list[bytes]:
    """The first bytes of a document's vector in the index and of its description's cached vector (which
    must be there: the needle would otherwise be missing, not absent)."""
    with eng.index.handle.acquire() as snap:
        seg, row = snap.locate([doc_id])[doc_id]
        vector = snap.segments[seg].dense.vectors(np.array([row]))[0]
    with Store(eng.db, read_only=True) as s:
        (text_hash,) = s.con.execute(f"SELECT text_hash FROM descriptions WHERE {description_sql}").fetchall()[0]
        cached = s.cached_embeddings(eng.index.encoder().spec.cache_key, [text_hash])
    assert cached, f"the vector of {description_sql} should be in the embedding cache"
    return [v.astype("<f4").tobytes()[:64] for v in (vector, *cached.values())]


def _files_containing(folder: Path, needles: list[bytes]) -> list[str]:
    hits = []
    for root, _dirs, files in os.walk(folder):
        for name in files:
            data = (Path(root) / name).read_bytes()
            if any(n in data for n in needles):
                hits.append(os.path.join(root, name))
    return hits


def test_older_format_index_is_refused_with_what_to_do(template_store, tmp_path):
    db = copy_store(template_store, tmp_path)
    legacy = db.with_name("s.index")
    (legacy / "builds" / "x").mkdir(parents=True)
    (legacy / "current").symlink_to("builds/x")
    eng = Engine.open(db)
    with pytest.raises(EngineError, match="older vfr.*vfr index --full"):
        eng.search("dog")
    eng.update_index()  # builds a live index in its place and removes the old layout
    assert eng.search("dog", 1) and not (legacy / "current").exists() and not (legacy / "builds").exists()


def test_many_small_commits_stay_few_segments_and_equal_a_full_build(eng, tmp_path):
    for i in range(12):
        eng.upsert(_texts(3, f"w{i}"))
        if i % 3 == 0:
            eng.delete([f"sample-{i + 20:03d}"])
    segments = eng.index.manifest["segments"]
    assert len(segments) <= 8
    assert_equivalent(eng, rebuild_copy(eng.db, tmp_path / "rebuilt"))


def test_compaction_threshold_rewrites_automatically(eng):
    eng.delete([f"sample-{i:03d}" for i in range(1, 60)])  # a third of the documents
    m = eng.index.manifest
    assert sum(s["deleted"] for s in m["segments"]) == 0 and m["documents"] == 180 - 59
    assert m["last_operation"]["kind"] == "compact"


def test_change_log_is_pruned_at_compaction_and_ids_of_erased_images_go(eng):
    eng.delete(["sample-050"])
    with Store(eng.db, read_only=True) as s:
        assert s.con.execute("SELECT count(*) FROM changes WHERE image_id='sample-050'").fetchall()[0][0] >= 1
    eng.compact()
    with Store(eng.db, read_only=True) as s:
        assert s.con.execute("SELECT count(*) FROM changes").fetchall()[0][0] == 0
    eng.upsert(_texts(1, "after"))  # the log restarts past the pruned point; updates keep working
    assert eng.search("after number 0", 1, retriever="bm25")[0].id == "after-0"


def test_index_of_another_store_is_rebuilt_not_mixed(eng, template_store, tmp_path):
    other = Engine.open(copy_store(template_store, tmp_path / "other"), eng.index_dir)
    with Store(other.db) as s:  # a different store (new uid) pointed at the same index folder
        s.con.execute("UPDATE store_meta SET value = 'another-uid' WHERE key = 'uid'")
    assert other.update_index()["mode"] == "full"
