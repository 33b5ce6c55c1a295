"""`vfr search` and `vfr demo`: parse options, call the Engine, print. Nothing else."""
from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from vfr.common import DbOption, IndexOption, console, fail, out


class Retriever(str, Enum):
    bm25 = "bm25"
    dense = "dense"
    hybrid = "hybrid"


class Format(str, Enum):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    trec = "trec"


class Fusion(str, Enum):
    convex = "convex"
    rrf = "rrf"


class Norm(str, Enum):
    zscore = "zscore"
    minmax = "minmax"


def register(app: typer.Typer) -> None:
    app.command("search")(search_cmd)
    app.command("demo")(demo_cmd)


def search_cmd(
    query: Annotated[str | None, typer.Argument(help="The query text (or use --queries FILE).")] = None,
    db: DbOption = ...,  # type: ignore[assignment]
    index: IndexOption = None,
    k: Annotated[int, typer.Option("--k", "-k", min=1, max=10_000, help="Results per query.")] = 10,
    retriever: Annotated[Retriever, typer.Option(help="bm25, dense or hybrid (fused).")] = Retriever.hybrid,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="table, json, jsonl (one line per query) "
                                                               "or trec (run file).")] = Format.table,
    queries: Annotated[Path | None, typer.Option("--queries", help="Batch: JSONL {\"id\", \"text\"} or plain "
                                                                   "text, one query a line (streamed).")] = None,
    collection: Annotated[list[str] | None, typer.Option("--collection", "-c", help="Search only these "
                                                         "collections (repeat the option for several).")] = None,
    fusion: Annotated[Fusion | None, typer.Option(help="Hybrid fusion: convex (default) or rrf.")] = None,
    weights: Annotated[str | None, typer.Option(help="Hybrid convex weights SPARSE,DENSE, e.g. 0.3,0.7.")] = None,
    norm: Annotated[Norm | None, typer.Option(help="Hybrid score normalisation.")] = None,
    depth: Annotated[int | None, typer.Option(min=1, max=10_000,
                                              help="Candidates fetched from each side before fusing.")] = None,
    encoder_backend: Annotated[str | None, typer.Option("--encoder-backend", help="Encode the query on another "
                                                        "backend than the index's (onnx, torch, onnx-int8, "
                                                        "openvino).")] = None,
    update: Annotated[bool, typer.Option("--update", help="First apply store changes the index lacks.")] = False,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="First rebuild the index in full (works whatever "
                                                            "state the index is in).")] = False,
) -> None:
    """Search the index.

    Answers from the index's latest generation; if the store has changes the index has not applied yet,
    says how many (added, changed, deleted) on stderr: `vfr index` (or --update) applies them.
    """
    from vfr.engine import Engine, EngineError
    from vfr.queries import QueryFileError, chunks, fusion_config, iter_queries

    if (query is None) == (queries is None):
        fail("give a QUERY or --queries FILE (not both)")
    if query is not None and not query.strip():
        fail("the query is empty: give some words to search for")
    try:
        fusion_config(fusion and fusion.value, weights, norm and norm.value, depth)  # bad options fail first
        if encoder_backend is not None:
            from vfr.retrieve.encoder import check_backend

            check_backend(encoder_backend)
        engine = Engine.open(db, index, encoder_backend=encoder_backend)
        if rebuild or update:
            engine.update_index(full=rebuild)
        fusion_cfg = None  # the index's default: tuned for its encoder (`vfr tune`), else the built-in one
        if any(x is not None for x in (fusion, weights, norm, depth)):
            fusion_cfg = fusion_config(fusion and fusion.value, weights, norm and norm.value, depth,
                                       default=engine.default_fusion())
        _note_pending(engine)
        stream = chunks(iter_queries(queries)) if queries else iter([{"q1": query or ""}])
        printer = _Printer(fmt, retriever.value, single=queries is None, query=query)
        for batch in stream:
            results = engine.batch_search(batch, k, retriever=retriever.value, fusion=fusion_cfg,
                                          collection=collection or None)
            docs = engine.get({h.id for hits in results.values() for h in hits}) \
                if fmt in (Format.table, Format.json) else {}
            printer.print(results, docs)
        printer.close()
    except (EngineError, QueryFileError, ValueError) as e:
        fail(str(e))


NOTE_LOCK_WAIT_S = 0.5  # the pending-changes note is advice: a busy store never delays a search for it


def _note_pending(engine) -> None:
    """Tell (on stderr) when the store has changes the index lacks; never fail or hold up a search over it."""
    from vfr.engine import EngineError

    from vfr.retrieve.generations import IndexError_

    wait = min(engine.lock_timeout, NOTE_LOCK_WAIT_S)
    try:
        pending = engine.pending(lock_timeout=wait)
        if pending.deleted:  # a delete that never reached the index: never serve those ids
            engine.apply_deletions(lock_timeout=wait)
            pending = engine.pending(lock_timeout=wait)
    except (EngineError, IndexError_):  # the store or the index writer is busy: the index still answers
        return
    if pending.full_rebuild_needed or pending.total:
        console.print(f"note: the index lacks store changes ({pending.describe()}); "
                      "run `vfr index` (or search with --update)", highlight=False)


class _Printer:
    """Prints result chunks as they come (a JSON document is opened first and closed at the end)."""

    def __init__(self, fmt: Format, retriever: str, single: bool, query: str | None) -> None:
        self.fmt, self.retriever, self.single, self.query = fmt, retriever, single, query
        self.first = True

    def print(self, results: dict, docs: dict[str, dict]) -> None:
        if self.fmt == Format.jsonl:
            for qid, hits in results.items():
                print(json.dumps({"query_id": qid, "hits": [_hit(h) for h in hits]}, allow_nan=False))
        elif self.fmt == Format.trec:
            for qid, hits in results.items():
                for h in hits:
                    print(f"{qid} Q0 {h.id} {h.rank} {h.score:.6f} vfr-{self.retriever}")
        elif self.fmt == Format.json:
            for qid, hits in results.items():
                payload = [{**_hit(h), "text": (docs.get(h.id) or {}).get("text")} for h in hits]
                if self.single:
                    print(json.dumps(payload, ensure_ascii=False, indent=2, allow_nan=False))
                else:
                    print(("{" if self.first else ",") + json.dumps(qid) + ": " +
                          json.dumps(payload, ensure_ascii=False, allow_nan=False))
                    self.first = False
        else:
            from vfr.render import results_table

            for qid, hits in results.items():
                out.print(results_table(self.query if self.single else qid, hits, docs))
        sys.stdout.flush()

    def close(self) -> None:
        if self.fmt == Format.json and not self.single:
            print("{}" if self.first else "}")


def _hit(h: Any) -> dict:
    return {"id": h.id, "score": h.score, "rank": h.rank}


def demo_cmd(
    workdir: Annotated[Path, typer.Option(help="Where the demo database and index go.")] = Path("vfr-demo"),
    k: Annotated[int, typer.Option("--k", "-k", min=1, max=10_000, help="Results per query.")] = 3,
) -> None:
    """Build a store and index from the built-in sample of scene descriptions and run example queries."""
    from vfr.demo import run_demo

    try:
        run_demo(workdir, k)
    except Exception as e:  # the demo must end with a readable line, not a trace
        fail(f"demo failed: {e}")
