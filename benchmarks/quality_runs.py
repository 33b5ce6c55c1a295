"""Run `vfr eval` for one variant on several benchmarks and log every run (command and figures) to
benchmarks/results/quality.jsonl, so each figure in docs/results.md § Ablations can be rerun. The log is
append-only history: a rerun of a variant (the same model re-evaluated, or a model retrained under the same name)
adds lines, and the newest line of a variant × benchmark × task is the one out/ablate/NAME and the pages hold.

    python benchmarks/quality_runs.py NAME BENCH[,BENCH...] [-- extra vfr eval args]
    # e.g. python benchmarks/quality_runs.py cal-auto coco-test,coco-fg-test -- --encoder out/models/minilm-cal

Outputs: out/ablate/NAME/BENCH/ (metrics.json, runs/*.trec). Two of these started at once would collide on the
evaluation cache's DuckDB lock, so each takes a lock (out/ablate/.lock) and a second one waits for the first to
finish. Run with `nice` and one torch thread when other processes share the machine.
"""
from __future__ import annotations

import fcntl
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOG = REPO / "benchmarks" / "results" / "quality.jsonl"


def main(argv: list[str]) -> int:
    lock_path = REPO / "out" / "ablate" / ".lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("another quality_runs.py holds the evaluation cache; waiting for it to finish", file=sys.stderr)
            fcntl.flock(lock, fcntl.LOCK_EX)
        return _run(argv)


def _run(argv: list[str]) -> int:
    name, benches = argv[0], argv[1].split(",")
    extra = argv[3:] if len(argv) > 2 and argv[2] == "--" else argv[2:]
    rc = 0
    for bench in benches:
        out = REPO / "out" / "ablate" / name / bench
        cmd = [sys.executable, "-m", "vfr", "eval", bench, "--out", str(out), "--no-plots", "--no-progress", *extra]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        seconds = round(time.perf_counter() - t0, 1)
        if done.returncode != 0:
            print(f"{name} {bench}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
            rc = 1
            continue
        doc = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
        with open(LOG, "a", encoding="utf-8") as f:
            for t in doc["tasks"]:
                row = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "variant": name,
                       "benchmark": bench, "task": t["task"], "kind": t["kind"],
                       "command": " ".join(["vfr", "eval", bench, "--out", f"out/ablate/{name}/{bench}", *extra]),
                       "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "VFR_FUSION_DIR") if os.environ.get(k)},
                       "seconds": seconds, "machine": platform.machine(), "load": os.getloadavg()[0],
                       "index": t.get("index", {}).get("manifest")}
                if t["kind"] == "retrieval":
                    row["metrics"] = {r: {m: round(v, 4) for m, v in ms.items()} for r, ms in t["metrics"].items()}
                    row["r1_ci95"] = t["r1_ci95"]
                else:
                    row["accuracy"] = {r: {k: v for k, v in res.items() if k in ("micro_accuracy", "macro_accuracy", "items")}
                                       for r, res in t["results"].items()}
                f.write(json.dumps(row) + "\n")
        print(f"{name} {bench}: {seconds} s")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
