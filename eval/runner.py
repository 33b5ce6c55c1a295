"""Run every retriever on every task of a benchmark and collect metrics, runs and timings.

The index opener is injectable (`open_index(corpus) -> obj with .searcher(name)`) so the plumbing
is testable without the JVM or a model; by default it is `eval.cache.open_corpus_index`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from vfr.eval import compositional as comp
from vfr.eval import metrics as M
from vfr.eval.tasks import CompositionalTask, RetrievalTask
from vfr.retrieve.types import Run

RETRIEVERS = ("bm25", "dense", "hybrid")
CURVE_KS = (1, 2, 3, 5, 10, 15, 20)
CHUNK = 500


@dataclass(frozen=True)
class EvalConfig:
    retrievers: tuple[str, ...] = RETRIEVERS
    encoder: str = "all-MiniLM-L6-v2"
    description_source: str = "longest"
    depth: int = 20                 # ranked targets kept per query (TREC files, curves)
    faiss: str = "flat"
    cache_dir: Path | None = None
    progress: bool = True
    stat_test: str = "fisher"
    seed: int = 0
    fusion: str = "auto"            # auto: tuned for the encoder if stored (vfr tune), else built-in; fixed
    bm25_fields: tuple[tuple[str, float], ...] = ()  # field-aware BM25 (retrieve/fields.py); () = plain
    parts: str = ""                 # multi-vector dense (retrieve/multivector.py): "" | "sentences"
    parts_weight: float = 0.5
    query_bank: tuple[str, ...] = ()  # hubness correction (retrieve/hubness.py): the bank's texts; () = off
    hubness: float = 0.5
    trained_on: frozenset[str] = frozenset()  # images the encoder was calibrated on (retrieve/calibrate/card.py)


@dataclass
class TaskResult:
    task: str
    kind: str
    summary: dict[str, Any]
    runs: dict[str, Run] = field(default_factory=dict)   # retrieval tasks only (target-level)


def default_opener(config: EvalConfig) -> Callable[[Mapping[str, str]], tuple[Any, dict]]:
    from vfr.eval.cache import open_corpus_index
    from vfr.retrieve.hubness import bank_sha
    from vfr.retrieve.writer import IndexConfig

    bank = {"hubness": config.hubness, "query_bank": bank_sha(config.query_bank)} if config.query_bank else {}
    index_config = IndexConfig(faiss=config.faiss, fields=config.bm25_fields, parts=config.parts,  # type: ignore[arg-type]
                               parts_weight=config.parts_weight, **bank)

    def opener(corpus: Mapping[str, str]) -> tuple[Any, dict]:
        return open_corpus_index(corpus, config.encoder, index_config, config.cache_dir, config.progress,
                                 config.fusion, config.query_bank)
    return opener


def _bar(config: EvalConfig, desc: str, total: int | None = None) -> Callable[[Iterable], Iterable]:
    def wrap(it: Iterable) -> Iterable:
        if not config.progress:
            return it
        from tqdm import tqdm

        return tqdm(it, desc=desc, total=total, leave=False, unit="chunk" if total else "query",
                    dynamic_ncols=True)
    return wrap


def search(searcher: Any, queries: Mapping[str, str], k: int, config: EvalConfig, label: str) -> Run:
    """batch_search (the backend contract: Query objects in, hit lists out) in chunks, with a progress bar."""
    from vfr.retrieve.types import Query

    qids = list(queries)
    chunks = [qids[i:i + CHUNK] for i in range(0, len(qids), CHUNK)]
    run: Run = {}
    for chunk in _bar(config, label, len(chunks))(chunks):
        batch = [Query(queries[q], q) for q in chunk]
        for q, hits in zip(batch, searcher.batch_search(batch, k)):
            run[q.id] = {h.id: h.score for h in hits}
    return run


def truncate(run: Run, depth: int) -> Run:
    return {q: dict(sorted(docs.items(), key=lambda kv: (-kv[1], kv[0]))[:depth]) for q, docs in run.items()}


def evaluate_retrieval(task: RetrievalTask, index: Any, config: EvalConfig) -> TaskResult:
    k = config.depth * task.docs_per_target()
    runs: dict[str, Run] = {}
    timings: dict[str, float] = {}
    for name in config.retrievers:
        t0 = time.perf_counter()
        raw = search(index.searcher(name), task.queries, k, config, f"{task.name} {name}")
        runs[name] = truncate(M.to_target_run(raw, task.doc_target), config.depth)
        timings[name] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    ev = M.evaluate_all(task.qrels, runs, [x for x in CURVE_KS if x <= config.depth], config.stat_test, config.seed)
    timings["metrics"] = round(time.perf_counter() - t0, 2)
    targets = {t for rel in task.qrels.values() for t in rel}
    summary = {
        "task": task.name, "kind": "retrieval", "title": task.title, "queries": len(task.queries),
        "documents": len(task.corpus), "targets_judged": len(targets), "meta": dict(task.meta),
        "reference": task.reference, "metrics": ev["metrics"], "r1_ci95": ev["r1_ci95"], "curves": ev["curves"],
        "significance": {"test": config.stat_test, "p_values": ev["p_values"]}, "seconds_by_step": timings,
    }
    seen = seen_queries(task.qrels, config.trained_on)
    if seen:
        summary["trained_on"] = trained_on_summary(task, runs, seen, config.trained_on)
    return TaskResult(task.name, "retrieval", summary, runs)


def seen_queries(qrels: Mapping[str, Mapping[str, int]], trained: frozenset[str]) -> set[str]:
    """The queries about an image the encoder trained on: one of its relevant targets is such an image
    (text→image), or the query is (image→text: an image's description queries its captions)."""
    if not trained:
        return set()
    return {q for q, rel in qrels.items()
            if q.split("|", 1)[0] in trained or any(grade > 0 and t in trained for t, grade in rel.items())}


def without_seen(task: RetrievalTask, trained: frozenset[str]) -> tuple[RetrievalTask, set[str]]:
    """`task` without the queries `seen_queries` finds (the corpus stays whole), and those queries."""
    hit = seen_queries(task.qrels, trained)
    if not hit:
        return task, hit
    return replace(task, queries={q: t for q, t in task.queries.items() if q not in hit},
                   qrels={q: r for q, r in task.qrels.items() if q not in hit}), hit


def without_trained(task: RetrievalTask, trained: frozenset[str]) -> tuple[RetrievalTask, set[str], int]:
    """`task` without the queries `seen_queries` finds *and* without the documents of the `trained` images: a dev
    set on which no model has seen a query's answer or a distractor (what choosing among models needs; with the
    documents left in, a fit can learn how trained-on distractors behave: docs/fusion.md). Returns the task, the
    queries left out and how many documents were."""
    unseen, hit = without_seen(task, trained)
    targets = task.doc_target or {}
    corpus = {d: t for d, t in unseen.corpus.items() if targets.get(d, d) not in trained}
    dropped = len(unseen.corpus) - len(corpus)
    if not dropped:
        return unseen, hit, 0
    doc_target = {d: t for d, t in targets.items() if d in corpus} if task.doc_target else None
    return replace(unseen, corpus=corpus, doc_target=doc_target), hit, dropped


def trained_on_summary(task: RetrievalTask, runs: Mapping[str, Run], seen: set[str],
                       trained: frozenset[str]) -> dict[str, Any]:
    """R@1 of each retriever on the queries about training images and on the others: only the latter are
    held out for a calibrated encoder (docs/sweeps.md: the seen ones reward memorising)."""
    unseen = {q: r for q, r in task.qrels.items() if q not in seen}
    seen_qrels = {q: r for q, r in task.qrels.items() if q in seen}

    def r1(qrels: Mapping[str, Mapping[str, int]]) -> dict[str, float]:
        return {name: float(M.per_query(qrels, run, "hit_rate@1").mean()) for name, run in runs.items()} \
            if qrels else {}
    targets = {t for rel in task.qrels.values() for t in rel}
    return {"images": len(trained & (targets | {q.split("|", 1)[0] for q in task.qrels})),
            "seen_queries": len(seen), "unseen_queries": len(unseen), "r1_unseen": r1(unseen),
            "r1_seen": r1(seen_qrels)}


def evaluate_compositional(task: CompositionalTask, index: Any, config: EvalConfig) -> TaskResult:
    per: dict[str, Any] = {}
    timings: dict[str, float] = {}
    for name in config.retrievers:
        t0 = time.perf_counter()
        searcher = index.searcher(name)
        # bm25 / cosine scores do not depend on which other documents are scored: one call per description
        outcomes = comp.score_trials(task.trials, searcher.score, per_trial=name == "hybrid",
                                     progress=_bar(config, f"{task.name} {name}"))
        per[name] = comp.summarize(task, outcomes, seed=config.seed)
        timings[name] = round(time.perf_counter() - t0, 2)
    summary = {"task": task.name, "kind": "compositional", "title": task.title, "meta": dict(task.meta),
               "items_total": sum(task.items_total.values()), "results": per, "seconds_by_step": timings}
    return TaskResult(task.name, "compositional", summary)


def run_tasks(tasks: list, config: EvalConfig,
              opener: Callable[[Mapping[str, str]], tuple[Any, dict]] | None = None) -> list[TaskResult]:
    opener = opener or default_opener(config)
    results = []
    for task in tasks:
        t0 = time.perf_counter()
        corpus = comp.corpus(task) if isinstance(task, CompositionalTask) else task.corpus
        if not corpus:
            raise ValueError(f"task {task.name}: empty corpus (no image has a description from the chosen source)")
        index, cache_info = opener(corpus)
        index_s = time.perf_counter() - t0
        res = (evaluate_compositional if isinstance(task, CompositionalTask) else evaluate_retrieval)(
            task, index, config)
        res.summary["index"] = {**cache_info, "seconds": round(index_s, 2)}
        res.summary["seconds"] = round(time.perf_counter() - t0, 2)
        results.append(res)
    return results
