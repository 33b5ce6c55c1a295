"""Shared helpers for live-index tests: a session template store (sample imported, embeddings cached),
cheap copies of it, and the equivalence check against a fresh full build."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

QUERIES = ["a dog chasing a cat", "neon OPEN sign in a diner window", "red car parked next to a blue truck",
           "children playing on a swing", "snowy mountain lake at sunrise", "people at a night market",
           "a bowl of ramen", "zebra", "dog dog dog", "the of and"]


def copy_store(template: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    db = dest / "s.duckdb"
    shutil.copy(template, db)
    return db


def ranking(hits) -> list[tuple[str, float]]:
    return [(h.id, h.score) for h in hits]


def assert_same_ranking(got, want, context: str, tol: float = 1e-5) -> None:
    """Same ids in the same order with scores within `tol`; a swap is allowed only between scores that
    tie within `tol` (float summation order may differ between a segment layout and another), and so is
    another id at the cut-off when it ties with the last one there (two documents with the same text)."""
    assert len(got) == len(want), (context, got, want)
    for (gi, gs), (wi, ws) in zip(got, want):
        assert abs(gs - ws) <= tol * max(1.0, abs(ws)), (context, got, want)
    if [g[0] for g in got] != [w[0] for w in want]:
        gs = {i: s for i, s in got}
        ws = {i: s for i, s in want}
        last = want[-1][1]
        tied = {i for i, s in [*got, *want] if abs(s - last) <= tol * max(1.0, abs(last))}
        assert set(gs) - tied == set(ws) - tied, (context, got, want)
        for i in range(len(got)):
            if got[i][0] != want[i][0]:
                assert abs(got[i][1] - want[i][1]) <= tol * max(1.0, abs(want[i][1])), (context, got, want)


def assert_equivalent(live, rebuilt, queries=QUERIES, k: int = 10, scopes=(None,)) -> None:
    """Every retriever of `live` (an Engine after updates) answers like `rebuilt` (a fresh full build), one
    query at a time and in a batch (whose paths differ: retrieve/bm25_batch.py, retrieve/live_hybrid.py)."""
    batch = {f"b{i}": q for i, q in enumerate(list(queries) * -(-16 // len(queries)))}  # 16+: the batch paths
    for scope in scopes:
        for retriever in ("bm25", "dense", "hybrid"):
            batched = live.batch_search(batch, k, retriever=retriever, collection=scope)
            for q in queries:
                got = ranking(live.search(q, k, retriever=retriever, collection=scope))
                want = ranking(rebuilt.search(q, k, retriever=retriever, collection=scope))
                assert_same_ranking(got, want, f"{retriever} {scope} {q!r}")
                for qid in [i for i, t in batch.items() if t == q]:
                    assert_same_ranking(ranking(batched[qid]), want, f"batch {retriever} {scope} {q!r}")


def replay_changes(eng) -> list:
    """The update sequence the live-option tests replay on `eng` (an Engine over a copy of the sample): two new
    documents in collection B (n2: a red car next to a blue truck) and a changed one, an update, two
    deletions, an update. Returns the store's records as they were before."""
    from vfr.store.store import DescriptionRow, ImageRow, Store

    with Store(eng.db) as s:
        records = s.document_records_after(None, 1000)
        s.upsert([ImageRow("n1", collection="B"), ImageRow("n2", collection="B"), ImageRow(records[3].id)],
                 [DescriptionRow("n1", "A bowl of ramen with a soft egg. Chopsticks rest on a wooden tray."),
                  DescriptionRow("n2", "A red car. It is parked next to a blue truck. Snow falls."),
                  DescriptionRow(records[3].id, "A zebra grazes beside a dirt road. Hills rise behind it.")])
    eng.update_index()
    eng.delete([records[5].id, records[6].id])
    eng.update_index()
    return records


def captions_dev_set(store: Path, path: Path) -> Path:
    """A labelled dev set (generic JSONL) from a store: each image's human captions query its description."""
    import json

    from vfr.store.store import Store

    with Store(store, read_only=True) as s:
        caps = s.captions()
        docs = s.get(sorted({i for i, _ in caps}))
    by_id: dict[str, list[str]] = {}
    for i, c in caps:
        by_id.setdefault(i, []).append(c)
    path.write_text("".join(json.dumps({"id": i, "document": docs[i].text, "queries": q}) + "\n"
                            for i, q in by_id.items()))
    return path


def rebuild_copy(db: Path, dest: Path):
    """A fresh full build of a copy of `db` (its embedding cache makes it cheap)."""
    from vfr.engine import Engine

    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(db, dest / "r.duckdb")
    eng = Engine.open(dest / "r.duckdb", dest / "r.index")
    eng.update_index(full=True)
    return eng


@pytest.fixture(scope="session")
def template_store(tmp_path_factory) -> Path:
    """The sample imported and indexed once, so copies carry cached embeddings (no re-encoding)."""
    from vfr.demo import sample_path
    from vfr.describe.schema import RENDERER
    from vfr.engine import Engine
    from vfr.store.io import import_file
    from vfr.store.store import Store

    root = tmp_path_factory.mktemp("template")
    db = root / "t.duckdb"
    with Store(db) as s:
        import_file(s, sample_path(), RENDERER)
    eng = Engine.open(db, root / "t.index")
    eng.update_index()
    eng.close()
    return db


def lucene_top(snap, query: str, n: int) -> tuple[list[str], list[float]]:
    """Lucene's own top n (ids, scores) for `query` in a snapshot: what the exact rescoring is checked against."""
    from vfr.retrieve import lucene

    docs, scores = snap.lucene.top(snap.lucene.build_query(lucene.query_terms(query)), n)
    seg, rows = snap.lucene_rows(docs)
    return [snap.segments[s].ids[r] for s, r in zip(seg.tolist(), rows.tolist())], scores
