"""Import and export of descriptions (JSONL / Parquet). Imports are validated whole, then written atomically."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from vfr.store.store import DescriptionRow, ImageRow, Store, StoreError


class Renderer(Protocol):
    """Turns a structured description into indexed text (describe.schema.RENDERER); injected by callers
    so the store layer does not depend on describe/."""

    version: str

    def __call__(self, structured: dict) -> str: ...


class ImportError_(StoreError):
    """A bad input file; the message names the file and line (or row)."""


class ImportRecord(BaseModel):
    """One line of an import file. `text` may be omitted when `json` is a valid SceneDescription."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=512)
    text: str | None = None
    json_: dict[str, Any] | None = Field(default=None, alias="json")
    caption: str | list[str] | None = None
    collection: str | None = None
    meta: dict[str, Any] | None = None
    model: str = "imported"
    prompt_version: str = "none"
    # Written by `vfr export`; accepted so an export re-imports as is (renderer_version is kept when the
    # record carries its text; it is set when vfr renders the text itself).
    renderer_version: str | None = None
    path: str | None = None
    size: int | None = None
    created_at: Any = None

    @field_validator("id")
    @classmethod
    def _id_printable(cls, v: str) -> str:
        if "\x00" in v or v != v.strip():
            raise ValueError("id must not contain NUL or leading/trailing whitespace")
        return v

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

    def captions(self) -> list[str]:
        if self.caption is None:
            return []
        return [self.caption] if isinstance(self.caption, str) else list(self.caption)


def read_records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (location, raw record) from a .jsonl/.json-lines or .parquet file."""
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
            yield f"{path} row {i}", {k: v for k, v in row.items() if v is not None}
        return
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ImportError_(f"{where}: not valid JSON ({e})") from None
            if not isinstance(obj, dict):
                raise ImportError_(f"{where}: expected a JSON object, got {type(obj).__name__}")
            try:  # JSON may escape a lone UTF-16 surrogate ("\ud800"): valid JSON, not valid text
                json.dumps(obj, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError as e:
                raise ImportError_(f"{where}: contains a lone surrogate escape ({e.object[e.start]!r}), which is "
                                   "not valid Unicode text; fix or remove that character") from None
            yield where, obj


def parse_file(path: Path, render: Renderer | None = None) -> list[ImportRecord]:
    """Validate every record before anything is written; the first bad one aborts with its location.
    `render` turns a structured `json` description into text when a record has none."""
    records: dict[str, ImportRecord] = {}
    for where, obj in read_records(path):
        if isinstance(obj.get("json"), str):  # Parquet/JSONL may carry the structured description as a string
            try:
                obj["json"] = json.loads(obj["json"])
            except json.JSONDecodeError as e:
                raise ImportError_(f"{where}: field 'json' is not valid JSON ({e})") from None
        if isinstance(obj.get("meta"), str):
            try:
                obj["meta"] = json.loads(obj["meta"])
            except json.JSONDecodeError:
                obj["meta"] = {"value": obj["meta"]}
        try:
            rec = ImportRecord.model_validate(obj, context={"render": render})
        except ValidationError as e:
            err = e.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "record"
            raise ImportError_(f"{where}: {field}: {err['msg']}") from None
        records[rec.id] = rec  # a later line with the same id wins, as a re-import would
    if not records:
        raise ImportError_(f"{path}: no records found")
    return list(records.values())


def import_file(store: Store, path: Path, render: Renderer | None = None) -> int:
    """Import one file atomically and idempotently. Returns the number of records."""
    records = parse_file(path, render)
    write_records(store, records)
    return len(records)


def write_records(store: Store, records: list[ImportRecord]) -> None:
    """Validated records → images, descriptions and captions, in one transaction."""
    images = [ImageRow(id=r.id, collection=r.collection) for r in records]
    descs = [DescriptionRow(
        image_id=r.id, text=r.text or "", model=r.model, prompt_version=r.prompt_version,
        renderer_version=r.renderer_version,
        json=json.dumps(r.json_) if r.json_ is not None else None,
        caption=r.captions()[0] if r.captions() else None,
        meta=json.dumps(r.meta) if r.meta is not None else None) for r in records]
    caps = [(r.id, c) for r in records for c in r.captions()]
    store.upsert(images, descs, caps)


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
    return {k: v for k, v in row.items() if v is not None}
