"""Import and export of descriptions (JSONL / Parquet). Imports are validated whole, then written atomically.

An import file holds one record per description: (id, model, prompt version) is its key, so an image may have
several (one per model, as `vfr export` writes them). A key given twice in one file is refused with both line
numbers (unless the caller allows it: then the later line wins). `vfr export` then `vfr import` into a new
store gives the same images, descriptions (with their timestamps, so each image keeps its current document)
and captions.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from vfr.store.faults import point
from vfr.store.store import DescriptionRow, ImageRow, Store, StoreError
from vfr.store.textfiles import TextFileError, iter_lines, reject_constant


class Renderer(Protocol):
    """Turns a structured description into indexed text (describe.schema.RENDERER); injected by callers
    so the store layer does not depend on describe/."""

    version: str

    def __call__(self, structured: dict) -> str: ...


class ImportError_(StoreError):
    """A bad input file; the message names the file and line (or row)."""


IMAGE_FIELDS = ("path", "collection", "size", "width", "height")


class ImportRecord(BaseModel):
    """One line of an import file. `text` may be omitted when `json` is a valid SceneDescription."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=512)
    text: str | None = None
    json_: dict[str, Any] | None = Field(default=None, alias="json")
    caption: str | list[str] | None = None  # the image's captions (given: they replace the stored ones)
    description_caption: str | None = None  # the description's own caption (absent: the first caption)
    collection: str | None = None
    meta: dict[str, Any] | None = None
    model: str = Field(default="imported", min_length=1)
    prompt_version: str = Field(default="none", min_length=1)
    # Written by `vfr export` so an export re-imports as it was (renderer_version is kept when the record
    # carries its text; it is set when vfr renders the text itself).
    renderer_version: str | None = None
    path: str | None = None
    size: int | None = Field(default=None, ge=0)
    width: int | None = Field(default=None, ge=0)
    height: int | None = Field(default=None, ge=0)
    created_at: datetime | None = None

    @field_validator("id")
    @classmethod
    def _id_printable(cls, v: str) -> str:
        if "\x00" in v or v != v.strip():
            raise ValueError("id must not contain NUL or leading/trailing whitespace")
        return v

    @field_validator("created_at")
    @classmethod
    def _local_time(cls, v: datetime | None) -> datetime | None:
        return v.astimezone().replace(tzinfo=None) if v is not None and v.tzinfo is not None else v

    @model_validator(mode="after")
    def _has_text(self, info: ValidationInfo) -> "ImportRecord":
        if self.text is not None and not self.text.strip():
            raise ValueError("text is empty")
        if self.text is None:
            render = (info.context or {}).get("render")
            if self.json_ is None or render is None:
                raise ValueError("record needs 'text' (or a structured 'json' description to render)")
            self.text = render(self.json_)
            self.renderer_version = render.version
        return self

    @property
    def key(self) -> tuple[str, str, str]:
        return self.id, self.model, self.prompt_version

    def captions(self) -> list[str]:
        if self.caption is None:
            return []
        return [self.caption] if isinstance(self.caption, str) else list(self.caption)


@dataclass(frozen=True)
class Where:
    """Where a record came from: `str()` for messages ("f.jsonl:7"), `short` to point back ("line 7")."""

    full: str
    short: str

    def __str__(self) -> str:
        return self.full


@dataclass
class Parsed:
    """Validated records of one input, one per description key; `replaced`: duplicate lines allowed to
    replace an earlier one."""

    records: list[ImportRecord] = field(default_factory=list)
    replaced: int = 0

    @property
    def images(self) -> int:
        return len({r.id for r in self.records})


