"""Ray's overhead on `vfr describe`: one Ray actor vs the single-process job, same images, model, batch size.

    python benchmarks/describe_ray_bench.py [--images 256] [--batch-size 32] [--model DIR] [--json]

Both passes run the real CLI in a fresh process with a fresh database: `vfr describe` (local executor)
and `vfr describe --executor ray --workers 1` against a local Ray cluster this script starts on loopback
(`ray start --head`, 2 CPUs, its own ports and temp folder) and stops afterwards. Engine loading is left
out of both figures (the local job's `images_per_s` starts after the load; the Ray job's figure is
described / (elapsed − the actor's engine load)), so the ratio is the pipeline's cost: hashing and
decoding in Ray tasks, pixels through the object store, shards, and the final ingest. Target >= 0.9.
Without --model it builds the tiny random-weight model (CPU: it is the ratio that counts).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _describe(args: list[str], env: dict[str, str]) -> dict:
    cmd = [sys.executable, "-m", "vfr.cmd_describe", "describe", *args, "--json", "--quiet"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise SystemExit(f"describe failed:\n{r.stderr[-3000:]}")
    counts = json.loads(r.stdout[r.stdout.index("{"):])
    counts["wall_s"] = round(time.perf_counter() - t0, 2)
    return counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--model", default=None, help="model folder (default: build the tiny model)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = ap.parse_args()

    from benchmarks.describe_bench import make_images
    from tests.describe_ray import AUTH_ENV, start_cluster, stop_cluster
    from vfr.describe import tiny_vlm

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "VLLM_HOST_IP": "127.0.0.1",
           "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), **AUTH_ENV}
    if args.model is None:      # tiny model on CPU: one unbound thread is fastest, in both passes
        env.update(OMP_NUM_THREADS="1", VLLM_CPU_OMP_THREADS_BIND="nobind")
    work = Path(tempfile.mkdtemp(prefix="vfr-ray-bench-"))
    model = args.model or str(tiny_vlm.build(work / "tiny-vlm", seed=0))
    make_images(work / "img", args.images)
    common = [str(work / "img"), "--model", model, "--max-model-len", "4096", "--batch-size", str(args.batch_size)]

    local = _describe([*common, "--db", str(work / "local.duckdb")], env)

    address, temp_dir = start_cluster(env)
    try:
        ray = _describe([*common, "--db", str(work / "ray.duckdb"), "--executor", "ray", "--workers", "1",
                         "--ray-address", address], env)
    finally:
        stop_cluster(temp_dir)

    ray_job_ips = ray["described"] / (ray["elapsed_s"] - ray["engine_load_s"])
    figures = {
        "images": args.images, "batch_size": args.batch_size, "model": "tiny (seed 0)" if args.model is None else model,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end",
        "local_images_per_s": local["images_per_s"], "local_described": local["described"],
        "ray_images_per_s_excl_engine_load": round(ray_job_ips, 3),
        "ray_images_per_s_engines_up": ray["images_per_s_engines_up"], "ray_described": ray["described"],
        "ray_stages_s": ray["stages_s"], "ray_engine_load_s": ray["engine_load_s"], "ray_elapsed_s": ray["elapsed_s"],
        "local_wall_s_incl_load": local["wall_s"], "ray_wall_s_incl_load": ray["wall_s"],
        "ratio": round(ray_job_ips / local["images_per_s"], 3),
        "ratio_engines_up": round(ray["images_per_s_engines_up"] / local["images_per_s"], 3),
    }
    shutil.rmtree(work, ignore_errors=True)
    for k, v in figures.items():
        print(f"{k:36s} {v}")
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
