"""Tune the hybrid's fusion for an encoder on a labelled dev set (`vfr tune`; `vfr calibrate` after
training): the dev set's corpus is indexed through the evaluation cache (eval/cache.py), every query's
candidates are scored once on both sides, the grid of retrieve/tuning.py is compared on them, and the
winner is saved with the model, keyed by its fingerprint and the index's scoring settings."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from vfr.eval.tasks import RetrievalTask


class TuneInputError(ValueError):
    """A dev set that cannot be tuned on (message says what to do)."""


@dataclass(frozen=True)
class Tuned:
    result: Any          # retrieve.tuning.TuneResult
    choice: Any          # retrieve.tuning.FusionChoice
    saved_to: Path | None
    documents: int


def dev_task(bench: str, data_dir: Path | None = None, source: str = "longest", task: str | None = None,
             allow_test: bool = False) -> tuple[str, RetrievalTask]:
    """The retrieval task of a dev set: a built-in benchmark (never a test split unless `allow_test`), a
    BEIR folder or a generic JSONL file (the formats `vfr eval` reads). `task` picks one of several."""
    from vfr.eval import benchmarks

    if bench in benchmarks.BUILTINS and bench.endswith("-test") and not allow_test:
        raise TuneInputError(f"{bench} is a test set: tune on validation data (e.g. coco-val, flickr30k-val, "
                             "coco-5k-val, or your own dev JSONL) and keep the test set for reporting")
    name, tasks, _ = benchmarks.resolve(bench, data_dir, source)
    retrieval = [t for t in tasks if isinstance(t, RetrievalTask)]
    if task is not None:
        retrieval = [t for t in retrieval if t.name == task]
    if not retrieval:
        have = ", ".join(t.name for t in tasks if isinstance(t, RetrievalTask)) or "none"
        raise TuneInputError(f"{bench}: no retrieval task {task or ''} to tune on (retrieval tasks: {have})")
    return name, retrieval[0]


def pairs_task(pairs: Sequence[Any], name: str = "held-out pairs", distractors: Sequence[Any] = ()
               ) -> RetrievalTask:
    """Calibration pairs (query, document, group) as a dev set: each distinct document once, each distinct
    query once, relevant = every document of the query's group (image). `distractors` (e.g. the training
    pairs) add their documents to the corpus only: a held-out split alone is a corpus far smaller than the
    one served, and a small corpus favours BM25 (measured: docs/fusion.md)."""
    docs: dict[str, str] = {}
    doc_groups: dict[str, set[str]] = {}
    for p in [*pairs, *distractors]:
        did = docs.setdefault(p.document, f"d{len(docs)}")
        doc_groups.setdefault(p.group, set()).add(did)
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for p in pairs:
        qid = queries.setdefault(p.query, f"q{len(queries)}")
        qrels.setdefault(qid, {}).update(dict.fromkeys(doc_groups[p.group], 1))
    return RetrievalTask("t2i", name, {v: k for k, v in docs.items()}, {v: k for k, v in queries.items()}, qrels)


def tune_task(task: RetrievalTask, encoder: str, dataset: str, *, metric: str | None = None,
              cache_dir: Path | None = None, faiss: str = "flat", save: bool = True, progress: bool = True,
              log=lambda msg: None, index_config: Any = None, query_bank: Sequence[str] = (),
              alpha: float | None = None, keep_seen: bool = False) -> Tuned:
    """Choose the fusion for `encoder` on `task` over an index built with `index_config` (its scoring
    settings key the choice: BM25 k1/b, fields, multi-vector, query bank), and (with `save`) keep it with the
    model. `query_bank`: the texts `index_config.query_bank` fingerprints. `alpha`: the grid's best replaces
    the built-in fusion only if significantly better at this level (retrieve.tuning.tune; 1 = no guard).
    Unless `keep_seen`, the queries whose target the encoder trained on (retrieve/calibrate/card.py) are left out,
    and so are those images' documents: the queries reward memorising, not ranking (docs/sweeps.md), and the
    documents are distractors the encoder has seen (a fit on them learns how they behave: docs/fusion.md)."""
    from vfr.eval.cache import encoder_spec, open_corpus_index
    from vfr.eval.metrics import to_target_run
    from vfr.retrieve.tuning import (DEFAULT_ALPHA, DEFAULT_METRIC, FEW_QUERIES, FusionChoice, check_alpha, save_choice,
                                     tune)
    from vfr.retrieve.writer import IndexConfig

    if len(task.corpus) < 2 or not task.queries:
        raise TuneInputError(f"{dataset}: too small to tune on ({len(task.corpus)} documents, "
                             f"{len(task.queries)} queries)")
    alpha = DEFAULT_ALPHA if alpha is None else alpha
    check_alpha(alpha)  # before any index is built
    spec = encoder_spec(encoder)
    if not keep_seen:
        task = unseen_only(task, spec.location, dataset, log)
    config = index_config or IndexConfig(faiss=faiss)  # type: ignore[arg-type]
    index, _info = open_corpus_index(task.corpus, encoder, config, cache_dir, progress, fusion="fixed",
                                     query_bank=query_bank)
    try:
        hybrid = index.backend("hybrid")
        to_target = (lambda run: to_target_run(run, task.doc_target)) if task.doc_target else None
        result = tune(hybrid, task.queries, task.qrels, metric or DEFAULT_METRIC, to_target=to_target,
                      progress=_bar(progress, f"{dataset} candidates"), alpha=alpha)
    finally:
        index.close()
    if result.queries < FEW_QUERIES:
        log(f"note: only {result.queries} judged queries: the choice is noisy (use a larger dev set if you have one)")
    if result.guarded:
        log(guard_line(result))
    choice = FusionChoice.from_result(result, spec.fingerprint, config.scoring(), dataset, len(task.corpus))
    saved = save_choice(spec, choice) if save else None
    return Tuned(result, choice, saved, len(task.corpus))


def unseen_only(task: RetrievalTask, location: str, dataset: str, log=lambda msg: None) -> RetrievalTask:
    """`task` without the queries about an image the model at `location` trained on (its calibration.json, or
    its soup's ingredients'; eval/runner.seen_queries) and without those images' documents
    (eval/runner.without_trained); the task itself when it records none or none match."""
    from vfr.eval.runner import without_trained
    from vfr.retrieve.calibrate.card import trained_groups

    seen = frozenset(trained_groups(location) or ())
    unseen, hit, dropped = without_trained(task, seen)
    if not hit and not dropped:
        return task
    if not unseen.qrels or len(unseen.corpus) < 2:
        raise TuneInputError(f"{dataset}: the encoder trained on the image of every judged query (or of all but one "
                             "document), so nothing is left to tune on; use a dev set it never saw, or --keep-seen "
                             "to tune on them anyway")
    targets = {t for rel in task.qrels.values() for t, grade in rel.items() if grade > 0}
    log(f"left out {len(hit)} of {len(task.qrels)} {dataset} queries whose image the encoder trained on "
        f"({len(seen & targets)} of its {len(targets)} targets; such queries reward memorising, not ranking) and "
        f"{dropped} document{'s' * (dropped != 1)} of those images (distractors it has seen); "
        "--keep-seen tunes on them too")
    return unseen


def _bar(enabled: bool, desc: str):
    if not enabled:
        return None
    from tqdm import tqdm

    bar = None

    def update(n: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(desc=desc, total=total, leave=False, dynamic_ncols=True, unit="query")
        bar.update(n)
        if bar.n >= total:
            bar.close()
    return update


def guard_line(result: Any) -> str:
    """Why the built-in fusion was kept although another setting scored higher on the dev queries."""
    m = result.metric
    return (f"the grid's best, {describe(result.top)} ({m} {100 * result.value(result.top)[m]:.1f}), is not "
            f"significantly better than the built-in fusion ({100 * result.value(result.baseline)[m]:.1f}; "
            f"p = {result.p_value:.3f} ≥ {result.alpha:g}, sign-flip test of the best of {len(result.table)} "
            "settings over the built-in): keeping the built-in fusion (--alpha 1 takes the grid's best)")


def table_lines(result: Any, top: int = 8) -> list[str]:
    """The chosen setting, the built-in default and the best others, as Markdown rows (all metrics, %)."""
    from vfr.retrieve.tuning import METRICS

    ranked = sorted(result.table, key=lambda cm: -cm[1][result.metric])
    shown = list(dict.fromkeys([result.best, result.top, result.baseline]))
    shown += [c for c, _ in ranked if c not in shown][:top]
    lines = ["| fusion | " + " | ".join(("**" + m + "**") if m == result.metric else m for m in METRICS) + " | |",
             "|---|" + "---:|" * len(METRICS) + "---|"]
    for c in shown:
        m = result.value(c)
        tag = "chosen" if c == result.best else ("built-in default" if c == result.baseline else "")
        if c == result.best and c == result.baseline:
            tag = "chosen (= built-in default)"
        if c == result.top and result.guarded:
            tag = f"grid's best, not significant (p = {result.p_value:.3f})"
        elif c == result.best and result.p_value is not None and not result.guarded:
            tag += f" (p = {result.p_value:.3f})"
        lines.append(f"| {describe(c)} | " + " | ".join(f"{100 * m[k]:.1f}" for k in METRICS) + f" | {tag} |")
    return lines


def describe(c: Any) -> str:
    if c.method == "rrf":
        return f"rrf k={c.rrf_k}"
    if c.weights[0] == 0:
        return "dense alone"
    return f"convex {c.norm} w_sparse={c.weights[0]:g}"
