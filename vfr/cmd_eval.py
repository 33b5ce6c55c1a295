"""`vfr eval`: zero-shot retrieval evaluation on the shared benchmarks or your own."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from vfr.common import console, counted, fail, out


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)


def eval_cmd(
    bench: Annotated[str, typer.Argument(
        help="Built-in benchmark name (see --list), 'all' for every built-in, a BEIR folder "
             "(corpus.jsonl, queries.jsonl, qrels/test.tsv) or a JSONL file of "
             '{"id", "document", "queries": [...]} lines.')] = "",
    retriever: Annotated[str, typer.Option("--retriever", "-r", help="Comma-separated: bm25,dense,hybrid.")]
    = "bm25,dense,hybrid",
    encoder: Annotated[str, typer.Option("--encoder", "-e", help="Dense encoder: packaged default, a model "
                                         "folder (e.g. from `vfr calibrate`) or a hub name.")] = "all-MiniLM-L6-v2",
    source: Annotated[str, typer.Option("--description-source", "-s", help="Which description stands for an "
                                        "image: longest, concat, each (every one its own document) or a "
                                        "model / source key such as llava-1.5 or halc/minigpt4(64tok).")]
    = "longest",
    out_dir: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder (default out/eval/BENCH).")]
    = None,
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Shared data folder (env VFR_DATA; "
                                                     "default ../shared/data from the repository).")] = None,
    cache_dir: Annotated[Optional[Path], typer.Option("--cache-dir", help="Where evaluation stores and indexes "
                                                      "are cached (default ~/.cache/vfr/eval).")] = None,
    depth: Annotated[int, typer.Option("--depth", min=10, max=10_000, help="Results kept per query (run files, curves).")] = 20,
    faiss: Annotated[str, typer.Option("--faiss", help="flat | hnsw")] = "flat",
    bm25_fields: Annotated[str, typer.Option("--bm25-fields", help="Field-aware BM25: FIELD=WEIGHT,... added to "
                                             "the plain BM25 (docs/fusion.md); none = plain.")] = "none",
    parts: Annotated[str, typer.Option("--parts", help="Multi-vector dense: 'sentences' also indexes each "
                                       "sentence (score mixes whole-text and best-sentence cosine); '' = off.")] = "",
    parts_weight: Annotated[float, typer.Option("--parts-weight", min=0.0, max=1.0, help="Weight of the best sentence (0-1].")] = 0.5,
    query_bank: Annotated[str, typer.Option("--query-bank", help="Hubness correction (docs/fusion.md): a "
                                            "built-in bank (coco-val-captions) or a text file of queries, one a "
                                            "line; texts the benchmark scores are left out of it. '' = off.")
                          ] = "",
    hubness: Annotated[float, typer.Option("--hubness", min=0.0, max=2.0, help="Weight of the hubness "
                                           "correction (with --query-bank).")] = 0.5,
    fusion: Annotated[str, typer.Option("--fusion", help="Hybrid fusion: auto (tuned for this encoder by `vfr "
                                        "tune` / `vfr calibrate` if stored, else the built-in default) or fixed "
                                        "(the built-in default).")] = "auto",
    stat_test: Annotated[str, typer.Option("--test", help="Paired test: fisher (randomisation) | student.")]
    = "fisher",
    results_md: Annotated[Optional[Path], typer.Option("--results-md", help="Also write the full results "
                                                       "page (docs/results.md) from this run.")] = None,
    no_plots: Annotated[bool, typer.Option("--no-plots", help="Skip the PNG plots.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bars.")] = True,
    list_: Annotated[bool, typer.Option("--list", help="List the built-in benchmarks and exit.")] = False,
) -> None:
    """Evaluate bm25, dense and hybrid retrieval: writes TREC runs, metrics.json, results.md and plots.

    Text→image: captions query image descriptions (one relevant image). Image→text: descriptions query all captions (the image's captions are relevant). Compositional (SugarCrepe, SugarCrepe++): is a description scored closer to the caption than to its hard negative?

    Metrics through ranx: R@1/5/10 (hit rate), MRR@10, nDCG@10, paired significance tests, bootstrap 95% intervals for R@1. Stores and indexes are cached by content hash, and so are query embeddings.
    """
    from vfr.eval import benchmarks
    from vfr.eval.datasets import BenchmarkError
    from vfr.retrieve.encoder import EncoderError
    from vfr.store.store import StoreError

    if list_:
        for name, b in benchmarks.BUILTINS.items():
            out.print(f"{name:18} {b.summary}", highlight=False)
        return
    if not bench:
        fail("give a benchmark: a built-in name (`vfr eval --list`), 'all', a BEIR folder or a JSONL file")
    retrievers = tuple(r.strip() for r in retriever.split(",") if r.strip())
    bad = [r for r in retrievers if r not in ("bm25", "dense", "hybrid")]
    if bad or not retrievers:
        fail(f"unknown retriever {', '.join(bad) or '(none)'}: use bm25, dense and/or hybrid")
    if stat_test not in ("fisher", "student"):
        fail("--test must be fisher or student")
    if fusion not in ("auto", "fixed"):
        fail("--fusion must be auto or fixed")
    from vfr.retrieve.fields import parse_weights

    try:
        fields = parse_weights(bm25_fields)
        from vfr.eval.tasks import index_descriptions
        from vfr.retrieve.writer import IndexConfig

        IndexConfig(fields=fields, parts=parts, parts_weight=parts_weight,  # type: ignore[arg-type]
                    descriptions=index_descriptions(source))
        bank = tuple(benchmarks.query_bank(query_bank, data_dir)) if query_bank else ()
        if bank and hubness <= 0:
            fail("--hubness must be above 0 with a query bank")
    except (ValueError, BenchmarkError) as e:
        fail(str(e))
    names = benchmarks.names() if bench == "all" else [bench]
    base = out_dir or Path("out") / "eval"
    docs = []
    started = time.perf_counter()
    for name in names:
        target = base / _folder(name) if (bench == "all" or out_dir is None) else base
        try:
            docs.append(_run_one(name, target, retrievers, encoder, source, data_dir, cache_dir, depth, faiss,
                                 stat_test, progress, not no_plots, fusion, fields, (parts, parts_weight),
                                 (query_bank, bank, hubness)))
        except (BenchmarkError, ValueError, EncoderError, StoreError) as e:   # StoreError: e.g. a cache in use
            fail(str(e))
    total = time.perf_counter() - started
    if results_md:
        from vfr.eval.results_page import write_results_page

        write_results_page(docs, results_md, total)
        console.print(f"wrote {results_md}")
    console.print(f"done in {total:.0f} s")


def _trained_on(encoder: str) -> frozenset[str]:
    """The images a calibrated encoder (or a soup of them) trained on, so results can set their queries apart."""
    from vfr.eval.cache import encoder_spec
    from vfr.retrieve.calibrate.card import trained_groups

    return frozenset(trained_groups(encoder_spec(encoder).location) or ())


def _folder(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(name).name) or "bench"


def _run_one(name: str, target: Path, retrievers: tuple[str, ...], encoder: str, source: str,
             data_dir: Path | None, cache_dir: Path | None, depth: int, faiss: str, stat_test: str,
             progress: bool, plots: bool, fusion: str = "auto", fields: tuple = (),
             parts: tuple = ("", 0.5), bank: tuple = ("", (), 0.5)) -> dict:
    from vfr.eval import benchmarks, report
    from vfr.eval.runner import EvalConfig, run_tasks

    t0 = time.perf_counter()
    bench_name, tasks, provenance = benchmarks.resolve(name, data_dir, source)
    if bank[1]:
        kept = tuple(benchmarks.without_scored(tasks, bank[1], f"the query bank {bank[0]}"))
        if len(kept) < len(bank[1]):
            console.print(f"query bank {bank[0]}: left out {len(bank[1]) - len(kept)} of its "
                          f"{counted(len(bank[1]), 'text')} that {bench_name} scores")
        bank = (bank[0], kept, bank[2])
    config = EvalConfig(retrievers=retrievers, encoder=encoder, description_source=source, depth=depth,
                        faiss=faiss, cache_dir=cache_dir, progress=progress, stat_test=stat_test, fusion=fusion,
                        bm25_fields=fields, parts=parts[0], parts_weight=parts[1], query_bank=bank[1],
                        hubness=bank[2], trained_on=_trained_on(encoder))
    console.print(f"[bold]{bench_name}[/]: {len(tasks)} task(s)")
    results = run_tasks(tasks, config)
    seconds = time.perf_counter() - t0
    cfg = {"retrievers": list(retrievers), "encoder": encoder, "description_source": source, "depth": depth,
           "faiss": faiss, "stat_test": stat_test, "fusion": fusion,
           "bm25_fields": [list(f) for f in fields], "parts": parts[0], "parts_weight": parts[1]}
    if bank[1]:
        from vfr.retrieve.hubness import bank_sha

        cfg.update(query_bank=bank[0], query_bank_sha=bank_sha(bank[1]), query_bank_size=len(bank[1]),
                   hubness=bank[2])
    doc = report.write_outputs(bench_name, results, target, provenance, cfg, {"seconds": round(seconds, 1)})
    if plots:
        from vfr.eval.plots import write_plots

        write_plots(doc, target / "plots")
    out.print(report.markdown(doc), highlight=False)
    console.print(f"{bench_name}: {seconds:.0f} s; outputs in {target}/ (metrics.json, results.md, runs/, plots/)")
    return json.loads(json.dumps(doc, default=str))
