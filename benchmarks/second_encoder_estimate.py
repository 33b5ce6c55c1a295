"""Would a second encoder's dense scores help as a third fusion signal? An estimate from `vfr eval` run files,
before anyone builds a second dense backend into the index.

    python benchmarks/second_encoder_estimate.py A_VAL B_VAL A_TEST B_TEST BENCH[,BENCH...] [--dev coco-val]

A_* are `vfr eval --out` parent folders of the main encoder (its bm25 and dense run files are used), B_* of the
second encoder (its dense run file). The weights (BM25, A, B) are chosen on the dev benchmark's first retrieval
task by R@1 over a small grid, then applied unchanged to each test benchmark's first retrieval task; each row
prints A's dense, A's BM25 + dense at the built-in 0.1 / 0.9, and the three signals with the dev-chosen weights.

Fusion: the engine's own `fusion.convex` (z-score): each run's scores are z-scored over the documents it
listed, a document a run did not list gets that run's lowest z-score, then a weighted sum. The run files hold only `--depth` results per query (20 by
default), so run `vfr eval --depth 100` for an estimate close to the engine's own candidate depth.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from vfr.eval import benchmarks
from vfr.eval import metrics as M
from vfr.eval.ablation import read_run
from vfr.eval.tasks import RetrievalTask
from vfr.retrieve.fusion import convex
from vfr.retrieve.types import Run

GRID = [(s, b) for s in (0.0, 0.05, 0.1) for b in (0.0, 0.1, 0.2, 0.3, 0.4)]  # (BM25 weight, B's weight)


def _task_runs(folder: Path, bench: str, retrievers: Sequence[str]) -> tuple[dict, list[Run]]:
    task = next(t for t in benchmarks.resolve(bench, None)[1] if isinstance(t, RetrievalTask))
    runs = [read_run(folder, bench, task.name, r) for r in retrievers]
    missing = [r for r, run in zip(retrievers, runs) if run is None]
    if missing:
        sys.exit(f"{folder / bench} has no {', '.join(missing)} run: run `vfr eval {bench} --out {folder / bench}` "
                 "with those retrievers")
    return {q: dict(r) for q, r in task.qrels.items()}, runs


def _r1(qrels: dict, run: Run) -> float:
    return 100 * M.evaluate(qrels, run, ["hit_rate@1"])["hit_rate@1"]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name in ("a_val", "b_val", "a_test", "b_test"):
        ap.add_argument(name, type=Path)
    ap.add_argument("benchmarks")
    ap.add_argument("--dev", default="coco-val")
    args = ap.parse_args(argv)

    qrels, (bm25, dense) = _task_runs(args.a_val, args.dev, ("bm25", "dense"))
    _, (second,) = _task_runs(args.b_val, args.dev, ("dense",))
    on_dev = {w: _r1(qrels, convex([bm25, dense, second], (w[0], 1 - w[0] - w[1], w[1]))) for w in GRID}
    s, b = max(on_dev, key=on_dev.get)
    print(f"{args.dev}: BM25 {s:g}, A {1 - s - b:g}, B {b:g} chosen (R@1 {on_dev[(s, b)]:.1f}; "
          f"BM25 0.1 + A 0.9: {on_dev[(0.1, 0.0)]:.1f})")
    print("| benchmark | A dense | A hybrid (0.1 / 0.9) | three signals |\n|---|---:|---:|---:|")
    for bench in args.benchmarks.split(","):
        qrels, (bm25, dense) = _task_runs(args.a_test, bench, ("bm25", "dense"))
        _, (second,) = _task_runs(args.b_test, bench, ("dense",))
        print(f"| {bench} | {_r1(qrels, dense):.1f} | {_r1(qrels, convex([bm25, dense], (0.1, 0.9))):.1f} | "
              f"{_r1(qrels, convex([bm25, dense, second], (s, 1 - s - b, b))):.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
