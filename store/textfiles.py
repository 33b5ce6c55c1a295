"""The one reader of line-oriented text files (JSONL records, query files, id lists): UTF-8 with or without
a byte-order mark, plain or gzip-compressed (`.gz`), with errors that name the file and line; and the one
JSON writer for what vfr prints or saves (standard JSON: never NaN or Infinity).

It lives in the lowest layer so the store's importer, evaluation and the CLI share it."""
from __future__ import annotations

import gzip
import io
import json
import math
from pathlib import Path
from typing import Any, Iterator


class TextFileError(ValueError):
    """A file that cannot be read as text; the message names the file (and line)."""


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line without its end-of-line) for every line of `path`."""
    if not path.exists():
        raise TextFileError(f"{path}: no such file")
    if path.is_dir():
        raise TextFileError(f"{path} is a folder: give a file")
    with open(path, "rb") as raw:
        head = raw.read(2)
    opener = gzip.open if head == b"\x1f\x8b" else open
    try:
        with opener(path, "rb") as f:
            for lineno, data in enumerate(f, start=1):
                try:
                    line = data.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise TextFileError(f"{path}:{lineno}: not UTF-8 text ({e.reason} at byte {e.start}); "
                                        "save the file as UTF-8") from None
                if lineno == 1:
                    line = line.removeprefix("\ufeff")
                yield lineno, line.rstrip("\r\n")
    except (gzip.BadGzipFile, EOFError, io.UnsupportedOperation, OSError) as e:
        if isinstance(e, TextFileError):
            raise
        raise TextFileError(f"{path}: cannot read this compressed file ({e})") from None


def read_lines(path: Path) -> list[str]:
    return [line for _, line in iter_lines(path)]


def finite(obj: Any) -> Any:
    """`obj` with every NaN or infinite float replaced by None: JSON has no such numbers."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def json_dumps(obj: Any, **kwargs: Any) -> str:
    """Standard JSON text (non-finite numbers become null, so any JSON parser reads it)."""
    return json.dumps(finite(obj), allow_nan=False, **kwargs)


def reject_constant(name: str) -> Any:
    """`json.loads(..., parse_constant=reject_constant)`: Python accepts NaN and Infinity, JSON does not."""
    raise ValueError(f"{name} is not a JSON number")
