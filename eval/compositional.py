"""Score compositional trials (SugarCrepe / SugarCrepe++) with any retriever's `score(query, doc_ids)`.

The captions (positives and hard negatives) are the indexed documents; a description is the query,
and a check passes when the positive scores strictly above the negative: a tie is a failure (BM25
cannot tell `swap` negatives apart, which is the point) and ties are counted separately.

Scores within a relative 1e-5 of each other are a tie: Lucene sums float32 term scores in document
order, so two captions with the same bag of words differ in the 7th digit, and that noise must not
decide a comparison.
"""
from __future__ import annotations

import hashlib
import math
from typing import Callable, Iterable, Mapping

import numpy as np

from vfr.eval.metrics import accuracy_ci
from vfr.eval.tasks import CompositionalTask, Trial

Scorer = Callable[[str, list[str]], Mapping[str, float]]
TIE_REL_TOL = 1e-5


def tied(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=TIE_REL_TOL, abs_tol=1e-9)


def doc_id(text: str) -> str:
    """Captions are deduplicated by text: the same sentence is one document."""
    return "c" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def corpus(task: CompositionalTask) -> dict[str, str]:
    """Every positive and negative caption of the trials, keyed by `doc_id`."""
    out: dict[str, str] = {}
    for t in task.trials:
        for c in t.checks:
            out[doc_id(c.positive)] = c.positive
            out[doc_id(c.negative)] = c.negative
    return out


def score_trials(trials: Iterable[Trial], score: Scorer, per_trial: bool,
                 progress: Callable[[Iterable], Iterable] = lambda x: x) -> list[tuple[bool, int]]:
    """(all checks passed, number of tied checks) per trial.

    `per_trial=False` scores each distinct query once against all the captions it is checked
    against (valid when a document's score does not depend on the other documents, as for BM25
    and cosine); `per_trial=True` scores each trial's own captions only (fused scores, whose
    normalisation depends on the set scored).
    """
    trials = list(trials)
    cache: dict[str, Mapping[str, float]] = {}
    if not per_trial:
        wanted: dict[str, set[str]] = {}
        for t in trials:
            for c in t.checks:
                wanted.setdefault(c.query, set()).update((doc_id(c.positive), doc_id(c.negative)))
        for q in progress(list(wanted)):
            cache[q] = score(q, sorted(wanted[q]))
    out = []
    for t in (trials if not per_trial else progress(trials)):
        if per_trial:
            ids = sorted({doc_id(x) for c in t.checks for x in (c.positive, c.negative)})
            scores = score(t.checks[0].query, ids)
        ok, ties = True, 0
        for c in t.checks:
            s = cache[c.query] if not per_trial else scores
            p, n = s.get(doc_id(c.positive), float("-inf")), s.get(doc_id(c.negative), float("-inf"))
            tie = tied(p, n)
            ties += tie
            ok &= p > n and not tie
        out.append((ok, ties))
    return out


def summarize(task: CompositionalTask, outcomes: list[tuple[bool, int]], seed: int = 0) -> dict:
    """Accuracy per category and overall. An item seen through several descriptions (source `each`)
    counts once, with the mean of its trials; the macro average weighs categories equally."""
    by_item: dict[str, list[float]] = {}
    ties_by_cat: dict[str, int] = {}
    cat_of: dict[str, str] = {}
    for t, (ok, ties) in zip(task.trials, outcomes, strict=True):
        by_item.setdefault(t.item_id, []).append(float(ok))
        cat_of[t.item_id] = t.category
        ties_by_cat[t.category] = ties_by_cat.get(t.category, 0) + ties
    categories: dict[str, dict] = {}
    for cat in sorted(task.items_total):
        vals = np.array([np.mean(v) for i, v in by_item.items() if cat_of[i] == cat])
        lo, hi = accuracy_ci(vals, seed=seed) if vals.size else (float("nan"), float("nan"))
        categories[cat] = {"items": int(vals.size), "items_total": task.items_total[cat],
                           "accuracy": float(vals.mean()) if vals.size else float("nan"),
                           "ci95": [lo, hi], "tied_checks": ties_by_cat.get(cat, 0)}
    all_vals = np.array([np.mean(v) for v in by_item.values()])
    used = [c for c in categories.values() if c["items"]]
    return {"categories": categories,
            "items": int(all_vals.size),
            "micro_accuracy": float(all_vals.mean()) if all_vals.size else float("nan"),
            "macro_accuracy": float(np.mean([c["accuracy"] for c in used])) if used else float("nan"),
            "trials": len(outcomes)}
