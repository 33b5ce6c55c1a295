"""Query-bank hubness correction (an index option) on the real stack: every document's offset h(d) is the mean
of its k best cosines with the bank, stored per segment; the dense side scores cos(q, d) − λ·h(d). Search
equals brute force over every live document (alone, per collection, and with multi-vector); after updates,
deletes and compactions the live index answers like a fresh build with the same bank; `vfr index
--query-bank` sets it up, refuses bad input and can turn it off."""
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.live_helpers import QUERIES, assert_equivalent, captions_dev_set, copy_store, replay_changes
from vfr.cli import app
from vfr.engine import Engine
from vfr.retrieve import hubness
from vfr.retrieve.segments import SegmentError
from vfr.retrieve.writer import IndexConfig
from vfr.store.store import Store

pytestmark = pytest.mark.integration
# the repository's own bank: everyday photo queries, none of them a test query below
BANK = ["a person standing outside", "people in a room", "a photo of a street", "a group of people together",
        "an animal outside", "food on a table", "a vehicle on the road", "a building in a city",
        "someone holding something", "a view of the sky", "two people talking", "a man wearing a hat",
        "a woman sitting down", "children outdoors", "a car parked", "water and trees", "a plate of food",
        "a dog on grass", "a cat indoors", "lights at night"]
WEIGHT, K = 0.7, 5


def _config(eng, **extra) -> IndexConfig:
    return IndexConfig(hubness=WEIGHT, hubness_k=K, query_bank=eng.stage_query_bank(BANK), **extra)


def _open(template_store, folder, **extra) -> Engine:
    eng = Engine.open(copy_store(template_store, folder))
    eng.update_index(full=True, config=_config(eng, **extra))
    return eng


@pytest.fixture(scope="module")
def engine(template_store, tmp_path_factory):
    eng = _open(template_store, tmp_path_factory.mktemp("hub"))
    yield eng
    eng.close()


def _brute_force(eng, query: str, k: int, collection: str | None = None, parts_weight: float = 0.0):
    enc = eng.index.encoder()
    q = enc.encode([query])[0]
    bank = enc.encode(BANK)
    scores = {}
    with eng.index.handle.acquire() as snap:
        for i, (seg, live) in enumerate(zip(snap.segments, snap.masks(None))):
            for r in np.flatnonzero(live):
                if collection is not None and seg.collections[r] != collection:
                    continue
                d = seg.dense.vectors(np.array([r]))[0]
                h = float(np.sort(bank @ d)[-K:].mean())
                s = float(d @ q)
                if parts_weight:
                    s = (1 - parts_weight) * s + parts_weight * float(np.max(snap.parts[i].vectors_of([r])[0] @ q))
                scores[seg.ids[r]] = s - WEIGHT * h
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]


def _check_exact(eng, dense, query, k=10, collection=None, parts_weight=0.0):
    want = _brute_force(eng, query, k, collection, parts_weight)
    got = eng.search(query, k, retriever="dense", collection=collection) if collection else dense.search(query, k)
    assert [h.id for h in got] == [d for d, _ in want], query
    assert [h.score for h in got] == pytest.approx([s for _, s in want], abs=1e-4)
    exact = dense.score(query, [d for d, _ in want])
    assert [exact[d] for d, _ in want] == pytest.approx([s for _, s in want], abs=1e-4)


def test_offsets_are_recorded_per_segment_and_change_the_ranking(engine, template_store, tmp_path):
    m = engine.index.manifest
    assert m["config"]["hubness"] == WEIGHT and m["config"]["query_bank"] == hubness.bank_sha(BANK)
    enc = engine.index.encoder()
    with engine.index.handle.acquire() as snap:
        seg = snap.segments[0]
        d = seg.dense.vectors(np.arange(3))
        want = [float(np.sort(enc.encode(BANK) @ v)[-K:].mean()) for v in d]
        assert seg.hubness[:3].tolist() == pytest.approx(want, abs=1e-5)
    plain = Engine.open(copy_store(template_store, tmp_path))
    plain.update_index(full=True)
    try:
        dense = engine.backend("dense")
        assert any([h.id for h in plain.search(q, 10, retriever="dense")] != [h.id for h in dense.search(q, 10)]
                   for q in QUERIES)
    finally:
        plain.close()


