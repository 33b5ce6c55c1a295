"""vfr against txtai (the closest peer), side by side in one run (a script, not a test).

    pip install -e '.[bench]'        # txtai 9.14, benchmark only
    python benchmarks/peer_bench.py --docs 20000 --queries 500 --rounds 2

The same synthetic descriptions and queries (benchmarks/retrieval_bench.py's generator) and the same
MiniLM weights for both. Each system runs in a process of its own (so peak RSS is its own), and rounds
alternate vfr, txtai, vfr, txtai… so machine noise hits both. Per system and configuration: build
(import + index) time and documents/s, single-query p50/p95/p99 (one query at a time after 200 untimed
warm-up queries), single-client queries/s, batch queries/s, peak RSS; each vfr figure also as a ratio to
txtai's default hybrid (and dense to txtai dense). Medians over rounds.

vfr: bm25, dense and hybrid, FAISS flat and HNSW (HNSW_MIN_ROWS is lowered so the 20k segment is HNSW).
txtai: its default hybrid config {"path": MODEL, "backend": "faiss", "hybrid": True}, and dense.
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from retrieval_bench import synth_doc, synth_query  # noqa: E402

WARMUP = 200


def corpus(n_docs: int, n_queries: int) -> tuple[dict[str, str], list[str], list[str]]:
    rng = random.Random(0)
    docs = {f"d{i:07d}": synth_doc(rng) for i in range(n_docs)}
    return docs, [synth_query(rng) for _ in range(n_queries)], [synth_query(rng) for _ in range(WARMUP)]


def timings(search, queries: list[str], warmup: list[str], batch) -> dict:
    for q in warmup:
        search(q)
    lat = []
    t_all = time.perf_counter()
    for q in queries:
        t0 = time.perf_counter()
        search(q)
        lat.append((time.perf_counter() - t0) * 1000)
    single_qps = len(queries) / (time.perf_counter() - t_all)
    t0 = time.perf_counter()
    batch(queries)
    return {"p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)),
            "p99": float(np.percentile(lat, 99)), "qps": single_qps,
            "batch_qps": len(queries) / (time.perf_counter() - t0)}


def run_vfr(n_docs: int, n_queries: int, faiss: str) -> dict:
    from vfr.engine import Engine
    from vfr.retrieve import dense
    from vfr.retrieve.writer import IndexConfig
    from vfr.store.store import DescriptionRow, ImageRow, Store

    dense.HNSW_MIN_ROWS = 1000  # a 20k corpus is one segment: make it a real HNSW one
    docs, queries, warmup = corpus(n_docs, n_queries)
    root = Path(tempfile.mkdtemp(prefix="vfr-peer-"))
    t0 = time.perf_counter()
    with Store(root / "p.duckdb") as s:  # what `vfr import` does with a file of these records
        s.upsert([ImageRow(i) for i in docs], [DescriptionRow(i, t) for i, t in docs.items()])
    eng = Engine.open(root / "p.duckdb")
    eng.update_index(config=IndexConfig(faiss=faiss))
    build = time.perf_counter() - t0
    out = {"build_s": build, "build_docs_per_s": n_docs / build}
    for name in ("bm25", "dense", "hybrid"):
        out[name] = timings(lambda q: eng.search(q, 10, retriever=name), queries, warmup,
                            lambda qs: eng.batch_search(qs, 10, retriever=name))
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run_txtai(n_docs: int, n_queries: int, hybrid: bool) -> dict:
    from txtai import Embeddings

    from vfr.retrieve.encoder import resolve_encoder

    docs, queries, warmup = corpus(n_docs, n_queries)
    config = {"path": resolve_encoder("default").location, "backend": "faiss"}
    if hybrid:
        config["hybrid"] = True
    t0 = time.perf_counter()
    emb = Embeddings(config)
    emb.index([(i, t, None) for i, t in docs.items()])
    build = time.perf_counter() - t0
    out = {"build_s": build, "build_docs_per_s": n_docs / build,
           "search": timings(lambda q: emb.search(q, 10), queries, warmup, lambda qs: emb.batchsearch(qs, 10)),
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    return out


def child(kind: str, n_docs: int, n_queries: int) -> None:
    if kind.startswith("vfr-"):
        result = run_vfr(n_docs, n_queries, kind.removeprefix("vfr-"))
    else:
        result = run_txtai(n_docs, n_queries, hybrid=kind == "txtai-hybrid")
    print(json.dumps(result))


def median(rows: list[dict], *path: str) -> float:
    values = []
    for r in rows:
        for p in path:
            r = r[p]
        values.append(r)
    return statistics.median(values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=20_000)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    kinds = ["vfr-flat", "txtai-hybrid", "vfr-hnsw", "txtai-dense"]
    results: dict[str, list[dict]] = {k: [] for k in kinds}
    for r in range(args.rounds):
        for kind in kinds if r % 2 == 0 else kinds[::-1]:  # alternate the order too
            p = subprocess.run([sys.executable, __file__, "--child", kind, str(args.docs), str(args.queries)],
                               capture_output=True, text=True, check=True)
            results[kind].append(json.loads(p.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1}: {kind} done", file=sys.stderr)
    th, td = results["txtai-hybrid"], results["txtai-dense"]
    print(f"\n{args.docs:,} documents, {args.queries} queries, {args.rounds} rounds (medians)\n")
    print("| system | config | p50 ms | p95 ms | p99 ms | q/s | batch q/s | build s | build docs/s | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, rows in (("txtai", th), ("txtai dense", td)):
        print(f"| {label} | {'hybrid' if rows is th else 'dense'} | " + " | ".join(
            f"{median(rows, 'search', m):.2f}" for m in ("p50", "p95", "p99")) +
            f" | {median(rows, 'search', 'qps'):.1f} | {median(rows, 'search', 'batch_qps'):.1f} | "
            f"{median(rows, 'build_s'):.1f} | {median(rows, 'build_docs_per_s'):.0f} | {median(rows, 'peak_rss_mb'):.0f} |")
    for kind in ("vfr-flat", "vfr-hnsw"):
        rows = results[kind]
        for name in ("bm25", "dense", "hybrid"):
            print(f"| vfr {kind[4:]} | {name} | " + " | ".join(f"{median(rows, name, m):.2f}" for m in ("p50", "p95", "p99"))
                  + f" | {median(rows, name, 'qps'):.1f} | {median(rows, name, 'batch_qps'):.1f} | "
                  f"{median(rows, 'build_s'):.1f} | {median(rows, 'build_docs_per_s'):.0f} | "
                  f"{median(rows, 'peak_rss_mb'):.0f} |")
    print("\nratios to txtai's default hybrid (vfr hybrid) and to txtai dense (vfr dense):")
    for kind in ("vfr-flat", "vfr-hnsw"):
        rows = results[kind]
        for name, ref in (("hybrid", th), ("dense", td)):
            print(f"  vfr {kind[4:]} {name}: p50 {median(rows, name, 'p50') / median(ref, 'search', 'p50'):.2f}x, "
                  f"q/s {median(rows, name, 'qps') / median(ref, 'search', 'qps'):.2f}x, "
                  f"batch q/s {median(rows, name, 'batch_qps') / median(ref, 'search', 'batch_qps'):.2f}x, "
                  f"p99/p50 {median(rows, name, 'p99') / median(rows, name, 'p50'):.2f}")
        print(f"  vfr {kind[4:]} batch hybrid / batch dense (same run): "
              f"{median(rows, 'hybrid', 'batch_qps') / median(rows, 'dense', 'batch_qps'):.2f}")
        print(f"  vfr {kind[4:]} build docs/s {median(rows, 'build_docs_per_s') / median(th, 'build_docs_per_s'):.2f}x, "
              f"peak RSS {median(rows, 'peak_rss_mb') / median(th, 'peak_rss_mb'):.2f}x of txtai hybrid")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
