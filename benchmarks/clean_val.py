"""Compare calibrated encoders on a validation benchmark none of them trained on, queries *and* documents:

    python benchmarks/clean_val.py MODEL_A MODEL_B [MODEL …] [--dev coco-val] [--bank coco-val-captions]

The COCO val join recipes train on some of coco-val's images. `vfr tune`, `vfr eval` and seen_split.py leave out
the queries about those images, but the images stay in the corpus, as distractors for every other query, and
the encoder has seen their descriptions. A model fitted on such a dev set can learn how trained-on documents
behave, which no unseen document does (docs/fusion.md § A learnt ranker). Here the images any of the given
models trained on (their calibration.json, a soup's ingredients') leave both the queries and the corpus, so
every model is scored on the same clean queries over the same documents and the comparison is paired.

Scoring is the engine's, as in the estimate scripts: exact BM25 at the index defaults, the model's cosines
(less λ · h(d) with `--bank`, the query-bank correction), each side's top 100, the built-in fusion (z-score,
0.1 BM25 / 0.9 dense). Printed: dense and hybrid R@1/5/10 and hybrid MRR@10 of each model, and each model's
hybrid R@1 against the first's (paired bootstrap interval, randomisation p).
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

import numpy as np

from adaptive_fusion_estimate import BUILT_IN, Lists
from sparse_expansion_estimate import Bench, _fmt, _percent, bench_task
from vfr.eval import benchmarks
from vfr.eval import metrics as M
from vfr.eval.ablation import KS, paired_diff
from vfr.eval.runner import without_trained
from vfr.eval.tasks import RetrievalTask
from vfr.retrieve import hubness
from vfr.retrieve.calibrate.card import trained_groups
from vfr.retrieve.encoder import load_encoder


def trained_images(locations: Sequence[str]) -> frozenset[str]:
    """Every image any of the models at `locations` trained on (none for a packaged model)."""
    return frozenset(g for where in locations for g in (trained_groups(where) or ()))


def without_trained_images(name: str, trained: frozenset[str]) -> RetrievalTask:
    """The benchmark's text→image task without the `trained` images: neither their queries nor their documents."""
    return clean_dev(name, trained)[0]


def clean_dev(name: str, trained: frozenset[str]) -> tuple[RetrievalTask, int]:
    """`without_trained_images`, and how many of the benchmark's images it left out (the task read once)."""
    task = bench_task(name)
    return without_trained(task, trained)[0], len(trained & set(task.corpus))


def corrected(bench: Bench, encoder, bank_texts: Sequence[str] | None, weight: float, k: int) -> np.ndarray:
    """The document offsets h(d) of the query bank (the bank less the benchmark's queries); zeros without one.
    The bench's dense scores become cos(q, d) − weight · h(d), as the engine's."""
    if bank_texts is None:
        return np.zeros(len(bench.docs), dtype=np.float32)
    bank = encoder.encode(benchmarks.without_scored([bench.task], bank_texts))
    h = hubness.offsets(bank, bench.doc_vecs, k)
    bench.dense = bench.dense - np.float32(weight) * h[None, :]
    return h


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="encoders (folders or installed names); the first is the base")
    ap.add_argument("--dev", default="coco-val")
    ap.add_argument("--bank", default="", help="a query bank (built-in name or file), as `vfr index --query-bank`")
    ap.add_argument("--bank-weight", type=float, default=hubness.DEFAULT_WEIGHT)
    ap.add_argument("--bank-k", type=int, default=10)
    args = ap.parse_args(argv)
    trained = trained_images(args.models)
    task, left_out = clean_dev(args.dev, trained)
    bank_texts = benchmarks.query_bank(args.bank) if args.bank else None
    print(f"{args.dev} without the {left_out} images any model trained on: "
          f"{len(task.queries)} queries, {len(task.corpus)} documents; bank {args.bank or 'none'}\n\n"
          "| model | dense R@1/5/10 | hybrid R@1/5/10 | hybrid MRR@10 | Δ hybrid R@1 vs the first (95% CI), p |"
          "\n|---|---|---|---:|---|")
    base = None
    for where in args.models:
        encoder = load_encoder(where)
        bench = Bench(args.dev, encoder, task)
        corrected(bench, encoder, bank_texts, args.bank_weight, args.bank_k)
        lists = Lists.of(bench)
        qrels, hybrid = lists.qrels(), lists.run(BUILT_IN)
        dense = _percent(M.evaluate(qrels, lists.run(0.0), KS))
        mrr = M.evaluate(qrels, hybrid, ["mrr@10"])["mrr@10"]
        if base is None:
            base, cell = hybrid, "–"
        else:
            d = paired_diff(qrels, base, hybrid)
            cell = (f"{100 * d['diff_r1']:+.1f} ({100 * d['ci95'][0]:+.1f} to {100 * d['ci95'][1]:+.1f}), "
                    f"{d['p']:.3f}")
        print(f"| {where} | {_fmt(dense)} | {_fmt(_percent(M.evaluate(qrels, hybrid, KS)))} | {100 * mrr:.1f} | "
              f"{cell} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
