"""Recall of each encoder backend on the COCO test join (a script, not a test).

    python benchmarks/backend_recall.py [--backends torch onnx onnx-int8 openvino]

Captions query the 401 images' longest vision-LLM descriptions (as tests/integration/test_coco_recall.py);
for each backend, a full index build and R@1/5/10 of dense and hybrid, so a backend's cost in quality is
measured on the same data as the default's.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from ranx import Qrels, Run, evaluate

from vfr.engine import Engine
from vfr.eval.datasets import load_joined
from vfr.store.store import DescriptionRow, ImageRow, Store

DATA = Path(os.environ.get("VFR_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", nargs="+", default=["torch", "onnx", "onnx-int8", "openvino"])
    args = ap.parse_args()
    images = load_joined(DATA / "joined" / "coco_karpathy_test_x_vlm_descriptions.jsonl")
    docs = {im.image_id: max(im.descriptions.values(), key=len) for im in images}
    queries = {f"{im.image_id}-{j}": c for im in images for j, c in enumerate(im.captions)}
    qrels = Qrels({q: {q.rsplit("-", 1)[0]: 1} for q in queries})
    root = Path(tempfile.mkdtemp(prefix="vfr-backend-recall-"))
    with Store(root / "c.duckdb") as s:
        s.upsert([ImageRow(i) for i in docs], [DescriptionRow(i, t) for i, t in docs.items()])
    results = {}
    for backend in args.backends:
        eng = Engine.open(root / "c.duckdb", root / f"{backend}.index", encoder_backend=backend)
        eng.update_index(full=True)
        row = {}
        for retriever in ("dense", "hybrid"):
            hits = eng.batch_search(queries, 10, retriever=retriever)
            run = Run({q: ({h.id: h.score for h in hs} or {"none": 0.0}) for q, hs in hits.items()})
            row[retriever] = {m: round(100 * v, 2) for m, v in
                              evaluate(qrels, run, ["recall@1", "recall@5", "recall@10"]).items()}
        results[backend] = row
        print(backend, json.dumps(row))
        eng.close()
    print("\n| backend | dense R@1 | R@5 | R@10 | hybrid R@1 | R@5 | R@10 |\n|---|---|---|---|---|---|---|")
    for b, r in results.items():
        print(f"| {b} | " + " | ".join(f"{r[x][m]:.1f}" for x in ("dense", "hybrid")
                                        for m in ("recall@1", "recall@5", "recall@10")) + " |")


if __name__ == "__main__":
    main()
