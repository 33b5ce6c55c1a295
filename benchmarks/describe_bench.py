"""Pipeline efficiency of `vfr describe`: its images/s ÷ bare `LLM.chat` images/s, same images, model, batch size.

    python benchmarks/describe_bench.py [--images 512] [--batch-size 32] [--model DIR]

Both passes share one loaded engine; prefix caching and the multimodal processor cache are off so the
second pass cannot reuse the first one's work. The bare pass gets its images already decoded in memory
(the best case for the baseline); the vfr pass starts from files on disk and includes hashing, decoding,
validation, redaction and DuckDB writes. Prints per-stage timings. Target: ratio >= 0.9.
Without --model it builds the tiny random-weight model (CPU: expect a few images/s, it is the ratio that counts).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    formats = [("jpg", "JPEG"), ("png", "PNG"), ("webp", "WEBP"), ("jpg", "JPEG"), ("gif", "GIF"), ("jpg", "JPEG")]
    paths = []
    for i in range(n):
        w, h = rng.choice([(640, 480), (1024, 768), (300, 300), (1920, 1080), (480, 640), (200, 120)])
        im = Image.new("RGB", (w, h), tuple(rng.randint(0, 255) for _ in range(3)))
        draw = ImageDraw.Draw(im)
        for _ in range(6):
            x, y = rng.randint(0, w), rng.randint(0, h)
            draw.rectangle([x, y, x + rng.randint(1, w // 2), y + rng.randint(1, h // 2)],
                           fill=tuple(rng.randint(0, 255) for _ in range(3)))
        ext, fmt = formats[i % len(formats)]
        p = folder / f"b{i:05d}.{ext}"
        im.save(p, fmt)
        paths.append(p)
    return paths


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--model", default=None, help="model folder or name (default: build the tiny model)")
    ap.add_argument("--max-tokens", type=int, default=1024)
    ap.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = ap.parse_args()

    if not os.environ.get("CUDA_VISIBLE_DEVICES") and args.model is None:
        # Tiny model on CPU: one unbound thread is fastest (its ops are too small to split).
        for k, v in {"OMP_NUM_THREADS": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind"}.items():
            os.environ.setdefault(k, v)
    for k, v in {"HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "VLLM_HOST_IP": "127.0.0.1"}.items():
        os.environ.setdefault(k, v)

    from vfr.describe import job, tiny_vlm
    from vfr.describe.describer import ValidatingDescriber
    from vfr.describe.engine_vllm import VllmEngine, VllmOptions
    from vfr.describe.job import JobConfig, StoreSink
    from vfr.describe.prompt import messages, prompt_version
    from vfr.describe.reader import ReaderLimits, read
    from vfr.store.store import Store

    work = Path(tempfile.mkdtemp(prefix="vfr-bench-"))
    model = args.model or str(tiny_vlm.build(work / "tiny-vlm", seed=0))
    paths = make_images(work / "img", args.images)
    t0 = time.perf_counter()
    eng = VllmEngine(VllmOptions(model=model, max_model_len=4096, max_tokens=args.max_tokens,
                                 extra={"enable_prefix_caching": False, "mm_processor_cache_gb": 0}))
    load_s = time.perf_counter() - t0
    limits = ReaderLimits(max_pixels=eng.max_pixels)
    params = eng.params(retry=False)
    eng.llm.chat([messages(read(paths[0], limits).image)], params, use_tqdm=False)  # warm-up

    # Bare LLM.chat: images decoded up front (not timed), only the engine calls are timed.
    images = [read(p, limits).image for p in paths]
    t0 = time.perf_counter()
    bare_tokens = 0
    for i in range(0, len(images), args.batch_size):
        outs = eng.llm.chat([messages(im) for im in images[i:i + args.batch_size]], params, use_tqdm=False)
        bare_tokens += sum(len(o.outputs[0].token_ids) for o in outs)
    bare_s = time.perf_counter() - t0
    del images

    # vfr describe: files → store, the full pipeline.
    cfg = JobConfig(model=model, prompt_version=prompt_version(True), batch_size=args.batch_size, limits=limits)
    counts = job.run([work / "img"], ValidatingDescriber(eng), StoreSink(work / "bench.duckdb"), cfg)
    with Store(work / "bench.duckdb", read_only=True) as store:   # the job opens it per batch, as the CLI does
        valid = store.con.execute("SELECT count(*) FROM descriptions").fetchone()[0]

    bare_ips = len(paths) / bare_s
    vfr_ips = counts["described"] / counts["elapsed_s"]
    figures = {
        "images": len(paths), "batch_size": args.batch_size, "model": "tiny-vlm (seed 0)" if args.model is None else model,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "engine_load_s": round(load_s, 1),
        "bare_llm_chat_images_per_s": round(bare_ips, 3), "bare_completion_tokens": bare_tokens,
        "vfr_describe_images_per_s": round(vfr_ips, 3), "efficiency_ratio": round(vfr_ips / bare_ips, 3),
        "vfr_stages_s": counts["stages_s"], "vfr_elapsed_s": counts["elapsed_s"],
        "vfr_completion_tokens": counts["completion_tokens"], "vfr_tokens_per_s": counts["tokens_per_s"],
        "schema_valid": f"{valid}/{len(paths)}", "retried": counts["retried"], "failed": counts["failed"],
        "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
    }
    for k, v in figures.items():
        print(f"{k:>30}: {v}")
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
