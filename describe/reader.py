"""Find image files, hash them, decode them safely, downscale them to the model's pixel budget.

The image id is the sha256 of the file's bytes, so one picture under two names is described once.
Pixels live only in memory for the duration of a batch: nothing here writes or copies an image.
A file that cannot be used becomes a `ReadError` with a short machine-readable reason; the job goes on.
"""
from __future__ import annotations

import glob
import hashlib
import io
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".dib", ".tif", ".tiff"}
# Formats Pillow may detect that we accept; anything else (PDF, PSD, ICO, ...) is "unsupported_format".
FORMATS = {"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "DIB", "TIFF"}

DEFAULT_MAX_FILE_BYTES = 200 * 1024 * 1024     # larger files are refused before being read
DEFAULT_MAX_DECODE_PIXELS = 120_000_000         # decompression-bomb guard (header size, before decoding)
DEFAULT_MAX_PIXELS = 1280 * 28 * 28             # Qwen2.5-VL's default budget; larger images are downscaled

# Error reasons (stable strings: they are counted in job rows and filterable in job_errors).
EMPTY, TOO_LARGE, UNREADABLE, NOT_IMAGE, UNSUPPORTED, TRUNCATED, BOMB, CORRUPT = (
    "empty", "too_large", "unreadable", "not_image", "unsupported_format", "truncated",
    "decompression_bomb", "corrupt")


@dataclass(slots=True)
class ImageRef:
    """A decoded image ready for a vision LLM. `image` is RGB and within the pixel budget."""

    id: str                      # sha256 of the file bytes
    path: str
    size: int                    # bytes
    width: int                   # after EXIF orientation, before downscaling
    height: int
    image: Image.Image | None = None


@dataclass(frozen=True, slots=True)
class ReadError:
    path: str
    reason: str
    detail: str
    image_id: str | None = None


@dataclass(frozen=True, slots=True)
class ReaderLimits:
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    max_decode_pixels: int = DEFAULT_MAX_DECODE_PIXELS
    max_pixels: int = DEFAULT_MAX_PIXELS


# -- discovery -------------------------------------------------------------------------------------
def discover(specs: Iterable[str | Path]) -> Iterator[Path]:
    """Expand folders (recursively, image suffixes only), globs and `@list.txt` files, in a stable order.

    Files named explicitly (or matched by a glob, or listed) are always tried, whatever their suffix,
    so a mis-named file gets an error row instead of silently vanishing. Each path is yielded once.
    """
    seen: set[str] = set()
    for spec in specs:
        for path in _expand(str(spec)):
            key = os.path.abspath(path)
            if key not in seen:
                seen.add(key)
                yield path


def _expand(spec: str) -> Iterator[Path]:
    if spec.startswith("@"):
        with open(spec[1:], encoding="utf-8") as fh:
            for line in fh:
                if line.strip() and not line.lstrip().startswith("#"):
                    yield from _expand(line.strip())
        return
    p = Path(spec)
    if p.is_dir():
        unlisted: list[OSError] = []   # folders os.walk could not list: yielded, so they become error rows
        for root, dirs, files in os.walk(p, onerror=unlisted.append):
            yield from _drain(unlisted)
            dirs.sort()
            for name in sorted(files):
                if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                    yield Path(root) / name
        yield from _drain(unlisted)
    elif p.exists() or p.is_symlink() or not glob.has_magic(spec):
        yield p  # missing files too: they become "unreadable" error rows
    else:
        for match in sorted(glob.glob(spec, recursive=True)):
            yield from _expand(match)


def _drain(errors: list[OSError]) -> Iterator[Path]:
    while errors:
        e = errors.pop(0)
        if e.filename is not None:
            yield Path(e.filename)


# -- reading ---------------------------------------------------------------------------------------
def read_bytes(path: Path, limits: ReaderLimits) -> tuple[bytes, str] | ReadError:
    """The file's bytes and sha256, or why they cannot be had."""
    try:
        st = path.stat()
        if stat.S_ISDIR(st.st_mode):
            return ReadError(str(path), UNREADABLE, _folder_detail(path))
        size = st.st_size
        if size == 0:
            return ReadError(str(path), EMPTY, "zero-byte file")
        if size > limits.max_file_bytes:
            return ReadError(str(path), TOO_LARGE, f"{size} bytes > limit {limits.max_file_bytes}")
        data = path.read_bytes()
    except OSError as e:
        return ReadError(str(path), UNREADABLE, f"{type(e).__name__}: {e.strerror or e}")
    return data, hashlib.sha256(data).hexdigest()


def _folder_detail(path: Path) -> str:
    """Folders reach the reader only when they could not be listed (or were named in a file list)."""
    try:
        with os.scandir(path):
            pass
    except OSError as e:
        return f"folder could not be listed: {type(e).__name__}: {e.strerror or e}"
    return "a folder, not an image file"


def decode(data: bytes, path: str, image_id: str, limits: ReaderLimits) -> ImageRef | ReadError:
    """Decode (first frame), apply EXIF orientation, convert to RGB, downscale to `max_pixels`."""
    def err(reason: str, detail: str) -> ReadError:
        return ReadError(path, reason, detail[:300], image_id)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            if im.format not in FORMATS:
                return err(UNSUPPORTED, f"{im.format} is not a supported image format")
            w, h = im.size
            if w * h > limits.max_decode_pixels:
                return err(BOMB, f"{w}x{h} pixels > limit {limits.max_decode_pixels}")
            if im.format == "JPEG":  # let libjpeg decode at a reduced scale when we will downscale anyway
                im.draft("RGB", _target_size(w, h, limits.max_pixels))
            im.load()
            width, height = (h, w) if im.getexif().get(0x0112) in (5, 6, 7, 8) else (w, h)
            im = ImageOps.exif_transpose(im)
            im = _to_rgb(im)
            if im.width * im.height > limits.max_pixels:
                im = im.resize(_target_size(im.width, im.height, limits.max_pixels), Image.Resampling.BICUBIC)
    except UnidentifiedImageError:
        return err(NOT_IMAGE, "not an image Pillow can identify")
    except Image.DecompressionBombError as e:
        return err(BOMB, str(e))
    except OSError as e:
        msg = str(e)
        return err(TRUNCATED if "truncated" in msg.lower() else CORRUPT, msg)
    except (ValueError, SyntaxError, EOFError, IndexError, KeyError, TypeError) as e:
        return err(CORRUPT, f"{type(e).__name__}: {e}")
    except MemoryError:
        return err(BOMB, "out of memory while decoding")
    return ImageRef(id=image_id, path=path, size=len(data), width=width, height=height, image=im)


def read(path: Path, limits: ReaderLimits = ReaderLimits()) -> ImageRef | ReadError:
    """`read_bytes` then `decode`: one call for callers that do not need to skip before decoding."""
    got = read_bytes(path, limits)
    if isinstance(got, ReadError):
        return got
    return decode(got[0], str(path), got[1], limits)


def _target_size(w: int, h: int, max_pixels: int) -> tuple[int, int]:
    if w * h <= max_pixels:
        return w, h
    scale = (max_pixels / (w * h)) ** 0.5
    return max(1, int(w * scale)), max(1, int(h * scale))


def _to_rgb(im: Image.Image) -> Image.Image:
    """RGB on a white background: transparent pixels would otherwise turn black."""
    if im.mode == "RGB":
        return im
    if im.mode in ("P", "PA") and "transparency" in im.info or im.mode in ("RGBA", "LA", "PA"):
        rgba = im.convert("RGBA")
        bg = Image.new("RGB", rgba.size, (255, 255, 255))
        bg.paste(rgba, mask=rgba.getchannel("A"))
        return bg
    return im.convert("RGB")