def test_dense_search_and_scores_equal_brute_force(engine):
    dense = engine.backend("dense")
    for q in QUERIES:
        _check_exact(engine, dense, q)
    for q in QUERIES[:4]:  # deep k: the bound has to grow the candidate lists
        _check_exact(engine, dense, q, k=60)
    assert engine.search("neon OPEN sign", 5)  # the hybrid runs over the corrected dense side


def test_the_array_and_generic_hybrid_paths_agree(engine, monkeypatch):
    """The hybrid's array path (small indexes, batches) and its generic path (Lucene, per-query fusion) both
    take the corrected dense side: same rankings and scores, scoped or not."""
    from vfr.retrieve.live_hybrid import LiveHybridBackend

    for scope in (None, "pets"):
        array = {q: engine.search(q, 7, collection=scope) for q in QUERIES}
        batch = engine.batch_search(dict(enumerate(QUERIES * 2)), 7, collection=scope)
        monkeypatch.setattr(LiveHybridBackend, "ARRAY_MAX_ROWS", 0)
        for q in QUERIES:
            generic = engine.search(q, 7, collection=scope)
            assert [h.id for h in generic] == [h.id for h in array[q]] == [h.id for h in batch[QUERIES.index(q)]]
            assert [pytest.approx(h.score, rel=1e-5, abs=1e-6) for h in generic] == [h.score for h in array[q]]
        monkeypatch.undo()


def test_with_multivector_equals_brute_force(template_store, tmp_path):
    eng = _open(template_store, tmp_path, parts="sentences", parts_weight=0.4)
    try:
        dense = eng.backend("dense")
        for q in QUERIES[:5]:
            _check_exact(eng, dense, q, parts_weight=0.4)
    finally:
        eng.close()


def test_live_updates_equal_a_fresh_build(template_store, tmp_path):
    eng = _open(template_store, tmp_path / "live")
    db = eng.db
    replay_changes(eng)
    rebuilt_dir = tmp_path / "rebuilt"
    rebuilt_dir.mkdir()
    shutil.copy(db, rebuilt_dir / "r.duckdb")
    rebuilt = Engine.open(rebuilt_dir / "r.duckdb", rebuilt_dir / "r.index")
    rebuilt.update_index(full=True, config=_config(rebuilt))
    try:
        assert len(eng.index.manifest["segments"]) > 1
        assert_equivalent(eng, rebuilt, QUERIES, k=10, scopes=(None, "B"))
        _check_exact(eng, eng.backend("dense"), "red car blue truck", collection="B")
        eng.compact()
        assert len(eng.index.manifest["segments"]) == 1  # merged offsets copied with their rows
        for q in QUERIES[:4]:
            _check_exact(eng, eng.backend("dense"), q)
        assert_equivalent(eng, rebuilt, QUERIES[:4], k=10)
    finally:
        eng.close()
        rebuilt.close()


def test_a_segment_without_offsets_is_reported(template_store, tmp_path):
    eng = _open(template_store, tmp_path)
    name = eng.index.manifest["segments"][0]["name"]
    folder = eng.index_dir
    eng.close()
    (folder / "segments" / name / hubness.FILE).unlink()
    eng = Engine.open(eng.db)
    try:
        with pytest.raises((SegmentError, Exception), match="index --full"):
            eng.search("zebra", 3, retriever="dense")
    finally:
        eng.close()


def test_bad_options_are_refused():
    for bad in ({"hubness": 0.5}, {"query_bank": "sha256:ab"}, {"hubness": 3.0, "query_bank": "sha256:ab"},
                {"hubness": 0.5, "hubness_k": 0, "query_bank": "sha256:ab"}):
        with pytest.raises(ValueError, match="hubness"):
            IndexConfig(**bad)


