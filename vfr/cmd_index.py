"""`vfr index`, `vfr delete`, `vfr compact`: keep the live index in step with the store."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vfr.common import DbOption, IndexOption, console, counted, fail, out
from vfr.store.textfiles import json_dumps

HNSW_HINT_DOCS = 50_000


def register(app: typer.Typer) -> None:
    app.command("index")(index_cmd)
    app.command("delete")(delete_cmd)
    app.command("compact")(compact_cmd)


def index_cmd(
    db: DbOption,
    index: IndexOption = None,
    full: Annotated[bool, typer.Option("--full", help="Rebuild everything (new settings or encoder, or a "
                                                      "damaged index) instead of applying changes.")] = False,
    encoder: Annotated[str | None, typer.Option(help="sentence-transformers model folder or name for a first or "
                                                     "--full build (default: the packaged all-MiniLM-L6-v2). "
                                                     "An existing index keeps its own.")] = None,
    encoder_backend: Annotated[str | None, typer.Option("--encoder-backend", help="Run the encoder on onnx "
                                                        "(default), torch, onnx-int8 or openvino (docs/encoders.md); "
                                                        "another backend than the index's rebuilds it.")] = None,
    faiss: Annotated[str | None, typer.Option(help="flat (exact) or hnsw (approximate: ~0.5 ms instead of ~18 ms "
                                                   "a query at 100k documents; see docs/benchmarks.md). "
                                                   "Changing it needs --full.")] = None,
    k1: Annotated[float | None, typer.Option(min=0.0, max=10.0, help="BM25 k1 (default 0.9; changing it needs --full).")] = None,
    b: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="BM25 b (default 0.4; changing it needs --full).")] = None,
    bm25_fields: Annotated[str | None, typer.Option("--bm25-fields", help="Field-aware BM25: FIELD=WEIGHT,... "
                                                    "added to the plain BM25 (fields: caption, objects, attributes, "
                                                    "relations, text, setting; 'none' = plain). Needs --full; "
                                                    "docs/fusion.md.")] = None,
    parts: Annotated[str | None, typer.Option("--parts", help="Multi-vector dense: 'sentences' also indexes each "
                                              "sentence; 'none' = off. Needs --full.")] = None,
    parts_weight: Annotated[float | None, typer.Option("--parts-weight", min=0.0, max=1.0, help="Weight of the best sentence "
                                                       "(0-1], default 0.5.")] = None,
    query_bank: Annotated[Path | None, typer.Option("--query-bank", help="Hubness correction: a text file of "
                                                    "real queries, one a line (a query log, or the captions the "
                                                    "encoder was calibrated on; never your test queries). Each "
                                                    "document's dense score is lowered by how close it sits to "
                                                    "many of them; 'none' = off. Needs --full; docs/fusion.md.")
                                  ] = None,
    hubness: Annotated[float | None, typer.Option("--hubness", min=0.0, max=2.0, help="Weight of the hubness "
                                                  "correction (default 0.5 with a query bank).")] = None,
    descriptions: Annotated[str | None, typer.Option("--descriptions", help="Which of an image's descriptions "
                                                     "make its document: 'newest' (default: the most recent, "
                                                     "whatever model wrote it) or 'every-model' (each describing "
                                                     "model's newest, joined: +7 to +8 R@1 on COCO with 2-3 VLMs; "
                                                     "docs/views.md). Changing it rebuilds the index.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Bring the index up to date with the store: apply what changed since the last update (added,
    changed and deleted documents), or build it in full the first time or with --full.

    Every update is a new generation swapped in atomically: searches in other processes keep answering
    throughout, a crash leaves the previous generation, and embeddings cached in the database mean only
    new text is encoded.
    """
    from vfr.engine import Engine, EngineError
    from vfr.progress import Progress
    from vfr.retrieve.generations import IndexError_
    from vfr.retrieve.writer import IndexConfig

    try:
        if encoder_backend is not None:
            from vfr.retrieve.encoder import check_backend

            check_backend(encoder_backend)
        engine = Engine.open(db, index, encoder=encoder, encoder_backend=encoder_backend)
        config = None
        if any(x is not None for x in (faiss, k1, b, bm25_fields, parts, parts_weight, query_bank, hubness,
                                       descriptions)):
            from vfr.retrieve.fields import parse_weights

            base = _current_config(db, index)
            fields = parse_weights(bm25_fields) if bm25_fields is not None else None
            mv = "" if parts == "none" else parts
            asked = {k: v for k, v in (("faiss", faiss), ("k1", k1), ("b", b), ("fields", fields), ("parts", mv),
                                       ("parts_weight", parts_weight), ("descriptions", descriptions))
                     if v is not None}
            config = IndexConfig(**{**base.to_dict(), **asked,
                                    **_bank(engine.index_dir, base, query_bank, hubness)})
        with Progress(enabled=not quiet) as bar:
            report = engine.update_index(full=full, config=config, progress=bar.callback())
    except (EngineError, IndexError_, ValueError) as e:
        fail(str(e))
    if report["mode"] == "full":
        console.print(f"indexed {report['documents']} documents into {engine.index_dir} "
                      f"(generation {report['generation']}, {report['seconds']:.1f}s)")
    elif report["added"] or report["changed"] or report["deleted"]:
        console.print(f"updated {engine.index_dir}: {report['added']} added, {report['changed']} changed, "
                      f"{report['deleted']} deleted (generation {report['generation']}, {report['seconds']:.1f}s)")
    else:
        console.print(f"{engine.index_dir} is up to date (generation {report['generation']})")
    if report["documents"] >= HNSW_HINT_DOCS and (config is None or config.faiss == "flat") \
            and engine.stats().get("config", {}).get("faiss") == "flat":
        console.print(f"tip: exact FAISS scans all {report['documents']:,} vectors per query; "
                      "`vfr index --full --faiss hnsw` is ~30x faster on the dense side at this size")


