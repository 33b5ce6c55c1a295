"""Several describers per image through the engine itself: import every VLM description of a COCO join as its
own (image, model) description, index the store with `--descriptions newest` and with `every-model`, and
score text→image R@1/5/10 on the join's captions with the engine's own search (docs/views.md).

    python benchmarks/views_check.py [--split test] [--encoder MODEL] [--work DIR]

`every-model` should reproduce `vfr eval coco-test --description-source concat` (the same joined text in the
same model-name order). `newest` indexes whichever description was written last, here the last model in
name order: it is not the eval's `longest`, and says what a store that keeps only one view gets.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
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
            for retriever in ("bm25", "dense", "hybrid"):
                hits = engine.batch_search(queries, 10, retriever=retriever)
                run = {q: {h.id: float(h.score) for h in hs} for q, hs in hits.items()}
                m = M.evaluate(qrels, run, ["hit_rate@1", "hit_rate@5", "hit_rate@10"])
                out[f"{combine}/{retriever}"] = {k: round(100 * v, 1) for k, v in m.items()}
                print(combine, retriever, out[f"{combine}/{retriever}"], flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
