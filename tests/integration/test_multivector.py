"""Multi-vector dense (an index option) on the real stack: sentence vectors beside the whole-text vectors in
every segment, score = (1 − λ)·cos(whole) + λ·max cos(sentence). Search equals brute force over every live
document; after updates, deletes and compactions the live index answers like a fresh build with the same
option, overall and per collection; sentence vectors are erased with their document."""
import shutil

import numpy as np
import pytest

from tests.live_helpers import assert_equivalent, copy_store, replay_changes
from vfr.engine import Engine
from vfr.retrieve.multivector import split_parts
from vfr.retrieve.writer import IndexConfig
from vfr.store.store import Store

pytestmark = pytest.mark.integration
CONFIG = IndexConfig(parts="sentences", parts_weight=0.4)
QUERIES = ["a dog chasing a cat", "neon OPEN sign in a diner window", "red car parked next to a blue truck",
           "snowy mountain lake at sunrise", "a bowl of ramen", "zebra"]


@pytest.fixture(scope="module")
def engine(template_store, tmp_path_factory):
    db = copy_store(template_store, tmp_path_factory.mktemp("mv"))
    eng = Engine.open(db)
    eng.update_index(full=True, config=CONFIG)
    yield eng
    eng.close()


def _brute_force(eng, query: str, k: int, collection: str | None = None) -> list[str]:
    enc = eng.index.encoder()
    q = enc.encode([query])[0]
    scores = {}
    with eng.index.handle.acquire() as snap:
        for seg, live, parts in zip(snap.segments, snap.masks(None), snap.parts):
            for r in np.flatnonzero(live):
                if collection is not None and seg.collections[r] != collection:
                    continue
                whole = float(seg.dense.vectors(np.array([r]))[0] @ q)
                best = float(np.max(parts.vectors_of([r])[0] @ q))
                scores[seg.ids[r]] = 0.6 * whole + 0.4 * best
    return [d for d, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


def test_option_is_recorded_and_every_sentence_has_a_vector(engine):
    m = engine.index.manifest
    assert m["config"]["parts"] == "sentences" and m["config"]["parts_weight"] == 0.4
    with engine.index.handle.acquire() as snap:
        seg, parts = snap.segments[0], snap.parts[0]
        texts = [engine.get([i])[i]["text"] for i in seg.ids[:5]]
        assert [int(n) for n in np.diff(parts.offsets)[:5]] == [len(split_parts(t)) for t in texts]
        one = engine.index.encoder().encode([split_parts(texts[0])[-1]])[0]
        assert float(parts.vectors_of([0])[0][-1] @ one) == pytest.approx(1.0, abs=1e-4)


def test_search_equals_brute_force_and_differs_from_whole_text(engine, template_store, tmp_path):
    dense = engine.backend("dense")
    for q in QUERIES:
        got = [h.id for h in dense.search(q, 10)]
        assert got == _brute_force(engine, q, 10), q
        scores = dense.score(q, got)
        assert [round(scores[d], 5) for d in got] == [round(h.score, 5) for h in dense.search(q, 10)]
    plain = Engine.open(copy_store(template_store, tmp_path))
    plain.update_index(full=True)
    try:
        assert any([h.id for h in plain.search(q, 10, retriever="dense")] != [h.id for h in dense.search(q, 10)]
                   for q in QUERIES)
        assert engine.search("neon OPEN sign", 5)  # the hybrid runs over the multi-vector dense side
    finally:
        plain.close()


def test_live_updates_equal_a_fresh_build_and_erase_sentence_vectors(engine, tmp_path):
    db = tmp_path / "live.duckdb"
    shutil.copy(engine.db, db)  # its embedding cache holds the sentence vectors already
    with Store(db) as s:
        records = s.document_records_after(None, 1000)
        s.delete([r.id for r in records][40:])
    eng = Engine.open(db)
    eng.update_index(full=True, config=CONFIG)
    replay_changes(eng)
    rebuilt_dir = tmp_path / "rebuilt"
    rebuilt_dir.mkdir()
    shutil.copy(db, rebuilt_dir / "r.duckdb")
    rebuilt = Engine.open(rebuilt_dir / "r.duckdb", rebuilt_dir / "r.index")
    rebuilt.update_index(full=True, config=CONFIG)
    try:
        assert len(eng.index.manifest["segments"]) > 1
        assert_equivalent(eng, rebuilt, QUERIES, k=10, scopes=(None, "B"))
        assert [h.id for h in eng.search("red car blue truck", 1, retriever="dense", collection="B")] == ["n2"]
        with Store(db) as s:
            n2 = s.document_records(["n2"])["n2"].text_hash
        eng.delete(["n2"])
        eng.compact()
        assert len(eng.index.manifest["segments"]) == 1
        for q in QUERIES[:3]:  # the compacted segment's copied sentence vectors answer exactly
            assert [h.id for h in eng.search(q, 10, retriever="dense")] == _brute_force(eng, q, 10)
        with Store(db, read_only=True) as s:
            left = s.con.execute("SELECT count(*) FROM embeddings WHERE text_hash = ?", [n2]).fetchall()[0][0]
        assert left == 0  # the whole-text and the sentence vectors are gone with the description
        assert "n2" not in {h.id for h in eng.search("red car blue truck", 50, retriever="dense")}
    finally:
        eng.close()
        rebuilt.close()


def test_bad_options_are_refused():
    for bad in ({"parts": "words"}, {"parts": "sentences", "parts_weight": 0.0},
                {"parts": "sentences", "parts_weight": 1.5}):
        with pytest.raises(ValueError, match="parts"):
            IndexConfig(**bad)
