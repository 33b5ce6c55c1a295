"""`vfr index`, `vfr search`, `vfr demo`."""
from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from vfr.common import DbOption, IndexOption, console, fail, out
from vfr.settings import default_index


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
    app.command("index")(index_cmd)
    app.command("search")(search_cmd)
    app.command("demo")(demo_cmd)


HNSW_HINT_DOCS = 50_000


def index_cmd(
    db: DbOption,
    index: IndexOption = None,
    encoder: Annotated[str, typer.Option(help="sentence-transformers name or local model folder "
                                              "(e.g. from `vfr calibrate`).")] = "all-MiniLM-L6-v2",
    faiss: Annotated[str, typer.Option(help="flat (exact) or hnsw (approximate: ~0.5 ms instead of ~18 ms a "
                                            "query at 100k documents, 99.9% of the exact top 10; "
                                            "see docs/benchmarks.md).")] = "flat",
    k1: Annotated[float, typer.Option(help="BM25 k1.")] = 0.9,
    b: Annotated[float, typer.Option(help="BM25 b.")] = 0.4,
    batch_size: Annotated[int, typer.Option(help="Encoding batch size.")] = 64,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Build the BM25 (Lucene) and dense (FAISS) indexes from every document in the store.

    Builds into a fresh folder and swaps it in atomically: a crash leaves the previous index usable.
    Embeddings are cached in the database, so rebuilding after a small change encodes only new text.
    """
    from vfr.retrieve.index import IndexConfig, IndexError_, build_index
    from vfr.store.store import Store, StoreError

    index_dir = index or default_index(db)
    if faiss not in ("flat", "hnsw"):
        fail(f"--faiss must be flat or hnsw, not {faiss!r}")
    try:
        with Store(db) as store:
            manifest = build_index(store, index_dir, IndexConfig(encoder=encoder, faiss=faiss, k1=k1, b=b,
                                                                 batch_size=batch_size), progress=not quiet)
    except (StoreError, IndexError_, ValueError) as e:
        fail(str(e))
    t = manifest["build"]["timings"]
    emb = manifest["build"]["embeddings"]
    console.print(f"indexed {manifest['documents']} documents into {index_dir} "
                  f"(BM25 {t['sparse_s']:.1f}s, encode {t['encode_s']:.1f}s [{emb['encoded']} encoded, "
                  f"{emb['cached']} cached], FAISS {t['faiss_s']:.1f}s)")
    if faiss == "flat" and manifest["documents"] >= HNSW_HINT_DOCS:
        console.print(f"tip: exact FAISS scans all {manifest['documents']:,} vectors per query; "
                      "`vfr index --faiss hnsw` is ~30x faster on the dense side at this size")


def search_cmd(
    query: Annotated[str | None, typer.Argument(help="The query text (or use --queries FILE).")] = None,
    db: DbOption = ...,  # type: ignore[assignment]
    index: IndexOption = None,
    k: Annotated[int, typer.Option("--k", "-k", min=1, max=10_000, help="Results per query.")] = 10,
    retriever: Annotated[Retriever, typer.Option(help="bm25, dense or hybrid (fused).")] = Retriever.hybrid,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="table, json, jsonl (one line per query) "
                                                               "or trec (run file).")] = Format.table,
    queries: Annotated[Path | None, typer.Option("--queries", help="Batch: JSONL {\"id\", \"text\"} or plain "
                                                                   "text, one query a line.")] = None,
    fusion: Annotated[Fusion | None, typer.Option(help="Hybrid fusion: convex (default) or rrf.")] = None,
    weights: Annotated[str | None, typer.Option(help="Hybrid convex weights SPARSE,DENSE, e.g. 0.3,0.7.")] = None,
    norm: Annotated[Norm | None, typer.Option(help="Hybrid score normalisation.")] = None,
    depth: Annotated[int | None, typer.Option(min=1, help="Candidates fetched from each side before fusing.")] = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Rebuild a stale index instead of refusing.")] = False,
) -> None:
    """Search the index. Refuses a stale index (the store changed since `vfr index`) unless --rebuild."""
    from vfr.search_service import SearchService, ServiceError, read_queries

    if (query is None) == (queries is None):
        fail("give a QUERY or --queries FILE (not both)")
    try:
        batch = read_queries(queries) if queries else {"q1": query or ""}
        service = SearchService(db, index or default_index(db), rebuild=rebuild)
        fusion_cfg = service.fusion_config(fusion and fusion.value, weights, norm and norm.value, depth)
        results = service.search(batch, k, retriever.value, fusion_cfg)
        docs = service.documents({h.id for hits in results.values() for h in hits}) if fmt == Format.table \
            or fmt == Format.json else {}
    except ServiceError as e:
        fail(str(e))
    _print_results(results, fmt, docs, retriever.value, single=queries is None, query=query)


def _print_results(results: dict, fmt: Format, docs: dict, retriever: str, single: bool, query: str | None) -> None:
    if fmt == Format.jsonl:
        for qid, hits in results.items():
            print(json.dumps({"query_id": qid, "hits": [{"id": h.id, "score": h.score, "rank": h.rank} for h in hits]}))
    elif fmt == Format.trec:
        for qid, hits in results.items():
            for h in hits:
                print(f"{qid} Q0 {h.id} {h.rank} {h.score:.6f} vfr-{retriever}")
    elif fmt == Format.json:
        payload = {qid: [{"id": h.id, "score": h.score, "rank": h.rank,
                          "text": docs[h.id].text if h.id in docs else None} for h in hits]
                   for qid, hits in results.items()}
        print(json.dumps(payload["q1"] if single else payload, ensure_ascii=False, indent=2))
    else:
        from vfr.render import results_table

        for qid, hits in results.items():
            out.print(results_table(query if single else qid, hits, docs))
    sys.stdout.flush()


def demo_cmd(
    workdir: Annotated[Path, typer.Option(help="Where the demo database and index go.")] = Path("vfr-demo"),
    k: Annotated[int, typer.Option("--k", "-k", min=1, help="Results per query.")] = 3,
) -> None:
    """Build a store and index from the built-in sample of scene descriptions and run example queries."""
    from vfr.demo import run_demo

    try:
        run_demo(workdir, k)
    except Exception as e:  # the demo must end with a readable line, not a trace
        fail(f"demo failed: {e}")
