"""Index-build and query benchmark on synthetic scene-description corpora (a script, not a test).

    python benchmarks/retrieval_bench.py --docs 10000 100000 [--queries 300] [--faiss flat hnsw]

Reports, per corpus size: build time per stage (BM25, encode, FAISS), build encoding throughput vs raw
sentence-transformers throughput on the same texts/model/batch size, single-query latency p50/p95/p99
(one query at a time, query encoding included) for bm25/dense/hybrid, batch throughput, peak RSS.
With several --faiss kinds, the first is built from an empty embedding cache (the build figures); the
others are rebuilt from the cache for their query figures. `encode` = query encoding alone. Each timed
series follows 200 untimed warm-up queries (different ones), as a running service would be warm.
"""
from __future__ import annotations

import argparse
import random
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from vfr.retrieve.encoder import load_encoder, resolve_encoder
from vfr.retrieve.index import open_index
from vfr.retrieve.maintain import IndexedStore
from vfr.retrieve.types import Query
from vfr.retrieve.writer import IndexConfig
from vfr.store.store import DescriptionRow, ImageRow, Store

SUBJECTS = "dog cat woman man child bus car bicycle horse bird boat train pizza cake laptop umbrella kite surfer " \
           "skateboarder elephant giraffe zebra sheep cow bench clock vase sofa bed table chair lamp".split()
COLOURS = "red blue green yellow white black brown grey orange pink purple silver golden".split()
PLACES = "beach street kitchen park living room office field forest harbour market station stadium " \
         "mountain lake airport bakery garden playground museum bridge".split()
VERBS = "sitting on|standing next to|lying under|walking past|riding|holding|looking at|parked beside|" \
        "leaning against|jumping over".split("|")
TIMES = "in the morning|at night|at dusk|on a sunny day|in the rain|in the snow|under cloudy skies".split("|")


WARMUP = 200  # untimed queries before each timed series


def synth_doc(rng: random.Random) -> str:
    a, b, c = rng.sample(SUBJECTS, 3)
    n = rng.randint(1, 6)
    sents = [f"A {rng.choice(COLOURS)} {a} {rng.choice(VERBS)} a {rng.choice(COLOURS)} {b} "
             f"in a {rng.choice(PLACES)} {rng.choice(TIMES)}.",
             f"Objects: {n} {rng.choice(COLOURS)} {c}; one {rng.choice(COLOURS)} {a}; one {b}.",
             f"The {a} is {rng.choice(VERBS)} the {c}. Setting: {rng.choice(PLACES)}, "
             f"{rng.choice(['indoors', 'outdoors'])}."]
    return " ".join(sents)


