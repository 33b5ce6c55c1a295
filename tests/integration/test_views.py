"""Several describers per image (`vfr index --descriptions every-model`) on the real stack: the document joins
each model's newest description, so a query finds what only one describer saw; the option is recorded in the
manifest; live updates (a new view, a revised view, an erasure) answer like a fresh build; a joined text's
vectors never enter the store's embedding cache; the CLI takes the option and refuses what it cannot do."""
import shutil

import pytest
from typer.testing import CliRunner

from vfr.cli import app
from vfr.engine import Engine
from vfr.retrieve.writer import IndexConfig
from vfr.store.changes import JOIN_SEPARATOR

pytestmark = pytest.mark.integration
VIEWS = IndexConfig(descriptions="every-model")
RECORDS = [
    {"id": "kite", "model": "vlm-a", "text": "A red kite flies high over a sandy beach."},
    {"id": "kite", "model": "vlm-b", "text": "A golden retriever lies on warm sand near the water."},
    {"id": "fridge", "model": "vlm-a", "text": "A small kitchen with a white fridge and a wooden table."},
    {"id": "bike", "model": "vlm-b", "text": "A man rides a bicycle down a wet street in the rain."},
    {"id": "boat", "model": "vlm-a", "text": "Two fishing boats are moored in a quiet harbour at dawn."},
]


def _top(eng: Engine, query: str, retriever: str = "bm25") -> list[str]:
    return [h.id for h in eng.search(query, 3, retriever=retriever)]


@pytest.fixture
def engines(tmp_path):
    out = {}
    for combine in ("newest", "every-model"):
        eng = Engine.open(tmp_path / f"{combine}.duckdb", create=True)
        eng.upsert(RECORDS)
        eng.update_index(full=True, config=IndexConfig(descriptions=combine))
        out[combine] = eng
    yield out
    for eng in out.values():
        eng.close()


def test_a_query_finds_what_only_one_describer_saw(engines):
    views, newest = engines["every-model"], engines["newest"]
    assert views.index.manifest["config"]["descriptions"] == "every-model"
    doc = views.get(["kite"])["kite"]
    assert doc["text"] == RECORDS[0]["text"] + JOIN_SEPARATOR + RECORDS[1]["text"]
    assert doc["models"] == ["vlm-a", "vlm-b"]
    # vlm-b wrote last, so the newest document has no kite: only the joined one finds it
    assert _top(views, "red kite")[0] == "kite" and "kite" not in _top(newest, "red kite")
    assert _top(views, "golden retriever on the sand", "dense")[0] == "kite"
    assert _top(views, "kite flying over the beach", "hybrid")[0] == "kite"
    assert views.get(["fridge"])["fridge"]["text"] == newest.get(["fridge"])["fridge"]["text"]


def test_joined_vectors_stay_out_of_the_embedding_cache(engines):
    views = engines["every-model"]
    key = views.index.encoder().spec.cache_key
    with views.store(read_only=True) as store:
        records = store.document_records(["kite", "fridge"], "every-model")
        assert store.cached_embeddings(key, [records["kite"].text_hash]) == {}
        assert set(store.cached_embeddings(key, [records["fridge"].text_hash])) == {records["fridge"].text_hash}


def test_live_updates_answer_like_a_fresh_build(engines, tmp_path):
    views = engines["every-model"]
    views.upsert([{"id": "fridge", "model": "vlm-b", "text": "A black cat sleeps on the kitchen counter."}])
    assert _top(views, "black cat sleeping")[0] == "fridge"  # a second view, applied by the upsert's update
    views.upsert([{"id": "kite", "model": "vlm-a", "prompt_version": "v2",
                   "text": "A blue umbrella stands on a sandy beach."}])
    assert "kite" not in _top(views, "red kite")  # vlm-a's revised view replaced its first one
    assert _top(views, "blue umbrella")[0] == "kite"
    views.delete(["bike"])
    assert "bike" not in _top(views, "bicycle in the rain", "hybrid")

    views.close()
    _assert_live_equals_fresh(tmp_path, ("black cat", "umbrella on the beach", "fishing boats", "golden retriever"))


def _assert_live_equals_fresh(tmp_path, queries) -> None:
    """The every-model engine's live index answers like a full build of a copy of its store."""
    db = tmp_path / "fresh.duckdb"
    shutil.copy(tmp_path / "every-model.duckdb", db)
    with Engine.open(db) as fresh, Engine.open(tmp_path / "every-model.duckdb") as live:
        fresh.update_index(full=True, config=VIEWS)
        assert fresh.get(["kite", "fridge"]) == live.get(["kite", "fridge"])
        for q in queries:
            want = [(h.id, round(h.score, 4)) for h in fresh.search(q, 4, retriever="hybrid")]
            assert [(h.id, round(h.score, 4)) for h in live.search(q, 4, retriever="hybrid")] == want


