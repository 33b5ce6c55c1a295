"""Greedy model soup chosen on a labelled dev set (`vfr models soup --greedy DEV`): the recipe of Wortsman et al.
(ICML 2022, "Model soups", Recipe 2) for ingredients that validation cannot tell apart.

Each candidate (a calibration of one base model) is scored alone on the dev set; then, best first, each is
added to the soup if the uniform average with it scores at least as well as the soup without it. The score is
the hybrid with the built-in fusion (z-score, 0.1 BM25 / 0.9 dense), mean `metric` over the dev queries.
The dev set is fixed once for every trial: the queries whose image *no* candidate trained on (their
calibration.json; eval/runner.seen_queries), over the documents of the images no candidate trained on, so a soup
is never compared with a model on other queries or documents, no trial is rewarded for memorising, and no
candidate meets a distractor it trained on (the candidates of different seeds trained on different images).
Trial soups and their indexes live in a temporary folder; only the chosen soup is written, with the selection
(every trial's score) recorded in soup.json.
"""
from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from vfr.eval.tasks import RetrievalTask


class SelectionError(ValueError):
    """The candidates or the dev set cannot be used for a greedy soup (message says what to do)."""


@dataclass(frozen=True)
class Trial:
    candidate: str            # the model this trial added (the first trial: the best one alone)
    models: tuple[str, ...]   # the soup scored
    score: float
    kept: bool


@dataclass(frozen=True)
class Selection:
    chosen: list[str]
    alone: dict[str, float]   # each candidate's own dev score
    trials: list[Trial]

    @property
    def score(self) -> float:
        return max(t.score for t in self.trials if t.kept)


def greedy_select(candidates: Sequence[str], score: Callable[[Sequence[str]], float],
                  log: Callable[[str], None] = lambda m: None) -> Selection:
    """Wortsman et al.'s greedy soup: candidates ranked by their own score (ties: the order given); each added
    if the soup with it scores ≥ the soup so far. `score(models)` scores the uniform soup of `models`."""
    if len(candidates) < 2:
        raise SelectionError(f"a greedy soup chooses among at least 2 models, got {len(candidates)}")
    if len(set(candidates)) != len(candidates):
        raise SelectionError("a model is given twice: give each candidate once")
    alone: dict[str, float] = {}
    for c in candidates:
        alone[c] = score([c])
        log(f"{c}: {alone[c]:.4f} alone")
    order = sorted(candidates, key=lambda c: -alone[c])  # stable: ties keep the order given
    chosen = [order[0]]
    best = alone[order[0]]
    trials = [Trial(order[0], (order[0],), best, True)]
    for c in order[1:]:
        tried = (*chosen, c)
        value = score(list(tried))
        kept = value >= best
        log(f"+ {c}: {value:.4f} ({'kept' if kept else 'dropped'}; the soup so far {best:.4f})")
        if kept:
            chosen.append(c)
            best = value
        trials.append(Trial(c, tried, value, kept))
    return Selection(chosen, alone, trials)


def fixed_dev(task: RetrievalTask, candidates: Sequence[str], dataset: str,
              log: Callable[[str], None] = lambda m: None) -> RetrievalTask:
    """`task` without the queries about, and the documents of, the images any candidate trained on (one dev set
    for every trial; eval/runner.without_trained)."""
    from vfr.eval.runner import without_trained
    from vfr.retrieve.calibrate.card import trained_groups
    from vfr.retrieve.encoder import resolve_encoder

    seen: set[str] = set()
    for c in candidates:
        seen |= trained_groups(resolve_encoder(c).location) or set()
    unseen, hit, dropped = without_trained(task, frozenset(seen))
    if not unseen.qrels:
        raise SelectionError(f"{dataset}: the candidates trained on the image of every judged query; "
                             "choose on a dev set they never saw")
    if hit or dropped:
        log(f"scoring on the {len(unseen.qrels)} of {len(task.qrels)} {dataset} queries whose image no candidate "
            f"trained on ({len(hit)} left out: they reward memorising), over the {len(unseen.corpus)} of "
            f"{len(task.corpus)} documents none of them trained on")
    return unseen


class DevScorer:
    """Scores the uniform soup of some models on a fixed dev task: the hybrid with the built-in fusion, mean
    `metric` (retrieve.tuning.METRICS). Soups and indexes are made under `work` (a temporary folder)."""

    def __init__(self, task: RetrievalTask, work: Path, metric: str = "mrr@10", progress: bool = False) -> None:
        from vfr.retrieve.tuning import METRICS, TuningError

        if metric not in METRICS:
            raise TuningError(f"unknown metric {metric!r}: use one of {', '.join(METRICS)}")
        self.task, self.work, self.metric, self.progress = task, work, metric, progress
        self.soups = 0

    def encoder(self, models: Sequence[str]) -> str:
        if len(models) == 1:
            return models[0]
        from vfr.retrieve.calibrate.soup import make_soup

        self.soups += 1
        folder = self.work / f"trial-{self.soups}"
        make_soup(models, folder, log=lambda m: None)
        return str(folder)

    def __call__(self, models: Sequence[str]) -> float:
        from vfr.eval.cache import open_corpus_index
        from vfr.eval.metrics import to_target_run
        from vfr.retrieve.fusion import FusionConfig
        from vfr.retrieve.tuning import collect, per_query_configs
        from vfr.retrieve.writer import IndexConfig

        config = FusionConfig()
        index, _ = open_corpus_index(self.task.corpus, self.encoder(models), IndexConfig(), self.work / "cache",
                                     self.progress, fusion="fixed")
        try:
            judged = {q: t for q, t in self.task.queries.items() if self.task.qrels.get(q)}  # as retrieve.tuning.tune
            qids, sparse, dense = collect(index.backend("hybrid"), judged, config.depth)
        finally:
            index.close()
        to_target = (lambda run: to_target_run(run, self.task.doc_target)) if self.task.doc_target else None
        values = per_query_configs(qids, sparse, dense, self.task.qrels, [config], to_target)[0][self.metric]
        return float(np.mean(values)) if values.size else 0.0


def greedy_soup(candidates: Sequence[str], task: RetrievalTask, dataset: str, out_dir: Path, *,
                metric: str = "mrr@10", progress: bool = False, log: Callable[[str], None] = lambda m: None
                ) -> tuple[Selection, dict[str, Any]]:
    """Choose a greedy soup of `candidates` on `task` and write it to `out_dir` (a soup of one is that model,
    saved as an ordinary folder). Returns the selection and the soup.json written."""
    from vfr.retrieve.calibrate.soup import make_soup

    task = fixed_dev(task, candidates, dataset, log)
    with tempfile.TemporaryDirectory(prefix="vfr-greedy-soup-") as tmp:
        selection = greedy_select(candidates, DevScorer(task, Path(tmp), metric, progress), log)
    how = {"method": "greedy soup (Wortsman et al. 2022): candidates by their own dev score, each kept if the "
                     "soup with it scores at least as well",
           "dev": dataset, "metric": metric, "retriever": "hybrid, built-in fusion", "queries": len(task.qrels),
           "documents": len(task.corpus),
           "candidates": {c: round(v, 6) for c, v in selection.alone.items()},
           "trials": [{**asdict(t), "models": list(t.models), "score": round(t.score, 6)}
                      for t in selection.trials]}
    return selection, make_soup(selection.chosen, out_dir, log=log, selection=how)
