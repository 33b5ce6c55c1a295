"""Shared by the describe tests: images made with Pillow, and a fake engine (no vLLM)."""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw

from vfr.describe.describer import Generation
from vfr.describe.reader import ImageRef

FORMATS = [("jpg", "JPEG"), ("png", "PNG"), ("webp", "WEBP"), ("gif", "GIF"), ("bmp", "BMP"), ("tif", "TIFF")]


def make_images(folder: Path, n: int, seed: int = 0, sizes: Sequence[tuple[int, int]] | None = None) -> list[Path]:
    """`n` distinct images of varied sizes, cycling through every supported format."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        w, h = sizes[i % len(sizes)] if sizes else (rng.randint(8, 1200), rng.randint(8, 900))
        im = Image.new("RGB", (w, h), tuple(rng.randint(0, 255) for _ in range(3)))
        draw = ImageDraw.Draw(im)
        for _ in range(4):
            x, y = rng.randint(0, w), rng.randint(0, h)
            draw.ellipse([x, y, x + rng.randint(1, w), y + rng.randint(1, h)],
                         fill=tuple(rng.randint(0, 255) for _ in range(3)))
        ext, fmt = FORMATS[i % len(FORMATS)]
        path = folder / f"img{seed}_{i:04d}.{ext}"
        im.save(path, fmt)
        paths.append(path)
    return paths


def make_bad_files(folder: Path, good: Path) -> dict[str, str]:
    """One file per failure reason; returns file name → expected reason."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "text.png").write_text("this is not an image\n" * 10)
    (folder / "truncated.png").write_bytes(good.read_bytes()[: max(64, good.stat().st_size // 3)])
    data = bytearray(good.read_bytes())
    a, b = int(len(data) * 0.3), int(len(data) * 0.7)
    data[a:b] = random.Random(1).randbytes(b - a)  # damaged compressed data: zlib fails
    (folder / "corrupt.png").write_bytes(bytes(data))
    return {"zero.jpg": "empty", "text.png": "not_image", "truncated.png": "truncated", "corrupt.png": "corrupt"}


def valid_json(ref: ImageRef) -> str:
    """A description that depends on the pixels (mean colour) so tests can tell images apart."""
    r, g, b = (int(c) for c in ref.image.resize((1, 1)).getpixel((0, 0)))
    return json.dumps({
        "caption": f"A test picture {ref.width}x{ref.height} with mean colour {r} {g} {b}.",
        "objects": [{"name": "shape", "count": 2, "colors": ["red" if r > b else "blue"], "position": "center"}],
        "relations": [{"subject": "shape", "predicate": "next to", "object": "shape"}],
        "actions": [], "setting": {"scene": "synthetic test image", "indoor": True},
        "visible_text": ["call 555-123-4567"], "style": "flat colours"})


class FakeEngine:
    """Stands in for vLLM: valid JSON by default; `bad` ids fail the first `bad_rounds` attempts."""

    name = "fake"

    def __init__(self, bad: set[str] = frozenset(), bad_rounds: int = 1, fail_after: int | None = None) -> None:
        self.bad = set(bad)
        self.bad_rounds = bad_rounds
        self.calls: list[tuple[int, bool]] = []
        self.seen: dict[str, int] = {}
        self.fail_after = fail_after          # raise KeyboardInterrupt on this call number (simulated kill)

    def generate(self, batch: Sequence[ImageRef], retry: bool = False) -> list[Generation]:
        self.calls.append((len(batch), retry))
        if self.fail_after is not None and len(self.calls) > self.fail_after:
            raise KeyboardInterrupt
        out = []
        for ref in batch:
            self.seen[ref.id] = self.seen.get(ref.id, 0) + 1
            if ref.id in self.bad and self.seen[ref.id] <= self.bad_rounds:
                out.append(Generation('{"caption": "cut', 10, 5, finish_reason="length"))
            else:
                out.append(Generation(valid_json(ref), 10, 20, finish_reason="stop"))
        return out
