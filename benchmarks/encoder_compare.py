"""Speed of two encoders side by side (the quality side is `vfr eval --encoder`): single-query latency over
real COCO captions and documents/s over real machine descriptions, each encoder in this process, rounds
alternating. Appends one JSON line per encoder and round to benchmarks/results/quality.jsonl.

    OMP_NUM_THREADS=1 python benchmarks/encoder_compare.py default mpnet [--queries 100 --docs 300 --rounds 2]
Take final figures on an idle machine: on a shared one every number moves.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from vfr.retrieve.encoder import load_encoder, resolve_encoder

DATA = Path(os.environ.get("VFR_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
ap = argparse.ArgumentParser()
ap.add_argument("encoders", nargs="+")
ap.add_argument("--queries", type=int, default=100)
ap.add_argument("--docs", type=int, default=300)
ap.add_argument("--rounds", type=int, default=2)
ap.add_argument("--backend", default=None)
args = ap.parse_args()
rows = [json.loads(line) for line in open(DATA / "joined" / "coco_karpathy_val_x_vlm_descriptions.jsonl")]
captions = [c for r in rows for c in r["captions"]][: args.queries]
docs = [max(r["descriptions"].values(), key=len) for r in rows][: args.docs]
encoders = {name: load_encoder(resolve_encoder(name, args.backend)) for name in args.encoders}
for enc in encoders.values():
    enc.encode(captions[:8] + docs[:8])  # warm-up (and the export on first use)
with open(Path(__file__).resolve().parent / "results" / "quality.jsonl", "a") as log:
    for rnd in range(args.rounds):
        for name, enc in (encoders.items() if rnd % 2 == 0 else reversed(list(encoders.items()))):
            lat = []
            for c in captions:
                t0 = time.perf_counter()
                enc.encode([c])
                lat.append(1000 * (time.perf_counter() - t0))
            t0 = time.perf_counter()
            enc.encode(docs)
            dps = len(docs) / (time.perf_counter() - t0)
            row = {"variant": "encoder-speed", "encoder": name, "backend": enc.spec.backend, "dimension": enc.dimension,
                   "round": rnd, "query_p50_ms": round(statistics.median(lat), 2),
                   "query_p95_ms": round(sorted(lat)[int(0.95 * len(lat)) - 1], 2), "docs_per_s": round(dps, 1),
                   "threads": os.environ.get("OMP_NUM_THREADS"), "load": round(os.getloadavg()[0], 2)}
            print(row)
            log.write(json.dumps(row) + "\n")
