"""What the query-bank hubness correction costs (a script, not a test): the same synthetic corpus indexed
without and with a bank, build time and single-query / batch figures for dense and hybrid search.

    python benchmarks/hubness_bench.py [--docs 20000] [--bank 4000] [--queries 300] [--faiss flat]

The bank is synthetic queries drawn with another seed than the timed ones. The second build reuses the
store's embedding cache, so its extra time is the bank's encoding plus the offsets (one bank × batch
product per 2,048 documents) and the segment file.
"""
from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from pathlib import Path

from retrieval_bench import WARMUP, _latency, synth_doc, synth_query  # noqa: E402 (same folder)

from vfr.retrieve.index import open_index
from vfr.retrieve.maintain import IndexedStore
from vfr.retrieve.writer import IndexConfig
from vfr.store.store import DescriptionRow, ImageRow, Store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=20_000)
    ap.add_argument("--bank", type=int, default=4_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--faiss", default="flat", choices=["flat", "hnsw"])
    args = ap.parse_args()
    rng = random.Random(0)
    docs = {f"d{i:07d}": synth_doc(rng) for i in range(args.docs)}
    queries = {f"q{i}": synth_query(rng) for i in range(args.queries)}
    warmup = [synth_query(rng) for _ in range(WARMUP)]
    other = random.Random(1)
    bank = [synth_query(other) for _ in range(args.bank)]
    root = Path(tempfile.mkdtemp(prefix="vfr-hub-bench-"))
    try:
        with Store(root / "s.duckdb") as store:
            store.upsert([ImageRow(i) for i in docs], [DescriptionRow(i, t) for i, t in docs.items()])
        plain = IndexedStore(root / "s.duckdb", root / "plain.index")
        plain.update_index(config=IndexConfig(faiss=args.faiss))  # encodes the corpus (cached in the store)
        t0 = time.perf_counter()
        plain.update_index(full=True, config=IndexConfig(faiss=args.faiss))
        rebuild_plain = time.perf_counter() - t0
        hub = IndexedStore(root / "s.duckdb", root / "hub.index")
        sha = hub.stage_query_bank(bank)
        t0 = time.perf_counter()
        hub.update_index(config=IndexConfig(faiss=args.faiss, hubness=0.5, query_bank=sha))
        build_hub = time.perf_counter() - t0
        print(f"{args.docs} documents, bank of {len(set(bank))} queries, faiss {args.faiss}")
        print(f"full build from cached embeddings: plain {rebuild_plain:.1f} s, with bank {build_hub:.1f} s "
              "(bank encoded once, offsets computed)")
        print(f"| index | retriever | p50 ms | p95 ms | p99 ms | batch q/s |\n|---|---|---:|---:|---:|---:|")
        for name, folder in (("plain", "plain.index"), ("query bank", "hub.index")):
            idx = open_index(root / folder)
            for retriever in ("dense", "hybrid"):
                s = idx.backend(retriever)
                r = _latency(lambda q: s.search(q, 10), queries, warmup, s)
                print(f"| {name} | {retriever} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['p99_ms']:.2f} | "
                      f"{r['batch_qps']:.0f} |")
            idx.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
