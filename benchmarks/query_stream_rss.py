"""Batch search streams: peak memory and time to the first result do not grow with the query file.

    python benchmarks/query_stream_rss.py                     # 10k and 1M queries (BM25, quick per query)
    python benchmarks/query_stream_rss.py --sizes 10000,100000 --workdir /tmp/qs

Builds a store and index from the built-in sample once, writes query files of the given sizes, and runs
`vfr search --queries FILE --retriever bm25 -f trec` on each in a subprocess, sampling its resident memory
(psutil, every 50 ms) and noting when the first result line arrives. Prints one row per size. Not a test:
take final figures on an idle machine (issue 11, item 3: a 1M-line file printed nothing for 270 s while RSS
grew from 0.66 to 2.2 GB before batch search streamed).
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

WORDS = ("dog cat red blue car truck beach snow mountain lake market night ramen bowl child swing sign neon "
         "diner window woman coat sidewalk street bus tree forest fox bird sky sunset table chair").split()


def build(workdir: Path) -> Path:
    db = workdir / "bench.duckdb"
    if not (workdir / "bench.index" / "HEAD").exists():
        from vfr.demo import sample_path

        for args in (["import", str(sample_path())], ["index", "-q"]):
            subprocess.run([sys.executable, "-m", "vfr", *args, "--db", str(db)], check=True)
    return db


def query_file(workdir: Path, n: int) -> Path:
    path = workdir / f"queries-{n}.txt"
    if not path.exists():
        rng = random.Random(n)
        with path.open("w") as f:
            for _ in range(n):
                f.write(" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6))) + "\n")
    return path


def run(db: Path, queries: Path) -> dict:
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "vfr", "search", "--queries", str(queries), "--db", str(db),
                             "--retriever", "bm25", "-f", "trec", "-k", "10"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    ps = psutil.Process(proc.pid)
    peak, samples, done = [0], [], threading.Event()

    def sample() -> None:
        while not done.is_set():
            try:
                rss = ps.memory_info().rss
            except psutil.Error:
                return
            if not rss:  # exited (a zombie reports 0)
                return
            peak[0] = max(peak[0], rss)
            samples.append((time.perf_counter() - t0, rss))
            time.sleep(0.05)

    threading.Thread(target=sample, daemon=True).start()
    first = None
    lines = 0
    for _ in proc.stdout:
        if first is None:
            first = time.perf_counter() - t0
        lines += 1
    proc.wait()
    done.set()
    total = time.perf_counter() - t0
    # memory once the first results are out (the process has loaded everything it needs) vs at the end
    after_first = [r for t, r in samples if first is not None and t >= first]
    return {"rc": proc.returncode, "lines": lines, "first_s": first, "total_s": total, "peak_mb": peak[0] / 2**20,
            "rss_at_first_mb": (after_first[0] / 2**20) if after_first else float("nan"),
            "rss_end_mb": (samples[-1][1] / 2**20) if samples else float("nan")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,1000000", help="comma-separated query counts")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/vfr-query-stream"))
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    db = build(args.workdir)
    print(f"{'queries':>10} {'first result s':>15} {'total s':>9} {'RSS at first MB':>16} {'RSS end MB':>11} "
          f"{'peak RSS MB':>12} {'result lines':>13}")
    for n in (int(x) for x in args.sizes.split(",")):
        r = run(db, query_file(args.workdir, n))
        print(f"{n:>10} {r['first_s']:>15.1f} {r['total_s']:>9.1f} {r['rss_at_first_mb']:>16.0f} "
              f"{r['rss_end_mb']:>11.0f} {r['peak_mb']:>12.0f} {r['lines']:>13}" + ("" if r["rc"] == 0 else f"  rc={r['rc']}"))


if __name__ == "__main__":
    main()
