"""Field-aware BM25 (an index option) on the real stack: the structured description's fields as Lucene fields,
scored as plain BM25 + Σ w_f · BM25_f. Exact scores equal Lucene's own on a fresh index; after updates,
deletes and compactions the live index answers like a fresh build with the same option, overall and per
collection; the option is in the manifest and survives incremental updates."""
import shutil

import pytest

from tests.live_helpers import assert_equivalent, copy_store, ranking
from vfr.engine import Engine
from vfr.retrieve import lucene
from vfr.retrieve.fields import LUCENE_PREFIX, document_fields, parse_weights
from vfr.retrieve.writer import IndexConfig
from vfr.store.store import DescriptionRow, ImageRow, Store

pytestmark = pytest.mark.integration
FIELDS = parse_weights("caption=0.5,objects=0.3,attributes=0.2,relations=0.2,text=1.0,setting=0.2")
CONFIG = IndexConfig(fields=FIELDS)
QUERIES = ["a dog chasing a cat", "neon OPEN sign in a diner window", "red car parked next to a blue truck",
           "snowy mountain lake at sunrise", "woman red coat umbrella", "zebra"]


@pytest.fixture(scope="module")
def engine(template_store, tmp_path_factory):
    db = copy_store(template_store, tmp_path_factory.mktemp("fields"))
    eng = Engine.open(db)
    eng.update_index(full=True, config=CONFIG)
    yield eng
    eng.close()


def test_option_is_recorded_and_each_segment_has_its_field_forward_indexes(engine):
    m = engine.index.manifest
    assert [tuple(f) for f in m["config"]["fields"]] == list(FIELDS)
    seg = engine.index_dir / "segments" / m["segments"][0]["name"]
    assert {p.name for p in seg.glob("forward-*.npz")} == {f"forward-{n}.npz" for n, _ in FIELDS}


def test_exact_scores_equal_lucenes_multi_field_query(engine):
    sparse = engine.backend("bm25")
    fields = [(LUCENE_PREFIX + n, w) for n, w in FIELDS]
    with engine.index.handle.acquire() as snap:
        for q in QUERIES:
            docs, lscores = snap.lucene.top(snap.lucene.build_query(lucene.query_terms(q), None, fields), 50)
            seg, rows = snap.lucene_rows(docs)
            ids = [snap.segments[s].ids[r] for s, r in zip(seg.tolist(), rows.tolist())]
            exact = sparse.score(q, ids)
            for i, ls in zip(ids, lscores):
                assert exact[i] == pytest.approx(ls, rel=1e-5), (q, i)
            hits = sparse.search(q, 10)
            assert [h.id for h in hits] == sorted(ids, key=lambda d: (-exact[d], d))[:10]


def test_fields_change_the_ranking_where_a_field_matches(engine, template_store, tmp_path):
    plain = Engine.open(copy_store(template_store, tmp_path))
    plain.update_index(full=True)
    try:
        q = "neon OPEN sign"
        with_fields = {h.id: h.score for h in engine.search(q, 20, retriever="bm25")}
        without = {h.id: h.score for h in plain.search(q, 20, retriever="bm25")}
        top = max(with_fields, key=with_fields.get)
        payload = engine.get([top])[top]
        assert "open" in document_fields(payload["text"], payload["json"])["text"].lower()
        assert with_fields[top] > without[top]  # the visible-text field adds to the plain score
    finally:
        plain.close()


def test_live_updates_equal_a_fresh_build_with_the_same_fields(template_store, tmp_path):
    db = copy_store(template_store, tmp_path / "live")
    with Store(db) as s:
        records = s.document_records_after(None, 1000)
        s.delete([r.id for r in records][30:])
    eng = Engine.open(db)
    eng.update_index(full=True, config=CONFIG)
    texts = [r.text for r in records]
    with Store(db) as s:  # a changed document, a new one in another collection, one with no structure
        s.upsert([ImageRow("n1", collection="B"), ImageRow("n2", collection="B"), ImageRow(records[3].id)],
                 [DescriptionRow("n1", texts[100]), DescriptionRow("n2", "A red car next to a blue truck. Snow."),
                  DescriptionRow(records[3].id, texts[120])])
    eng.update_index()
    eng.delete([records[5].id, records[6].id])
    with Store(db) as s:
        s.upsert([ImageRow("n3", collection="B")], [DescriptionRow("n3", texts[150])])
    eng.update_index()
    assert [tuple(f) for f in eng.index.manifest["config"]["fields"]] == list(FIELDS)  # kept by updates
    assert len(eng.index.manifest["segments"]) > 1
    rebuilt_dir = tmp_path / "rebuilt"
    rebuilt_dir.mkdir()
    shutil.copy(db, rebuilt_dir / "r.duckdb")
    rebuilt = Engine.open(rebuilt_dir / "r.duckdb", rebuilt_dir / "r.index")
    rebuilt.update_index(full=True, config=CONFIG)
    try:
        assert_equivalent(eng, rebuilt, QUERIES, k=10, scopes=(None, "B"))
        eng.compact()
        assert len(eng.index.manifest["segments"]) == 1
        assert_equivalent(eng, rebuilt, QUERIES, k=10, scopes=(None, "B"))
        assert ranking(eng.search("red car blue truck", 3, retriever="bm25", collection="B"))[0][0] == "n2"
    finally:
        eng.close()
        rebuilt.close()


def test_bad_field_weights_are_one_line_errors():
    for bad in ("caption", "colour=1", "caption=0", "caption=-1", "caption=x"):
        with pytest.raises(ValueError, match="FIELD=WEIGHT"):
            parse_weights(bad)
    with pytest.raises(ValueError, match="distinct"):
        IndexConfig(fields=(("caption", 1.0), ("caption", 2.0)))