def read_records(path: Path) -> Iterator[tuple[Where, dict[str, Any]]]:
    """Yield (location, raw record) from a JSONL file (UTF-8 with or without BOM, plain or gzip) or Parquet."""
    if not path.exists():
        raise ImportError_(f"{path}: no such file")
    if path.is_dir():
        raise ImportError_(f"{path} is a folder: give a .jsonl or .parquet file")
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq
        try:
            table = pq.read_table(path)
        except Exception as e:  # pyarrow raises several types for a bad file
            raise ImportError_(f"{path}: not a readable Parquet file ({e})") from None
        for i, row in enumerate(table.to_pylist(), start=1):
            yield Where(f"{path} row {i}", f"row {i}"), {k: v for k, v in row.items()
                                                         if v is not None or k == "description_caption"}
        return
    try:
        for lineno, line in iter_lines(path):
            if not line.strip():
                continue
            where = Where(f"{path}:{lineno}", f"line {lineno}")
            try:
                obj = json.loads(line, parse_constant=reject_constant)
            except json.JSONDecodeError as e:  # the decoder's own line numbers would not be the file's
                raise ImportError_(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
            except ValueError as e:  # NaN, Infinity: Python reads them, JSON (and every other reader) does not
                raise ImportError_(f"{where}: not valid JSON ({e})") from None
            if not isinstance(obj, dict):
                raise ImportError_(f"{where}: expected a JSON object, got {type(obj).__name__}")
            try:  # JSON may escape a lone UTF-16 surrogate ("\ud800"): valid JSON, not valid text
                json.dumps(obj, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError as e:
                raise ImportError_(f"{where}: contains a lone surrogate escape ({e.object[e.start]!r}), which is "
                                   "not valid Unicode text; fix or remove that character") from None
            yield where, obj
    except TextFileError as e:
        raise ImportError_(str(e)) from None


def _decode_fields(where: Where, obj: dict[str, Any]) -> dict[str, Any]:
    """Parquet/JSONL may carry the structured description and meta as JSON strings."""
    if isinstance(obj.get("json"), str):
        try:
            obj["json"] = json.loads(obj["json"], parse_constant=reject_constant)
        except json.JSONDecodeError as e:
            raise ImportError_(f"{where}: field 'json' is not valid JSON ({e.msg} at column {e.colno})") from None
        except ValueError as e:
            raise ImportError_(f"{where}: field 'json' is not valid JSON ({e})") from None
    if isinstance(obj.get("meta"), str):
        try:
            obj["meta"] = json.loads(obj["meta"], parse_constant=reject_constant)
        except ValueError:  # not JSON (or NaN): kept as text
            obj["meta"] = {"value": obj["meta"]}
    return obj


def validate(where: Where, obj: dict[str, Any], render: Renderer | None) -> ImportRecord:
    try:
        return ImportRecord.model_validate(obj, context={"render": render})
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "record"
        raise ImportError_(f"{where}: {loc}: {err['msg']}") from None


ALLOW_HINT = "pass --allow-duplicates to let the later line win"


def collect(items: Iterable[tuple[Where, ImportRecord]], allow_duplicates: bool = False,
            hint: str | None = ALLOW_HINT) -> Parsed:
    """One record per description key. A key given twice, or an image given two different paths,
    collections, sizes…, is refused naming both places (with `allow_duplicates`, the later one wins)."""
    first: dict[tuple[str, str, str], tuple[Where, int]] = {}
    image_seen: dict[str, dict[str, tuple[Any, Where]]] = {}
    out = Parsed()
    for where, rec in items:
        for name in IMAGE_FIELDS:
            value = getattr(rec, name)
            before = image_seen.setdefault(rec.id, {}).get(name)
            if value is not None and before is not None and before[0] != value and not allow_duplicates:
                raise ImportError_(f"{where}: image {rec.id!r} has {name} {value!r} here but {before[0]!r} at "
                                   f"{before[1].short}; give an image one {name}" + (f" (or {hint})" if hint else ""))
            if value is not None:
                image_seen[rec.id][name] = (value, where)
        if rec.key in first:
            if not allow_duplicates:
                raise ImportError_(
                    f"{where}: duplicate of {first[rec.key][0].short}: id {rec.id!r} (model {rec.model!r}, prompt "
                    f"version {rec.prompt_version!r}) appears twice; remove one" + (f" (or {hint})" if hint else ""))
            out.records[first[rec.key][1]] = rec
            out.replaced += 1
            continue
        first[rec.key] = (where, len(out.records))
        out.records.append(rec)
    return out


def parse_file(path: Path, render: Renderer | None = None, allow_duplicates: bool = False) -> Parsed:
    """Validate every record before anything is written; the first bad one aborts with its location.
    `render` turns a structured `json` description into text when a record has none."""
    parsed = collect(((where, validate(where, _decode_fields(where, obj), render))
                      for where, obj in read_records(path)), allow_duplicates)
    if not parsed.records:
        raise ImportError_(f"{path}: no records found")
    return parsed


def import_file(store: Store, path: Path, render: Renderer | None = None, allow_duplicates: bool = False) -> Parsed:
    """Import one file atomically and idempotently. Returns what was imported."""
    parsed = parse_file(path, render, allow_duplicates)
    point("import:parsed")
    write_records(store, parsed.records)
    point("import:committed")  # committed, not yet acknowledged to the user
    return parsed


def write_records(store: Store, records: list[ImportRecord]) -> None:
    """Validated records (one per description key) → images, descriptions and captions, in one
    transaction. An image's fields are merged over its records; captions given replace the stored ones."""
    images: dict[str, dict[str, Any]] = {}
    for r in records:
        row = images.setdefault(r.id, {})
        for name in IMAGE_FIELDS:
            if getattr(r, name) is not None:
                row[name] = getattr(r, name)
    descs = [DescriptionRow(
        image_id=r.id, text=r.text or "", model=r.model, prompt_version=r.prompt_version,
        renderer_version=r.renderer_version,
        json=json.dumps(r.json_) if r.json_ is not None else None,
        caption=r.description_caption if "description_caption" in r.model_fields_set else next(iter(r.captions()), None),
        meta=json.dumps(r.meta) if r.meta is not None else None, created_at=r.created_at) for r in records]
    caps = list(dict.fromkeys((r.id, c) for r in records for c in r.captions()))
    store.upsert([ImageRow(id=i, **f) for i, f in images.items()], descs, caps,
                 replace_captions={r.id for r in records if r.caption is not None})


def export(store: Store, out: Path, fmt: str | None = None) -> int:
    """Write every description to Parquet or JSONL (by `fmt` or the file suffix). Returns rows written."""
    fmt = fmt or ("parquet" if out.suffix.lower() == ".parquet" else "jsonl")
    rel = store.export_relation()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    if fmt == "parquet":
        rel.write_parquet(str(tmp))
    elif fmt == "jsonl":
        with tmp.open("w", encoding="utf-8") as f:
            for batch in rel.to_arrow_reader(10_000):
                for row in batch.to_pylist():
                    f.write(json.dumps(_export_row(row), ensure_ascii=False) + "\n")
    else:
        raise StoreError(f"unknown export format {fmt!r}: use parquet or jsonl")
    tmp.replace(out)
    return int(store.con.execute("SELECT count(*) FROM descriptions").fetchall()[0][0])


def _export_row(row: dict[str, Any]) -> dict[str, Any]:
    row["json"] = json.loads(row["json"]) if row["json"] else None
    row["meta"] = json.loads(row["meta"]) if row["meta"] else None
    row["created_at"] = row["created_at"].isoformat() if row["created_at"] else None
    return {k: v for k, v in row.items() if v is not None or k == "description_caption"}  # null is information
