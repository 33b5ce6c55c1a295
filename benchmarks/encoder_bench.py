"""Encoder backends side by side: single-query latency, documents/s, fidelity to torch, load time, memory.

    .venv/bin/python benchmarks/encoder_bench.py [--docs 10000] [--speed-docs 2000] [--rounds 3]
                                                 [--queries 300] [--backends torch,onnx,onnx-int8,openvino]
                                                 [--encoder default|mpnet|MODEL_DIR]

Documents are real texts from the shared data: the 8.4k distinct vision-LLM descriptions of COCO images
(joins, HALC, OPERA), then IIW/DOCCI long human descriptions, then MSCOCO-FG captions up to --docs;
queries are real COCO captions. Each backend runs in a fresh process (its own thread
pools, its own peak RSS), once per round with the order rotated; figures are medians over rounds.
A backend's first load ever also exports it (load_s then includes the export). Cosine (first round,
all --docs texts) is per text against torch's vector.
Take final figures on an idle machine: on a shared one every number here moves.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("VFR_DATA", REPO.parent / "shared" / "data"))
SOURCES = ["joined/coco_karpathy_test_x_vlm_descriptions.jsonl", "joined/coco_karpathy_val_x_vlm_descriptions.jsonl",
           "halc/halc_chair_coco_val2014_descriptions.jsonl", "opera/opera_chair_coco_val2014_descriptions.jsonl"]
IIW = ["iiw/IIW-400.jsonl", "iiw/DOCCI_Test.jsonl"]


def real_texts(n_docs: int, n_queries: int) -> tuple[list[str], list[str]]:
    """Distinct vision-LLM descriptions first (8.4k), then IIW/DOCCI long human descriptions (700), then
    MSCOCO-FG captions to make up `n_docs`; queries are COCO captions from the joins."""
    docs: dict[str, None] = {}
    queries: dict[str, None] = {}
    for name in SOURCES:
        for line in (DATA / name).open():
            row = json.loads(line)
            docs.update(dict.fromkeys(row["descriptions"].values()))
            queries.update(dict.fromkeys(row.get("captions", [])))
    for name in IIW:
        for line in (DATA / name).open():
            docs.update(dict.fromkeys(v for v in json.loads(line).values() if isinstance(v, str) and len(v) > 80))
    for captions in json.loads((DATA / "fg" / "MSCOCO_FG_ann.json").read_text()).values():
        if len(docs) >= n_docs:
            break
        docs.update(dict.fromkeys(captions))
    docs_list, query_list = list(docs)[:n_docs], list(queries)[:n_queries]
    if len(docs_list) < n_docs:
        print(f"note: only {len(docs_list)} distinct texts under {DATA}", file=sys.stderr)
    return docs_list, query_list


def worker(backend: str, work: Path, batch_size: int, speed_docs: int, vectors: bool, encoder: str) -> None:
    """One backend in this process: load (export if needed), latency, throughput[, all vectors to disk]."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from vfr.retrieve import encoder_backends as B
    from vfr.retrieve.encoder import load_encoder, resolve_encoder

    docs = json.loads((work / "docs.json").read_text())
    queries = json.loads((work / "queries.json").read_text())
    t0 = time.perf_counter()
    enc = load_encoder(resolve_encoder(encoder, backend))
    load_s = time.perf_counter() - t0
    for q in queries[:20]:  # warm-up
        enc.encode([q])
    lat = []
    for q in queries:
        t = time.perf_counter()
        enc.encode([q])
        lat.append((time.perf_counter() - t) * 1000)
    t = time.perf_counter()
    head = enc.encode(docs[:speed_docs], batch_size=batch_size)
    docs_s = len(head) / (time.perf_counter() - t)
    if vectors:
        rest = enc.encode(docs[speed_docs:], batch_size=batch_size)
        np.save(work / f"{backend}.npy", np.vstack([head, rest]))
    q = statistics.quantiles(lat, n=100)
    out = {"backend": backend, "load_s": round(load_s, 2), "exported": sum(B.exports.values()) > 0,
           "query_p50_ms": round(statistics.median(lat), 2), "query_p95_ms": round(q[94], 2),
           "docs_per_s": round(docs_s, 1), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    with (work / "rows.jsonl").open("a") as fh:
        fh.write(json.dumps(out) + "\n")


def summarise(rows: list[dict], backends: list[str]) -> list[dict]:
    """Per backend: the median of each figure over rounds (and the spread of the p50)."""
    out = []
    for b in backends:
        mine = [r for r in rows if r["backend"] == b]
        row = {"backend": b, "rounds": len(mine), "exported": any(r["exported"] for r in mine)}
        for key in ("query_p50_ms", "query_p95_ms", "docs_per_s", "load_s", "peak_rss_mb"):
            row[key] = round(statistics.median(r[key] for r in mine), 2)
        row["p50_range"] = f"{min(r['query_p50_ms'] for r in mine)}-{max(r['query_p50_ms'] for r in mine)}"
        out.append(row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=10_000, help="texts whose vectors are compared with torch's")
    ap.add_argument("--speed-docs", type=int, default=2_000, help="texts timed for documents/s in each round")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3, help="each backend once per round, order rotated")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--backends", default="torch,onnx,onnx-int8,openvino")
    ap.add_argument("--encoder", default="default", help="the model every backend runs (e.g. mpnet, a model folder)")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--vectors", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker, args.work, args.batch_size, args.speed_docs, args.vectors, args.encoder)

    backends = args.backends.split(",")
    if "torch" not in backends:
        backends.insert(0, "torch")  # the reference for cosine
    docs, queries = real_texts(args.docs, args.queries)
    print(f"encoder {args.encoder}: {len(docs)} texts, {len(queries)} caption queries, {args.rounds} rounds, batch {args.batch_size}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "docs.json").write_text(json.dumps(docs))
        (work / "queries.json").write_text(json.dumps(queries))
        for r in range(args.rounds):  # rotate the order so that drifting machine load hits every backend
            for backend in backends[r % len(backends):] + backends[:r % len(backends)]:
                cmd = [sys.executable, __file__, "--worker", backend, "--work", str(work), "--batch-size",
                       str(args.batch_size), "--speed-docs", str(args.speed_docs), "--encoder", args.encoder]
                subprocess.run(cmd + (["--vectors"] if r == 0 else []), check=True)
        rows = summarise([json.loads(x) for x in (work / "rows.jsonl").read_text().splitlines()], backends)
        ref = np.load(work / "torch.npy")
        for row in rows:
            cos = (np.load(work / f"{row['backend']}.npy") * ref).sum(axis=1)
            row |= {"cos_min": round(float(cos.min()), 6), "cos_p01": round(float(np.quantile(cos, 0.01)), 5),
                    "cos_mean": round(float(cos.mean()), 5)}
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    cols = ["backend", "query_p50_ms", "p50_range", "query_p95_ms", "docs_per_s", "cos_min", "cos_p01", "cos_mean",
            "load_s", "peak_rss_mb"]
    print(" | ".join(cols))
    for row in rows:
        print(" | ".join(str(row[c]) for c in cols))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