def _bank(index_dir: Path, base, query_bank: Path | None, weight: float | None) -> dict:
    """The hubness settings --query-bank / --hubness ask for (the bank's texts kept in the index folder)."""
    from vfr.retrieve import hubness

    if (query_bank is not None and str(query_bank) == "none") or weight == 0:
        return {"hubness": 0.0, "query_bank": ""}
    if query_bank is not None:
        sha = hubness.stage_bank(index_dir, hubness.read_bank(query_bank))
        return {"query_bank": sha, "hubness": weight if weight is not None else base.hubness or hubness.DEFAULT_WEIGHT}
    if weight is not None and not base.query_bank:
        raise ValueError("--hubness needs a query bank: add --query-bank FILE")
    return {} if weight is None else {"hubness": weight}


def _current_config(db: Path, index: Path | None):
    from vfr.retrieve import generations
    from vfr.retrieve.writer import IndexConfig
    from vfr.settings import default_index

    try:
        return IndexConfig(**generations.read_manifest(index or default_index(db))["config"])
    except Exception:  # noqa: BLE001 - no index yet (or damaged): defaults
        return IndexConfig()


def delete_cmd(
    ids: Annotated[list[str] | None, typer.Argument(help="Image ids to delete.")] = None,
    db: DbOption = ...,  # type: ignore[assignment]
    index: IndexOption = None,
    ids_file: Annotated[Path | None, typer.Option("--ids-file", help="A file of ids, one per line.")] = None,
    collection: Annotated[str | None, typer.Option("--collection", help="Delete every image of this "
                                                                        "collection (with --model: only the "
                                                                        "model's descriptions of its images).")
                          ] = None,
    model: Annotated[str | None, typer.Option("--model", help="Instead of images, delete every description this "
                                                            "describing model wrote (see `vfr stats`): a describer "
                                                            "retracted. Images keep their other descriptions.")] = None,
    prompt_version: Annotated[str | None, typer.Option("--prompt-version", help="With --model: only its descriptions "
                                                                                "of this prompt version.")] = None,
    purge: Annotated[bool, typer.Option("--purge", help="Also compact at once, so the deleted text and vectors "
                                                        "leave the files now (see `vfr compact`).")] = False,
) -> None:
    """Delete images from the store and the index (erasure on request), or with --model one describer's
    descriptions.

    When this returns no search returns them, in this or any other process. Their bytes leave the files at
    the next compaction (`vfr compact`, automatic past a threshold, or --purge now).

    With --model MODEL [--prompt-version V] [--collection NAME], each image that MODEL described (in that
    collection only, if given) loses that description: its document becomes its other descriptions' (the
    newest, or their join in an every-model index), and an image with none left leaves the index until
    `vfr describe` or `vfr import` describes it again.
    """
    from vfr.engine import Engine, EngineError
    from vfr.store.textfiles import TextFileError, read_lines

    if prompt_version is not None and model is None:
        fail("--prompt-version needs --model MODEL")
    if model is not None:
        if ids or ids_file is not None:
            fail("--model deletes a describer's descriptions of every image (or of one --collection); give it "
                 "without image ids or --ids-file")
        _delete_model(db, index, model, prompt_version, collection, purge)
        return

    wanted = list(ids or [])
    try:
        if ids_file is not None:
            wanted += [line.strip() for line in read_lines(ids_file) if line.strip()]
    except TextFileError as e:
        fail(str(e))
    if not wanted and collection is None:
        fail("give image ids, --ids-file FILE or --collection NAME")
    try:
        engine = Engine.open(db, index)
        existed = engine.delete(wanted, collection=collection)
        report = engine.compact() if purge else None
    except EngineError as e:
        fail(str(e))
    missing = len(set(wanted) - set(existed))
    console.print(f"deleted {counted(len(existed), 'image')}"
                  + (f" ({counted(missing, 'id')} not in the store)" if missing else "")
                  + _compaction_note(report))


