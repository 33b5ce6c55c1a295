"""Query files and search options, as the CLI parses them (the engine takes plain strings and settings).

A query file is JSONL ({"id", "text"} per line) or plain text (one query a line, ids q<line number>),
UTF-8 with or without a byte-order mark, plain or gzip. It is read lazily in chunks, so a file of any size streams:
results of the first chunk print while the rest is still unread, and memory stays flat.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterator

from vfr.retrieve.fusion import FusionConfig

CHUNK = 256  # queries searched and printed together


class QueryFileError(ValueError):
    """A bad query file or option; the message names the file and line."""


def iter_queries(path: Path) -> Iterator[tuple[str, str]]:
    """(id, text) per query; the first bad line stops with its file and line number."""
    from vfr.store.textfiles import TextFileError, iter_lines

    seen: set[str] = set()
    any_query = False
    try:
        for lineno, line in iter_lines(path):
            if not line.strip():
                continue
            qid, text = _parse_line(path, lineno, line)
            if qid in seen:
                raise QueryFileError(f"{path}:{lineno}: duplicate query id {qid!r}")
            seen.add(qid)
            any_query = True
            yield qid, text
    except TextFileError as e:
        raise QueryFileError(str(e)) from None
    if not any_query:
        raise QueryFileError(f"{path}: no queries")


def _parse_line(path: Path, lineno: int, line: str) -> tuple[str, str]:
    from vfr.store.textfiles import reject_constant

    if not line.lstrip().startswith("{"):
        return f"q{lineno}", line
    try:
        obj = json.loads(line, parse_constant=reject_constant)
    except json.JSONDecodeError as e:
        raise QueryFileError(f"{path}:{lineno}: not valid JSON ({e.msg} at column {e.colno}); "
                             'expected {"id": str, "text": str}') from None
    except ValueError as e:
        raise QueryFileError(f'{path}:{lineno}: not valid JSON ({e}); expected {{"id": str, "text": str}}') from None
    if not isinstance(obj, dict) or "id" not in obj or "text" not in obj:
        raise QueryFileError(f'{path}:{lineno}: expected {{"id": str, "text": str}}')
    if not isinstance(obj["text"], str):
        raise QueryFileError(f"{path}:{lineno}: 'text' must be a string")
    return str(obj["id"]), obj["text"]


def read_queries(path: Path) -> dict[str, str]:
    """All queries of a file (small files; the CLI streams with `iter_queries`)."""
    return dict(iter_queries(path))


def chunks(items: Iterator[tuple[str, str]], size: int = CHUNK) -> Iterator[dict[str, str]]:
    batch: dict[str, str] = {}
    for qid, text in items:
        batch[qid] = text
        if len(batch) >= size:
            yield batch
            batch = {}
    if batch:
        yield batch


def fusion_config(method: str | None, weights: str | None, norm: str | None, depth: int | None,
                  default: FusionConfig | None = None) -> FusionConfig:
    """Hybrid settings from CLI options; every number must be finite."""
    base = default or FusionConfig()
    try:
        w = tuple(float(x) for x in weights.split(",")) if weights else base.weights
        if not all(math.isfinite(x) for x in w):
            raise ValueError("weights must be finite numbers")
        return FusionConfig(method=method or base.method, weights=w, norm=norm or base.norm,  # type: ignore[arg-type]
                            depth=depth or base.depth, rrf_k=base.rrf_k)
    except ValueError as e:
        raise QueryFileError(f"bad fusion settings: {e}") from None
