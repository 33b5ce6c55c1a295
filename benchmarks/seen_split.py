"""A validation set the calibration partly trained on, split into the queries it never saw and those it did.

The unseen-images recipe (docs/travel.md) draws its COCO val join pairs from coco-val's images, so some of
coco-val's targets are training images: a setting that memorises its training pairs better (a higher learning
rate, a smaller batch) gains on those queries and looks better on coco-val without ranking unseen images any
better. This script reads `vfr eval` runs (out/ablate/NAME, written by benchmarks/quality_runs.py), takes the
encoder each run used from its metrics.json, and the images that encoder trained on from its calibration.json
(`train_group_ids`; the held-out images are not among them), for a soup the union of its ingredients'. Each
query is *seen* when one of its relevant documents is such an image. It prints R@1 of every run on all
queries, on the unseen ones and on the seen ones, and, against the first run, the paired R@1 difference on the
unseen queries (bootstrap interval, randomisation p; eval/ablation.paired_diff). All runs must share the
training images (the same seed and data), so they are compared on the same queries. (`vfr eval` itself now
reports R@1 on the unseen queries of a calibrated encoder, docs/eval.md; this script adds the paired test.)

    python benchmarks/seen_split.py out/ablate/val-travel-fix out/ablate/val-travel-lr5e5 [--bench coco-val]
        [--task t2i] [--retriever hybrid]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Mapping

import numpy as np

from vfr.eval import ablation
from vfr.eval import metrics as M
from vfr.eval.runner import seen_queries
from vfr.retrieve.calibrate.card import trained_groups


def trained_images(run_dir: Path, bench: str) -> frozenset[str]:
    """The group ids (images) the encoder of `vfr eval BENCH --out RUN_DIR/BENCH` was calibrated on."""
    doc = json.loads(ablation._metrics_path(run_dir, bench).read_text(encoding="utf-8"))
    encoder = doc["config"].get("encoder")
    if not encoder:
        sys.exit(f"{run_dir}/{bench}: it ran the default encoder, which has no training images to split on; "
                 "run this on calibrated models (or soups of them) only")
    seen = trained_groups(encoder)
    if seen is None:
        sys.exit(f"{encoder} records no training images (calibration.json train_group_ids, or a soup.json whose "
                 "ingredients all do), so there is nothing to split on; run this on calibrated models (or soups "
                 "of them) only")
    return frozenset(seen)


def split(qrels: Mapping[str, Mapping[str, int]], seen: frozenset[str]) -> tuple[dict, dict]:
    """(unseen, seen) qrels: a query is seen when it is about a training image (eval/runner.seen_queries)."""
    hit = seen_queries(qrels, seen)
    unseen = {q: dict(r) for q, r in qrels.items() if q not in hit}
    return unseen, {q: dict(r) for q, r in qrels.items() if q in hit}


def r1(qrels: Mapping[str, Mapping[str, int]], run: dict) -> float:
    return float(M.per_query(qrels, run, "hit_rate@1").mean()) if qrels else float("nan")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="out/ablate/NAME folders; the first is the base")
    parser.add_argument("--bench", default="coco-val")
    parser.add_argument("--task", default="t2i")
    parser.add_argument("--retriever", default="hybrid")
    args = parser.parse_args(argv)
    from vfr.eval import benchmarks

    task = next((t for t in benchmarks.resolve(args.bench)[1] if t.name == args.task), None)
    if task is None:
        sys.exit(f"{args.bench} has no task {args.task!r}")
    seen_sets = {d: trained_images(d, args.bench) for d in args.runs}
    if len(set(seen_sets.values())) > 1:
        sys.exit("the runs' encoders trained on different images, so their unseen queries differ; compare runs of "
                 "one seed and one data set")
    seen = next(iter(seen_sets.values()))
    qrels = {q: dict(r) for q, r in task.qrels.items()}
    unseen_q, seen_q = split(qrels, seen)
    print(f"{args.bench} {args.task}: {len(qrels)} queries over {len(task.corpus)} documents; "
          f"{len(seen & set(task.corpus))} documents are training images, so {len(seen_q)} queries are seen and "
          f"{len(unseen_q)} unseen. {args.retriever} R@1:")
    runs = {}
    for d in args.runs:
        run = ablation.read_run(d, args.bench, args.task, args.retriever)
        if run is None:
            sys.exit(f"{d}/{args.bench}: no {args.task} {args.retriever} run; make it with benchmarks/quality_runs.py")
        runs[d] = run
    base = args.runs[0]
    print(f"| run | all | unseen | seen | unseen Δ vs {base.name} (95% CI), p |\n|---|---:|---:|---:|---|")
    for d, run in runs.items():
        cells = [f"{100 * r1(q, run):.1f}" for q in (qrels, unseen_q, seen_q)]
        diff = "–"
        if d != base:
            p = ablation.paired_diff(unseen_q, runs[base], run)
            diff = (f"{100 * p['diff_r1']:+.1f} ({100 * p['ci95'][0]:+.1f} to {100 * p['ci95'][1]:+.1f}), "
                    f"{ablation._p(p['p'])}")
        print(f"| {d.name} | {' | '.join(cells)} | {diff} |")


if __name__ == "__main__":
    main(sys.argv[1:])
