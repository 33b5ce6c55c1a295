"""`vfr import`, `vfr export`, `vfr stats`."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vfr.common import DbOption, IndexOption, console, counted, fail, out
from vfr.store.textfiles import json_dumps


def register(app: typer.Typer) -> None:
    app.command("import")(import_cmd)
    app.command("export")(export_cmd)
    app.command("stats")(stats_cmd)


def import_cmd(
    paths: Annotated[list[Path], typer.Argument(help="JSONL (plain or .gz, UTF-8 with or without BOM) or Parquet "
                                                     "files of descriptions.")],
    db: DbOption,
    allow_duplicates: Annotated[bool, typer.Option(
        "--allow-duplicates", help="Let a later line replace an earlier one with the same id, model and prompt "
                                   "version (default: refuse the file, naming both lines).")] = False,
) -> None:
    """Import descriptions: one record per description, at least {"id": str, "text": str}.

    Optional fields: "json" (structured SceneDescription; rendered to text when "text" is absent),
    "caption" (string or list: the image's captions, replacing those stored), "collection", "meta" (object),
    "model", "prompt_version", and what `vfr export` writes (path, size, width, height, created_at,
    renderer_version, description_caption), so an export re-imports as it was. An image may have one record
    per model and prompt version; its current document is the newest (created_at, else the import time; later
    lines of one file are newer).
    Each file is validated whole first and imported in one transaction: a bad line imports nothing
    and the error names the file and line. Importing the same ids again updates them.
    """
    from vfr.describe.schema import RENDERER
    from vfr.store.io import import_file
    from vfr.store.store import DatabaseErrors, Store, StoreError

    from vfr.retrieve.index import index_exists
    from vfr.settings import default_index

    try:
        with Store(db) as store:
            for path in paths:
                parsed = import_file(store, path, RENDERER, allow_duplicates)
                console.print(f"imported {counted(len(parsed.records), 'record')} "
                              f"({counted(parsed.images, 'image')}) from {path} into {db}"
                              + (f"; {counted(parsed.replaced, 'duplicate line')} replaced earlier ones"
                                 if parsed.replaced else ""), highlight=False)
    except StoreError as e:
        fail(str(e))
    except (OSError, *DatabaseErrors) as e:  # a full disk, a read-only folder: nothing of this file was written
        fail(f"cannot write {db}: {_first_line(e)}; nothing from the failed file was imported (fix it and run "
             "the import again)")
    if index_exists(default_index(db)):
        console.print("run `vfr index` to make them searchable (it applies only what changed)")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def export_cmd(
    out_path: Annotated[Path, typer.Argument(metavar="OUT", help="Output file: .parquet or .jsonl.")],
    db: DbOption,
    fmt: Annotated[str | None, typer.Option("--format", help="parquet | jsonl (default: from the suffix).")] = None,
) -> None:
    """Export every description (with captions and metadata) to Parquet or JSONL; re-importable."""
    from vfr.store.io import export
    from vfr.store.store import Store, StoreError

    try:
        with Store(db, read_only=True) as store:
            n = export(store, out_path, fmt)
    except StoreError as e:
        fail(str(e))
    console.print(f"exported {counted(n, 'description')} to {out_path}", highlight=False)


def stats_cmd(db: DbOption, index: IndexOption = None,
              as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Counts of images, documents, descriptions by model, captions, cached embeddings and jobs; and the
    index: generation, documents, segments, deleted rows awaiting compaction, and store changes it lacks."""
    from vfr.engine import Engine, EngineError
    from vfr.retrieve.index import index_exists
    from vfr.store.store import Store, StoreError

    try:
        with Store(db, read_only=True) as store:
            stats = store.stats()
        engine = Engine.open(db, index)
        if index_exists(engine.index_dir):
            idx = engine.stats()
            pending = engine.pending()
            stats["index"] = {k: idx[k] for k in ("index", "generation", "documents", "segments", "deleted_rows",
                                                  "applied_seq", "committed_at")}
            stats["index"]["pending_changes"] = pending.describe()
    except (StoreError, EngineError) as e:
        fail(str(e))
    if as_json:
        out.print_json(json_dumps(stats))
        return
    for line in stats_lines(stats):
        out.print(line, highlight=False)


def stats_lines(stats: dict, width: int = 22, most: int = 20) -> list[str]:
    """`vfr stats` for people: one line per figure; a table of figures (collections, the index) as indented
    lines below its name, at most `most` of them (--json has all); a list of records one line each."""
    lines = []
    for key, value in stats.items():
        if isinstance(value, dict) and value:
            lines.append(f"{key:>{width}}:")
            lines += [f"{'':>{width}}  {sub}: {v}" for sub, v in list(value.items())[:most]]
            if len(value) > most:
                lines.append(f"{'':>{width}}  … {len(value) - most} more (--json lists all)")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines.append(f"{key:>{width}}:")
            lines += [f"{'':>{width}}  " + ", ".join(f"{k} {v}" for k, v in row.items()) for row in value]
        else:
            lines.append(f"{key:>{width}}: {value}")
    return lines
