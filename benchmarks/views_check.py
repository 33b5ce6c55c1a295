"""Several describers per image through the engine itself: import every VLM description of a COCO join as its
own (image, model) description, index the store with `--descriptions newest` and with `every-model`, and
score text→image R@1/5/10 on the join's captions with the engine's own search (docs/views.md).

    python benchmarks/views_check.py [--split test] [--encoder MODEL] [--work DIR] [--retract MODEL]

`every-model` should reproduce `vfr eval coco-test --description-source concat` (the same joined text in the
same model-name order). `newest` indexes whichever description was written last, here the last model in
name order: it is not the eval's `longest`, and says what a store that keeps only one view gets.

With --retract MODEL the every-model store then retracts that describer (`Engine.delete_descriptions`, timed),
is scored again, and its live index is compared with a full build of a copy of the store: every query's top
10 (ids and scores) should be the same.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from vfr.engine import Engine
from vfr.eval import datasets as ds
from vfr.eval import metrics as M
from vfr.eval.benchmarks import default_data_dir
from vfr.retrieve.writer import IndexConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", default="test", choices=["test", "val"])
    ap.add_argument("--encoder", default=None, help="model folder (default: the packaged MiniLM)")
    ap.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    ap.add_argument("--retract", default=None, help="a describer to retract from the every-model store afterwards")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="vfr-views-"))
    work.mkdir(parents=True, exist_ok=True)
    images = ds.load_joined(default_data_dir() / "joined" / f"coco_karpathy_{args.split}_x_vlm_descriptions.jsonl")
    records = [{"id": img.image_id, "text": text, "model": key}
               for img in images for key, text in sorted(img.descriptions.items())]
    queries = {f"{img.image_id}#{i}": c for img in images for i, c in enumerate(img.captions)}
    qrels = {q: {q.split("#")[0]: 1} for q in queries}
    out = {"split": args.split, "images": len(images), "descriptions": len(records), "queries": len(queries),
           "encoder": args.encoder or "all-MiniLM-L6-v2"}
    for combine in ("newest", "every-model"):
        db, index = work / f"{combine}.duckdb", work / f"{combine}.index"
        db.unlink(missing_ok=True)
        shutil.rmtree(index, ignore_errors=True)
        with Engine.open(db, index, encoder=args.encoder, create=True) as engine:
            engine.upsert(records)
            engine.update_index(full=True, config=IndexConfig(descriptions=combine))
            out.update(_scores(engine, combine, queries, qrels))
            if combine == "every-model" and args.retract:
                out["retract"] = _retract(engine, args.retract, work, queries, qrels, args.encoder)
    print(json.dumps(out))


def _scores(engine: Engine, label: str, queries: dict, qrels: dict) -> dict:
    out = {}
    for retriever in ("bm25", "dense", "hybrid"):
        hits = engine.batch_search(queries, 10, retriever=retriever)
        run = {q: {h.id: float(h.score) for h in hs} for q, hs in hits.items()}
        m = M.evaluate(qrels, run, ["hit_rate@1", "hit_rate@5", "hit_rate@10"])
        out[f"{label}/{retriever}"] = {k: round(100 * v, 1) for k, v in m.items()}
        print(label, retriever, out[f"{label}/{retriever}"], flush=True)
    return out


def _top10(engine: Engine, queries: dict) -> dict:
    hits = engine.batch_search(queries, 10, retriever="hybrid")
    return {q: [(h.id, round(float(h.score), 4)) for h in hs] for q, hs in hits.items()}


def _retract(engine: Engine, model: str, work: Path, queries: dict, qrels: dict, encoder: str | None) -> dict:
    t0 = time.perf_counter()
    done = engine.delete_descriptions(model)
    seconds = time.perf_counter() - t0
    out = {"model": model, "seconds": round(seconds, 2), **{k: done[k] for k in ("descriptions", "images", "undescribed")},
           **_scores(engine, f"every-model without {model}", queries, qrels)}
    fresh_db = work / "retracted-fresh.duckdb"
    shutil.rmtree(work / "retracted-fresh.index", ignore_errors=True)
    for suffix in ("", ".wal"):  # the store is closed between calls; a WAL not yet checkpointed goes with it
        if Path(f"{engine.db}{suffix}").exists():
            shutil.copy(f"{engine.db}{suffix}", f"{fresh_db}{suffix}")
    live = _top10(engine, queries)
    with Engine.open(fresh_db, work / "retracted-fresh.index", encoder=encoder) as fresh:
        fresh.update_index(full=True, config=IndexConfig(descriptions="every-model"))
        same = _top10(fresh, queries)
    out["queries_equal_to_a_fresh_build"] = sum(live[q] == same[q] for q in queries)
    print(f"retracted {model}: {done['descriptions']} descriptions of {done['images']} images in {seconds:.1f}s; "
          f"{out['queries_equal_to_a_fresh_build']}/{len(queries)} queries' hybrid top 10 equal a fresh build",
          flush=True)
    return out


if __name__ == "__main__":
    main()
