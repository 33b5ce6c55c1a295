"""Live-index benchmark (a script, not a test): the cost of changing an index that is being searched.

    python benchmarks/live_bench.py --docs 100000 [--keep DIR]

On a synthetic corpus (benchmarks/retrieval_bench.py's generator) of --docs documents, prints:
  * add 1,000 new documents (store write + index update, encoding included) vs raw encoding of the same
    1,000 texts: the ratio of throughputs (target ≥ 0.8: encoding should be the only real cost);
  * delete 1,000 documents (store + index, until no search returns them): seconds (target < 1 s);
  * write-to-searchable latency excluding encoding: 30 single-document upserts whose vectors are already
    cached, from the call to the first search that finds the document: p50 / p95 (target p50 < 1 s);
  * hybrid search p50/p95 idle, then while another process adds documents continuously (vectors cached,
    so the writer does store writes and index commits, not encoding): the ratio (target ≤ 1.5);
  * a compaction after deleting 10% of the documents: seconds, index size before and after.
--keep reuses a store and index built by a previous run (the initial build takes ~5 min per 100k docs).
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from retrieval_bench import synth_doc, synth_query  # noqa: E402

from vfr.engine import Engine  # noqa: E402
from vfr.store.store import DescriptionRow, ImageRow, Store  # noqa: E402


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(values, p))


def build(root: Path, n_docs: int) -> Engine:
    db = root / "live.duckdb"
    if not db.exists():
        rng = random.Random(0)
        with Store(db) as s:
            ids = [f"d{i:07d}" for i in range(n_docs)]
            s.upsert([ImageRow(i) for i in ids], [DescriptionRow(i, synth_doc(rng)) for i in ids])
    eng = Engine.open(db)
    t0 = time.perf_counter()
    report = eng.update_index()
    print(f"initial index ({report['mode']}): {report['documents']:,} documents in {time.perf_counter() - t0:.1f}s")
    return eng


def search_latencies(eng: Engine, queries: list[str]) -> list[float]:
    out = []
    for q in queries:
        t0 = time.perf_counter()
        eng.search(q, 10)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--keep", type=Path, help="keep (and reuse) the store and index here")
    args = ap.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="vfr-live-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    eng = build(root, args.docs)
    rng = random.Random(1)
    queries = [synth_query(rng) for _ in range(args.queries)]
    search_latencies(eng, queries[:100])  # warm: JIT, torch, caches
    results: dict = {"docs": args.docs}

    # 1. add 1,000 new documents vs raw encoding of the same texts
    run = int(time.time())
    new = [{"id": f"add-{run}-{i}", "text": synth_doc(rng) + f" batch {run} item {i}"} for i in range(1000)]
    encoder = eng.index.encoder()
    t0 = time.perf_counter()
    encoder.encode([d["text"] for d in new])
    raw = time.perf_counter() - t0
    new2 = [{"id": f"add2-{run}-{i}", "text": synth_doc(rng) + f" second {run} item {i}"} for i in range(1000)]
    t0 = time.perf_counter()
    eng.upsert(new2)
    add = time.perf_counter() - t0
    results["add_1000"] = {"seconds": add, "raw_encode_seconds": raw, "ratio": raw / add}

    # 2. delete 1,000 documents
    victims = [d["id"] for d in new2]
    t0 = time.perf_counter()
    eng.delete(victims)
    results["delete_1000_seconds"] = time.perf_counter() - t0
    assert not any(h.id in set(victims) for h in eng.search(new2[0]["text"], 10, retriever="bm25"))

    # 3. write-to-searchable latency, encoding excluded (texts whose vectors the store has cached)
    lat = []
    with Store(eng.db, read_only=True) as s:
        cached_texts = [r.text for r in s.document_records_after(None, 30)]
    for i, text in enumerate(cached_texts):
        doc_id = f"fresh-{run}-{i}"
        t0 = time.perf_counter()
        eng.upsert([{"id": doc_id, "text": text, "collection": f"fresh{run}"}])
        hits = eng.search(text, 1, retriever="bm25", collection=f"fresh{run}")
        lat.append(time.perf_counter() - t0)
        assert hits and hits[0].id == doc_id
    results["write_to_searchable_s"] = {"p50": pct(lat, 50), "p95": pct(lat, 95)}

    # 4. search latency idle vs with a writer adding documents continuously in another process
    idle = search_latencies(eng, queries)
    writer = subprocess.Popen([sys.executable, __file__, "--writer", str(eng.db), "120"],
                              stdout=subprocess.PIPE, text=True)
    time.sleep(8)  # its JVM and encoder start
    busy = search_latencies(eng, queries)
    writer.terminate()
    commits = writer.communicate(timeout=120)[0].strip()
    results["search_ms"] = {"idle_p50": pct(idle, 50), "idle_p95": pct(idle, 95), "busy_p50": pct(busy, 50),
                            "busy_p95": pct(busy, 95), "ratio_p50": pct(busy, 50) / pct(idle, 50),
                            "writer_commits": commits}

    # 5. compaction after deleting 10% of the documents
    eng.delete([f"d{i:07d}" for i in range(0, args.docs, 10)])
    before = folder_mb(eng.index_dir)
    t0 = time.perf_counter()
    report = eng.compact()
    results["compaction"] = {"seconds": time.perf_counter() - t0, "index_mb_before": before,
                             "index_mb_after": folder_mb(eng.index_dir), "db_bytes_before": report.get("bytes_before"),
                             "db_bytes_after": report.get("bytes_after")}
    print(json.dumps(results, indent=1))
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


def writer_loop(db: Path, seconds: float) -> None:
    """Add cached-text documents one small batch at a time until killed; prints the commit count."""
    eng = Engine.open(db)
    with Store(db, read_only=True) as s:
        texts = [r.text for r in s.document_records_after(None, 200)]
    end, n = time.monotonic() + seconds, 0
    try:
        while time.monotonic() < end:
            eng.upsert([{"id": f"w-{time.time_ns()}-{j}", "text": texts[(n * 5 + j) % len(texts)]} for j in range(5)])
            n += 1
    finally:
        print(n, flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--writer":
        import signal

        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        writer_loop(Path(sys.argv[2]), float(sys.argv[3]))
    else:
        main()
