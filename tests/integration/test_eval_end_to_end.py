"""End to end with real Lucene and the packaged MiniLM: build, cache, search, score, report (~1 min)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from vfr.eval import benchmarks, cache, datasets as ds, report, runner
from vfr.eval import tasks as tk

pytestmark = pytest.mark.integration
ROOT = benchmarks.default_data_dir()


@pytest.fixture(scope="module")
def small(shared_data: Path) -> list[ds.DescribedImage]:
    return ds.load_joined(ROOT / "joined" / "coco_karpathy_test_x_vlm_descriptions.jsonl")[:20]


def test_retrieval_and_compositional_end_to_end(small, tmp_path: Path) -> None:
    items = [ds.CompositionalItem(f"replace_obj/{i.image_id}", "replace_obj", i.image_id, i.captions[0],
                                  "A plate of spaghetti on a wooden table.") for i in small[:10]]
    tasks = [tk.text_to_image("t2i", small, "longest"), tk.image_to_text("i2t", small[:10], "each"),
             tk.compositional("compositional", items, {i.image_id: i.descriptions for i in small}, "longest")]
    config = runner.EvalConfig(progress=False, depth=10, cache_dir=tmp_path / "cache")
    inputs = json.dumps([t.queries if hasattr(t, "queries") else len(t.trials) for t in tasks])

    results = runner.run_tasks(tasks, config)
    t2i, i2t, comp = (r.summary for r in results)
    for name in runner.RETRIEVERS:
        assert 0.3 < t2i["metrics"][name]["hit_rate@1"] <= 1.0          # 20 images: far above chance (5%)
        assert t2i["metrics"][name]["hit_rate@10"] >= t2i["metrics"][name]["hit_rate@1"]
        lo, hi = t2i["r1_ci95"][name]
        assert lo <= t2i["metrics"][name]["hit_rate@1"] <= hi
        assert comp["results"][name]["categories"]["replace_obj"]["accuracy"] >= 0.8  # spaghetti is easy
    assert i2t["queries"] > 10                                            # source "each": one query per description
    assert not t2i["index"]["cached"]
    assert json.dumps([t.queries if hasattr(t, "queries") else len(t.trials) for t in tasks]) == inputs

    again = runner.run_tasks(tasks[:1], config)[0].summary                # same corpus: reopened, same numbers
    assert again["index"]["cached"] and again["metrics"] == t2i["metrics"]

    doc = report.write_outputs("small", results, tmp_path / "out", {}, {"retrievers": list(runner.RETRIEVERS)}, {})
    run = report.read_trec(tmp_path / "out" / "runs" / "small.t2i.hybrid.trec")
    assert len(run) == t2i["queries"] and doc["tasks"][0]["run_files"]["bm25"].endswith(".trec")


def test_query_embeddings_are_cached(small, tmp_path: Path) -> None:
    from vfr.retrieve.query_cache import CachedEncoder
    from vfr.retrieve.writer import IndexConfig

    corpus = {i.image_id: next(iter(i.descriptions.values())) for i in small[:5]}
    index, info = cache.open_corpus_index(corpus, "all-MiniLM-L6-v2", IndexConfig(), tmp_path, progress=False)
    dense = index.dense()
    assert isinstance(dense.encoder, CachedEncoder)                       # visible: the searcher's encoder
    first = dense.encoder.encode(["a dog on a beach", "two cats"])
    again = dense.encoder.encode(["two cats", "a dog on a beach"])
    assert (first[::-1] == again).all() and dense.encoder.stats["encoded"] == 2
    store = cache._shared_store(tmp_path / "embeddings.duckdb")
    assert store.con.execute("SELECT count(*) FROM embeddings WHERE model LIKE '%#query'").fetchall()[0][0] == 2


def test_eval_rerun_encodes_no_query_twice(small, tmp_path: Path) -> None:
    from vfr.retrieve.writer import IndexConfig

    tasks = [tk.text_to_image("t2i", small, "longest"), tk.image_to_text("i2t", small[:10], "each")]
    opened: list = []

    def opener(corpus):
        index, info = cache.open_corpus_index(corpus, "all-MiniLM-L6-v2", IndexConfig(), tmp_path / "cache",
                                              progress=False)
        opened.append(index.dense().encoder)
        return index, info

    config = runner.EvalConfig(retrievers=("dense", "hybrid"), progress=False, depth=10)
    first = runner.run_tasks(tasks, config, opener)
    texts = {t for task in tasks for t in task.queries.values()}
    encoded = sum(e.stats["encoded"] for e in opened)
    assert encoded == len(texts)                                        # each distinct text once, shared by dense + hybrid
    opened.clear()
    again = runner.run_tasks(tasks, config, opener)                      # a rerun: fresh encoders, same store
    assert sum(e.stats["encoded"] for e in opened) == 0
    assert sum(e.stats["store_hits"] for e in opened) > 0
    assert [r.summary["metrics"] for r in again] == [r.summary["metrics"] for r in first]


def test_eval_with_a_cache_in_use_fails_cleanly(small, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process holding the evaluation cache's lock: one clear error (exit 1), no traceback."""
    import subprocess
    import sys

    import typer
    from typer.testing import CliRunner

    from vfr import cmd_eval

    bench = tmp_path / "bench.jsonl"
    bench.write_text("\n".join(json.dumps({"id": i.image_id, "document": next(iter(i.descriptions.values())),
                                           "queries": list(i.captions[:1])}) for i in small[:5]))
    (tmp_path / "cache").mkdir()
    hold = "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('holding', flush=True); time.sleep(300)"
    holder = subprocess.Popen([sys.executable, "-c", hold, str(tmp_path / "cache" / "embeddings.duckdb")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        monkeypatch.setenv("VFR_LOCK_TIMEOUT", "0")
        app = typer.Typer()
        cmd_eval.register(app)
        app.command("noop")(lambda: None)
        res = CliRunner().invoke(app, ["eval", str(bench), "--cache-dir", str(tmp_path / "cache"), "--out",
                                       str(tmp_path / "o"), "--no-progress", "--no-plots"])
    finally:
        holder.kill()
        holder.wait()
    assert res.exit_code == 1, res.output
    assert "in use by another process" in res.output and "Traceback" not in res.output
