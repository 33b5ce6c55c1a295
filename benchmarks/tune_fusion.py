"""Choose the hybrid defaults by measurement: BM25 k1/b and fusion (method, normalisation, weights,
depth) on the COCO Karpathy **val** join (captions → one description per image). Prints a table;
docs/fusion.md records the outcome. Usage:
    python benchmarks/tune_fusion.py [--split val|test] [--data ../shared/data]
"""
from __future__ import annotations

import argparse
import itertools
import json
import tempfile
from pathlib import Path

from ranx import Qrels, Run, evaluate

from vfr.retrieve.fusion import FusionConfig, fuse
from vfr.retrieve.index import open_index
from vfr.retrieve.maintain import IndexedStore
from vfr.retrieve.types import Query, batch_run
from vfr.retrieve.writer import IndexConfig
from vfr.store.store import DescriptionRow, ImageRow, Store

METRICS = ["recall@1", "recall@5", "recall@10"]


def load_join(path: Path) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]]]:
    """docs (longest description per image), queries (every caption), qrels."""
    docs, queries, qrels = {}, {}, {}
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        img = str(rec["coco_id"])
        docs[img] = max(rec["descriptions"].values(), key=len)
        for j, cap in enumerate(rec["captions"]):
            queries[f"{img}-{j}"] = cap
            qrels[f"{img}-{j}"] = {img: 1}
    return docs, queries, qrels


def score(run: dict, qrels: dict) -> dict[str, float]:
    res = evaluate(Qrels(qrels), Run({q: (r or {"__none__": 0.0}) for q, r in run.items()}), METRICS)
    return {m: round(100 * v, 1) for m, v in res.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", default="val")
    ap.add_argument("--data", default="../shared/data")
    args = ap.parse_args()
    docs, queries, qrels = load_join(Path(args.data) / "joined" / f"coco_karpathy_{args.split}_x_vlm_descriptions.jsonl")
    print(f"{len(docs)} documents, {len(queries)} queries ({args.split})")
    tmp = Path(tempfile.mkdtemp())
    with Store(tmp / "t.duckdb") as store:
        store.upsert([ImageRow(i) for i in docs], [DescriptionRow(i, t) for i, t in docs.items()])
    pair = IndexedStore(tmp / "t.duckdb", tmp / "idx")
    if True:
        results = []
        for k1, b in [(0.9, 0.4), (1.2, 0.75), (0.6, 0.3), (1.5, 0.5)]:
            pair.update_index(full=True, config=IndexConfig(k1=k1, b=b))
            bm25 = batch_run(open_index(tmp / "idx").backend("bm25"), queries, 100)
            print(f"bm25 k1={k1} b={b}", score(bm25, qrels))
            results.append(((k1, b), bm25))
        (k1, b), bm25 = max(results, key=lambda r: score(r[1], qrels)["recall@1"])
        pair.update_index(full=True, config=IndexConfig(k1=k1, b=b))
        idx = open_index(tmp / "idx")
        dense = batch_run(idx.backend("dense"), queries, 100)
        print("dense", score(dense, qrels))
        print("rrf k=60", score(fuse([bm25, dense], FusionConfig(method="rrf")), qrels))
        hybrid = idx.backend("hybrid", FusionConfig(depth=100))
        cands = {}  # each query's candidates scored once on both sides, then fused under every setting
        for q, text in queries.items():
            query = Query(text, q)
            cands[q] = hybrid.candidates(query, None, hybrid.sparse.search(query, 100), hybrid.dense.search(query, 100))
        grid = []
        for norm, w in itertools.product(["minmax", "zscore"], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]):
            cfg = FusionConfig(weights=(w, 1 - w), norm=norm)
            run = {q: fuse([{"q": sp}, {"q": de}], cfg)["q"] for q, (sp, de) in cands.items()}
            s = score(run, qrels)
            grid.append((s["recall@1"] + s["recall@10"], norm, w, s))
            print(f"convex {norm} w_sparse={w}", s)
        best = max(grid, key=lambda g: g[0])
        print("best:", best)


if __name__ == "__main__":
    main()