def _compaction_note(report: dict | None) -> str:
    """The end of a delete's message: whether the bytes are gone yet (--purge) or what erases them."""
    return ("; compacted: their bytes are gone from the index and database files" if report else
            "; run `vfr compact` to erase their bytes from the files")


def _delete_model(db: Path, index: Path | None, model: str, prompt_version: str | None, collection: str | None,
                  purge: bool) -> None:
    from vfr.engine import Engine, EngineError

    try:
        engine = Engine.open(db, index)
        done = engine.delete_descriptions(model, prompt_version, collection)
        report = engine.compact() if purge else None
    except EngineError as e:
        fail(str(e))
    what = model + (f" (prompt version {prompt_version})" if prompt_version is not None else "") \
        + (f" in collection {collection}" if collection is not None else "")
    changed = done["images"] - done["undescribed"]
    console.print(f"deleted {counted(done['descriptions'], 'description')} by {what} of "
                  f"{counted(done['images'], 'image')}: "
                  f"{changed} now show their other descriptions, {done['undescribed']} have none left and left the "
                  "index (`vfr describe` can describe them again)"
                  + ("" if done["index"] is not None else "; there is no index yet (`vfr index` builds one)")
                  + _compaction_note(report), highlight=False)


def compact_cmd(
    db: DbOption,
    index: IndexOption = None,
    index_only: Annotated[bool, typer.Option("--index-only", help="Leave the database file as it is.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Erase deleted data: rewrite index segments without deleted rows, prune the store's change log, and
    rewrite the database file (DuckDB keeps deleted rows' bytes in freed blocks until then).

    Old index generations are removed as soon as no reader process holds them (a long-running reader lets
    go at its next search)."""
    from vfr.engine import Engine, EngineError

    try:
        report = Engine.open(db, index).compact(store=not index_only)
    except EngineError as e:
        fail(str(e))
    if as_json:
        out.print_json(json_dumps(report))
        return
    console.print("compacted: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in report.items()), highlight=False)
    if report.get("older_generations_held_by_readers"):
        console.print(f"note: {report['older_generations_held_by_readers']} older index generation(s) are still "
                      "open in other processes; their files go when those readers next search or exit "
                      "(run `vfr compact` again to check)", highlight=False)