def _cli(*args):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_cli_sets_up_changes_and_turns_off_the_bank(template_store, tmp_path):
    db = copy_store(template_store, tmp_path)
    bank = tmp_path / "bank.txt"
    bank.write_text("\ufeff" + "\r\n".join(BANK + ["", BANK[0]]) + "\r\n", encoding="utf-8")  # BOM, CRLF, blank, repeat
    r = _cli("index", "--db", str(db), "-q", "--query-bank", str(bank))
    assert r.exit_code == 0, r.output
    with Engine.open(db) as eng:
        config = eng.index.manifest["config"]
        assert config["query_bank"] == hubness.bank_sha(BANK) and config["hubness"] == hubness.DEFAULT_WEIGHT
        assert (eng.index_dir / hubness.BANKS).is_dir()
    assert _cli("index", "--db", str(db), "-q", "--hubness", "0.25").exit_code == 0
    with Engine.open(db) as eng:
        assert eng.index.manifest["config"]["hubness"] == 0.25
        assert eng.search("zebra", 3, retriever="dense")
    for args, message in ((("--query-bank", str(tmp_path / "missing.txt")), "no such file"),
                          (("--query-bank", str(tmp_path)), "folder"),
                          (("--hubness", "3"), "2")):
        r = _cli("index", "--db", str(db), "-q", *args)
        assert r.exit_code != 0 and message in r.output, r.output
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    r = _cli("index", "--db", str(db), "-q", "--query-bank", str(empty))
    assert r.exit_code == 1 and "empty" in r.output
    with Engine.open(db) as eng:  # the failed attempts changed nothing
        assert eng.index.manifest["config"]["hubness"] == 0.25
    other_bank = tmp_path / "other.txt"
    other_bank.write_text("a second bank\nof two queries\n", encoding="utf-8")
    assert _cli("index", "--db", str(db), "-q", "--query-bank", str(other_bank)).exit_code == 0
    with Engine.open(db) as eng:  # the first bank's texts and vectors are gone with the full build
        files = sorted(p.name for p in (eng.index_dir / hubness.BANKS).iterdir())
        digest = hubness.bank_sha(["a second bank", "of two queries"]).split(":")[1][:32]
        assert files == [f"{digest}.npz", f"{digest}.txt"]
    assert _cli("index", "--db", str(db), "-q", "--query-bank", "none").exit_code == 0
    with Engine.open(db) as eng:
        assert eng.index.manifest["config"]["hubness"] == 0 and not eng.index.manifest["config"]["query_bank"]
        assert not list((eng.index_dir / hubness.BANKS).iterdir())  # turned off: no query text is kept
    other = copy_store(template_store, tmp_path / "other")
    r = _cli("index", "--db", str(other), "-q", "--hubness", "0.5")
    assert r.exit_code == 1 and "--query-bank" in r.output


def test_eval_and_tune_take_a_bank_without_the_queries_they_score(template_store, tmp_path, monkeypatch):
    import json

    bench = captions_dev_set(template_store, tmp_path / "bench.jsonl")
    with Store(template_store, read_only=True) as s:
        caps = s.captions()
    scored = caps[0][1]
    bank = tmp_path / "bank.txt"
    bank.write_text("\n".join(BANK + [scored]) + "\n", encoding="utf-8")
    monkeypatch.setenv("VFR_FUSION_DIR", str(tmp_path / "fusion"))
    common = ["--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    r = _cli("eval", str(bench), "--query-bank", str(bank), "--out", str(tmp_path / "o"), "--no-plots",
             "--retriever", "dense,hybrid", *common)
    assert r.exit_code == 0, r.output
    assert f"left out 1 of its {len(BANK) + 1} texts" in " ".join(r.output.split())
    doc = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert doc["config"]["query_bank_size"] == len(BANK) and doc["config"]["hubness"] == 0.5
    assert doc["config"]["query_bank_sha"] == hubness.bank_sha(BANK)
    r = _cli("tune", str(bench), "--query-bank", str(bank), "--dry-run", "--json", *common)
    assert r.exit_code == 0, r.output
    choice = json.loads(r.output[r.output.index("{"):])["choice"]
    assert choice["scoring"]["hubness"] == 0.5 and "query_bank" not in choice["scoring"]
    only = tmp_path / "only.txt"
    only.write_text(scored + "\n", encoding="utf-8")
    r = _cli("eval", str(bench), "--query-bank", str(only), "--out", str(tmp_path / "o2"), *common)
    assert r.exit_code == 1 and "choose another bank" in r.output
    r = _cli("eval", str(bench), "--query-bank", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "o3"), *common)
    assert r.exit_code == 1 and "neither a file nor a built-in bank" in r.output
