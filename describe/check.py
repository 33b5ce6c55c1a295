"""`vfr describe --check`: verify a machine (engine, model, device, speed) before a long job.

The check describes generated pictures (shapes on a plain background, nothing read from disk, nothing
stored): one first, which must come back schema-valid, then a timed batch for the images/s figure.
"""
from __future__ import annotations

import os
import platform
import random
import time
from typing import Any

from vfr.describe.describer import ValidatingDescriber
from vfr.describe.reader import ImageRef
from vfr.describe.schema import SceneDescription


def generated_images(n: int, seed: int = 0, size: tuple[int, int] = (448, 336)) -> list[ImageRef]:
    """`n` distinct synthetic pictures, as the reader would hand them to the engine."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    refs = []
    for i in range(n):
        im = Image.new("RGB", size, tuple(rng.randint(0, 255) for _ in range(3)))
        draw = ImageDraw.Draw(im)
        for _ in range(3):
            x, y = rng.randint(0, size[0] - 40), rng.randint(0, size[1] - 40)
            box = [x, y, x + rng.randint(20, 200), y + rng.randint(20, 150)]
            fill = tuple(rng.randint(0, 255) for _ in range(3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
        refs.append(ImageRef(f"check-{i}", f"(generated {i})", 0, size[0], size[1], im))
    return refs


def device(engine: Any) -> str:
    """What the engine runs on, in words."""
    name = getattr(engine, "name", "")
    if name == "server":
        return f"remote: {engine.base}"
    if name != "offline":
        return f"whatever the {name} engine uses"
    from vfr.describe.engine_vllm import on_cpu

    if on_cpu():
        return f"CPU ({os.cpu_count()} cores, {platform.machine()})"
    try:
        import torch

        n = torch.cuda.device_count()
        if n:
            gib = torch.cuda.get_device_properties(0).total_memory / 2**30
            return f"{n} x {torch.cuda.get_device_name(0)} ({gib:.0f} GiB)"
    except Exception:  # noqa: BLE001 - a label only
        pass
    return "accelerator (unknown)"


def run(engine: Any, model: str, batch: int = 4, load_s: float | None = None) -> dict[str, Any]:
    """Describe one generated image, then `batch` more (timed); the report says whether all were valid."""
    describer = ValidatingDescriber(engine, redact_text=True)
    images = generated_images(batch + 1)
    t0 = time.perf_counter()
    first = describer.describe(images[:1])
    first_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    rest = describer.describe(images[1:]) if batch else []
    elapsed = time.perf_counter() - t1
    results = first + rest
    valid = sum(isinstance(r, SceneDescription) for r in results)
    stats = describer.stats
    errors = [f"{r.reason}: {r.detail}" for r in results if not isinstance(r, SceneDescription)]
    return {
        "ok": valid == len(results),
        "engine": _engine_label(engine),
        "model": model,
        "device": device(engine),
        "images": len(results),
        "valid": valid,
        "retried": stats.retried,
        "first_image_s": round(first_s, 3),
        "images_per_s": round(len(rest) / elapsed, 3) if rest and elapsed else None,
        "tokens_per_s": round((stats.prompt_tokens + stats.completion_tokens) / stats.engine_s, 1)
        if stats.engine_s else None,
        "load_s": round(load_s, 1) if load_s is not None else None,
        "caption": next((r.caption for r in results if isinstance(r, SceneDescription)), None),
        "errors": errors[:3],
    }


def _engine_label(engine: Any) -> str:
    if getattr(engine, "name", "") == "server":
        return f"server (OpenAI-compatible API at {engine.base})"
    if getattr(engine, "name", "") != "offline":
        return f"{getattr(engine, 'name', '?')} engine"
    import vllm   # already loaded by the engine

    return f"vLLM {getattr(vllm, '__version__', '?')} offline (in this process)"


def lines(report: dict[str, Any]) -> list[str]:
    """The report for people, one fact per line."""
    speed = (f"{report['images_per_s']} images/s, {report['tokens_per_s']} tokens/s over {report['images'] - 1} "
             "images" if report["images_per_s"] else "no timed batch")
    out = [f"engine   {report['engine']}",
           f"model    {report['model']}" + (f" ({report['source']})" if report.get("source") else ""),
           f"device   {report['device']}",
           f"output   {report['valid']}/{report['images']} schema-valid ({report['retried']} retried)",
           f"speed    {speed}; first image {report['first_image_s']} s"
           + (f"; engine load {report['load_s']} s" if report.get("load_s") is not None else "")]
    if report["caption"]:
        out.append(f"caption  {report['caption'][:120]!r}")
    out += [f"error    {e}" for e in report["errors"]]
    out.append("check passed" if report["ok"] else "check FAILED: the engine's output did not validate")
    return out