def test_cli_sets_records_and_refuses(tmp_path):
    db = tmp_path / "c.duckdb"
    with Engine.open(db, create=True) as eng:
        eng.upsert(RECORDS)
    runner = CliRunner()
    r = runner.invoke(app, ["index", "--db", str(db), "--descriptions", "every-model", "--quiet"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["search", "red kite", "--db", str(db), "--format", "json"])
    assert r.exit_code == 0 and '"kite"' in r.output
    r = runner.invoke(app, ["index", "--db", str(db), "--descriptions", "all", "--quiet"])
    assert r.exit_code != 0 and "newest, every-model" in r.output
    r = runner.invoke(app, ["index", "--db", str(db), "--bm25-fields", "caption=0.5", "--quiet"])
    assert r.exit_code != 0 and "--descriptions newest" in r.output
    with Engine.open(db) as eng:  # the refused settings changed nothing
        assert eng.index.manifest["config"]["descriptions"] == "every-model"
        assert eng.index.manifest["config"]["fields"] == []


def test_retracting_a_describer_leaves_no_trace_in_search(engines, tmp_path):
    for combine, eng in engines.items():
        assert _top(eng, "bicycle in the rain", "hybrid")[0] == "bike"
        done = eng.delete_descriptions("vlm-b")
        assert (done["descriptions"], done["images"], done["undescribed"]) == (2, 2, 1), combine
        assert eng.get(["kite"])["kite"]["text"] == RECORDS[0]["text"]  # vlm-a's view alone, in either mode
        assert eng.get(["bike"]) == {}
        for retriever in ("bm25", "dense", "hybrid"):
            assert "bike" not in _top(eng, "man rides a bicycle in the rain", retriever)
            assert "kite" not in _top(eng, "golden retriever on warm sand", "bm25")
        assert _top(eng, "red kite over the beach", "hybrid")[0] == "kite"
    engines["every-model"].close()
    _assert_live_equals_fresh(tmp_path, ("golden retriever", "kite", "fishing boats", "kitchen fridge"))


def test_cli_deletes_a_describer_and_refuses_bad_combinations(tmp_path):
    db = tmp_path / "m.duckdb"
    with Engine.open(db, create=True) as eng:
        eng.upsert(RECORDS)
    runner = CliRunner()
    for args, says in ((["--model", "vlm-b", "kite"], "without image ids"),
                       (["--prompt-version", "none"], "needs --model"),
                       (["--model", "vlm-c"], "no descriptions by model 'vlm-c'")):
        r = runner.invoke(app, ["delete", "--db", str(db), *args])
        assert r.exit_code != 0 and says in r.output, (args, r.output)
    r = runner.invoke(app, ["delete", "--db", str(db), "--model", "vlm-b", "--purge"])
    assert r.exit_code == 0, r.output
    assert "deleted 2 descriptions by vlm-b of 2 images: 1 now show" in r.output and "compacted" in r.output
    r = runner.invoke(app, ["search", "bicycle rain", "--db", str(db), "--format", "json"])
    assert r.exit_code == 0 and '"bike"' not in r.output
    with Engine.open(db) as eng, eng.store(read_only=True) as store:
        assert store.stats()["descriptions_by_model"] == [{"model": "vlm-a", "prompt_version": "none", "count": 3}]


def test_cli_retracts_a_describer_in_one_collection_only(tmp_path):
    db = tmp_path / "c.duckdb"
    with Engine.open(db, create=True) as eng:
        eng.upsert([{**r, "collection": "red" if r["id"] in ("kite", "fridge") else "blue"} for r in RECORDS])
        eng.update_index(full=True)
    runner = CliRunner()
    r = runner.invoke(app, ["delete", "--db", str(db), "--model", "vlm-b", "--collection", "red"])
    assert r.exit_code == 0, r.output
    assert "deleted 1 description by vlm-b in collection red of 1 image: 1 now show" in r.output
    with Engine.open(db) as eng:
        assert eng.get(["kite"])["kite"]["text"] == RECORDS[0]["text"]  # red's kite: vlm-a's view again
        assert _top(eng, "man rides a bicycle in the rain")[0] == "bike"  # blue keeps vlm-b's description
    r = runner.invoke(app, ["delete", "--db", str(db), "--model", "vlm-b", "--collection", "red"])
    assert r.exit_code != 0 and "collection 'red' has: vlm-a none (2)" in r.output, r.output
