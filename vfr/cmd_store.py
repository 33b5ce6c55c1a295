"""`vfr import`, `vfr export`, `vfr stats`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from vfr.common import DbOption, IndexOption, console, fail, out


def register(app: typer.Typer) -> None:
    app.command("import")(import_cmd)
    app.command("export")(export_cmd)
    app.command("stats")(stats_cmd)


def import_cmd(
    paths: Annotated[list[Path], typer.Argument(help="JSONL or Parquet files of descriptions.")],
    db: DbOption,
) -> None:
    """Import descriptions: one record per image, at least {"id": str, "text": str}.

    Optional fields: "json" (structured SceneDescription; rendered to text when "text" is absent),
    "caption" (string or list), "collection", "meta" (object), "model", "prompt_version".
    Each file is validated whole first and imported in one transaction: a bad line imports nothing
    and the error names the file and line. Importing the same ids again updates them.
    """
    from vfr.describe.schema import RENDERER
    from vfr.store.io import import_file
    from vfr.store.store import Store, StoreError

    from vfr.retrieve.index import index_exists
    from vfr.settings import default_index

    try:
        with Store(db) as store:
            for path in paths:
                n = import_file(store, path, RENDERER)
                console.print(f"imported {n} records from {path} into {db}")
    except StoreError as e:
        fail(str(e))
    if index_exists(default_index(db)):
        console.print("run `vfr index` to make them searchable (it applies only what changed)")


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
    console.print(f"exported {n} descriptions to {out_path}")


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
        out.print_json(json.dumps(stats))
        return
    for key, value in stats.items():
        out.print(f"{key:>22}: {value}", highlight=False)