def synth_query(rng: random.Random) -> str:
    return f"{rng.choice(COLOURS)} {rng.choice(SUBJECTS)} {rng.choice(VERBS)} a {rng.choice(SUBJECTS)} " \
           f"in the {rng.choice(PLACES)}"


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(values, p))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench(n_docs: int, n_queries: int, faiss_kinds: list[str], batch_size: int, seed: int = 0,
          keep: Path | None = None, latency_only: bool = False) -> dict:
    rng = random.Random(seed)
    docs = {f"d{i:07d}": synth_doc(rng) for i in range(n_docs)}
    queries = {f"q{i}": synth_query(rng) for i in range(n_queries)}
    warmup = [synth_query(rng) for _ in range(WARMUP)]
    root = keep / f"{n_docs}" if keep else Path(tempfile.mkdtemp(prefix=f"vfr-bench-{n_docs}-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        return _bench(root, docs, queries, warmup, faiss_kinds, batch_size, latency_only)
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def _bench(root: Path, docs: dict, queries: dict, warmup: list[str], faiss_kinds: list[str], batch_size: int,
           latency_only: bool = False) -> dict:
    n_docs = len(docs)
    out: dict = {"docs": n_docs, "faiss": faiss_kinds[0], "batch_size": batch_size}
    if latency_only:
        return _latencies(root, queries, warmup, faiss_kinds, out)
    # raw sentence-transformers throughput on the same texts, model and batch size, measured first so the
    # build does not inherit its warm kernels (the loaded model is shared: load time is in neither figure)
    model = load_encoder(resolve_encoder("default"))
    sample = list(docs.values())[: min(n_docs, 10_000)]
    t0 = time.perf_counter()
    model.encode(sample, batch_size=batch_size)
    out["raw_encode_docs_per_s"] = len(sample) / (time.perf_counter() - t0)
    with Store(root / "b.duckdb") as store:
        t0 = time.perf_counter()
        store.upsert([ImageRow(i) for i in docs], [DescriptionRow(i, t) for i, t in docs.items()])
        out["store_write_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    IndexedStore(root / "b.duckdb", root / "b.index").update_index(config=IndexConfig(faiss=faiss_kinds[0]))
    out["build_total_s"] = time.perf_counter() - t0
    for kind in faiss_kinds[1:]:  # same documents, embeddings from the store's cache
        IndexedStore(root / "b.duckdb", root / f"{kind}.index").update_index(config=IndexConfig(faiss=kind))
    out["build_docs_per_s"] = n_docs / out["build_total_s"]
    out["build_vs_raw_encode"] = out["build_docs_per_s"] / out["raw_encode_docs_per_s"]
    return _latencies(root, queries, warmup, faiss_kinds, out)


def _latencies(root: Path, queries: dict, warmup: list[str], faiss_kinds: list[str], out: dict) -> dict:
    out["latency"], top10 = {}, {}
    for kind in faiss_kinds:
        idx = open_index(root / ("b.index" if kind == faiss_kinds[0] else f"{kind}.index"))
        out["latency"][kind] = rows = {}
        encoder = idx.encoder()
        rows["encode"] = _latency(lambda q: encoder.encode([q]), queries, warmup, None)
        for name in ("bm25", "dense", "hybrid"):
            s = idx.backend(name)
            rows[name] = _latency(lambda q: s.search(q, 10), queries, warmup, s)
        qs = [Query(t, q) for q, t in queries.items()]
        top10[kind] = {q.id: {h.id: h.score for h in hits} for q, hits in zip(qs, idx.backend("dense").batch_search(qs, 10))}
    for kind in faiss_kinds[1:]:  # approximate search: share of the first kind's (exact) dense top 10 found
        ref = top10[faiss_kinds[0]]
        out.setdefault("overlap_at_10", {})[kind] = statistics.fmean(
            len(set(top10[kind][q]) & set(ref[q])) / max(len(ref[q]), 1) for q in queries)
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def _latency(one, queries: dict[str, str], warmup: list[str], searcher) -> dict:
    texts = list(queries.values())
    for q in warmup:  # other queries than those timed: JVM JIT, torch and caches warm, as in a running service
        one(q)
    lat = []
    for q in texts:
        t0 = time.perf_counter()
        one(q)
        lat.append((time.perf_counter() - t0) * 1000)
    row = {"p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95), "p99_ms": pct(lat, 99), "mean_ms": statistics.fmean(lat)}
    if searcher is not None:
        batch = [Query(t, q) for q, t in queries.items()]
        t0 = time.perf_counter()
        searcher.batch_search(batch, 10)
        row["batch_qps"] = len(queries) / (time.perf_counter() - t0)
    return row


def _print_build(r: dict) -> None:
    print(f"build: total {r['build_total_s']:.1f}s (store write {r['store_write_s']:.1f}s before)")
    print(f"build throughput {r['build_docs_per_s']:.0f} docs/s vs raw encode {r['raw_encode_docs_per_s']:.0f} "
          f"docs/s → ratio {r['build_vs_raw_encode']:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--faiss", nargs="+", default=["flat", "hnsw"], choices=["flat", "hnsw"])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--latency-only", action="store_true", help="with --keep: only query figures, on the "
                    "indexes a previous --keep run left")
    ap.add_argument("--keep", type=Path, help="keep stores and indexes in this folder and reuse them on the next "
                    "run (the embedding cache then makes the build figures meaningless; latency figures stay valid)")
    args = ap.parse_args()
    for n in args.docs:
        if args.latency_only and not (args.keep and (args.keep / str(n) / "b.index").exists()):
            ap.error(f"--latency-only needs --keep DIR with a previous run's {n}-document indexes")
        r = bench(n, args.queries, args.faiss, args.batch_size, keep=args.keep, latency_only=args.latency_only)
        print(f"\n## {n:,} documents (FAISS {r['faiss']}, batch {r['batch_size']})")
        if "build_total_s" in r:
            _print_build(r)
        print("| FAISS | retriever | p50 ms | p95 ms | p99 ms | batch q/s |\n|---|---|---|---|---|---|")
        for kind, rows in r["latency"].items():
            for name, m in rows.items():
                qps = f"{m['batch_qps']:.0f}" if "batch_qps" in m else "–"
                print(f"| {kind} | {name} | {m['p50_ms']:.2f} | {m['p95_ms']:.2f} | {m['p99_ms']:.2f} | {qps} |")
        for kind, v in r.get("overlap_at_10", {}).items():
            print(f"dense top-10 overlap of {kind} with {r['faiss']}: {v:.3f}")
        print(f"peak RSS {r['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
