"""Does tuning the fusion pay off on queries it did not see, and does the guard choose well? Validation data only.

The dev queries are split in two halves at random (by query), many times. On one half the grid's best fusion is
chosen (the way `vfr tune` does: mean of the metric, ties nearest the built-in) and the guard's selection test
is run; on the other half the chosen setting is scored against the built-in. Printed per model: the mean
out-of-half gain over the built-in (the metric, in points) of taking the grid's best always (no guard), and,
for each guard level, how often the guard let the grid's best through and the mean gain of its choice (the
built-in scores 0). This is how the default level (retrieve.tuning.DEFAULT_ALPHA) was chosen. Every query's candidates are scored once
(`HybridBackend.candidate_scores`), so each split only re-fuses.

    python benchmarks/guard_check.py --dev coco-val --encoder all-MiniLM-L6-v2 --encoder mpnet
    python benchmarks/guard_check.py --heldout-pairs coco-val --encoder out/models/mpnet-cal   # calibrate's 215
    python benchmarks/guard_check.py --dev coco-val --encoder all-MiniLM-L6-v2 --baseline zscore:0.3   # power

Results go to stdout and benchmarks/results/quality.jsonl (variant "guard-check").
"""
from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from vfr.eval.cache import open_corpus_index
from vfr.eval.metrics import to_target_run
from vfr.eval.tune import dev_task, pairs_task
from vfr.retrieve.calibrate.pairs import load_pairs, split_by_group
from vfr.retrieve.fusion import FusionConfig
from vfr.retrieve.tuning import collect, grid, per_query_configs, preference, selection_test
from vfr.retrieve.writer import IndexConfig


def per_query_table(task, encoder: str, cache_dir: Path | None, metric: str) -> tuple[list, np.ndarray]:
    """(settings, values[setting, query]) of `metric` for every grid setting on the task's judged queries."""
    configs = grid()
    index, _ = open_corpus_index(task.corpus, encoder, IndexConfig(), cache_dir, False, fusion="fixed")
    try:
        judged = {q: t for q, t in task.queries.items() if task.qrels.get(q)}
        qids, sparse, dense = collect(index.backend("hybrid"), judged, configs[0].depth)
    finally:
        index.close()
    to_target = (lambda run: to_target_run(run, task.doc_target)) if task.doc_target else None
    values = per_query_configs(qids, sparse, dense, task.qrels, configs, to_target)
    return configs, np.stack([v[metric] for v in values])


def choose(configs: list, values: np.ndarray, baseline: int) -> int:
    """The grid's best by mean, as `vfr tune` picks it (retrieve.tuning.preference)."""
    return max(range(len(configs)), key=lambda i: preference(configs[i], float(values[i].mean()), configs[baseline]))


def check(configs: list, values: np.ndarray, splits: int, alphas: list[float], seed: int,
          baseline_config: FusionConfig | None = None) -> dict:
    """Over `splits` random halvings: the grid's best chosen on one half, scored on the other against the
    built-in (`baseline_config` pretends another setting is it); with no guard and with the guard at each
    level in `alphas`. Gains in points of the metric."""
    baseline = configs.index(baseline_config or FusionConfig())
    rng = np.random.default_rng(seed)
    n = values.shape[1]
    picked_default, free, p_values = 0, [], []
    for _ in range(splits):
        order = rng.permutation(n)
        a, b = order[: n // 2], order[n // 2:]
        best = choose(configs, values[:, a], baseline)
        picked_default += int(best == baseline)
        p_values.append(1.0 if best == baseline else
                        selection_test(values[:, a] - values[baseline, a], permutations=1000))
        free.append(100 * float(values[best, b].mean() - values[baseline, b].mean()))
    gf, ps = np.array(free), np.array(p_values)
    guard = {f"{alpha:g}": {"passed": int((ps < alpha).sum()),
                            "gain_mean": round(float(np.where(ps < alpha, gf, 0.0).mean()), 3)} for alpha in alphas}
    return {"queries": n, "splits": splits, "grid_best_is_builtin": picked_default,
            "no_guard_gain_mean": round(float(gf.mean()), 3),
            "no_guard_gain_p5_p95": [round(float(np.percentile(gf, 5)), 2), round(float(np.percentile(gf, 95)), 2)],
            "no_guard_worse_share": round(float((gf < 0).mean()), 3), "guard": guard,
            "full_set_best_gain": round(100 * float(values.mean(axis=1).max() - values[baseline].mean()), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dev", help="a dev set `vfr tune` reads (e.g. coco-val)")
    ap.add_argument("--heldout-pairs", help="calibration pairs source: its held-out split (with the training "
                    "documents as distractors) is the dev set, as `vfr calibrate` tunes")
    ap.add_argument("--encoder", action="append", required=True)
    ap.add_argument("--metric", default="mrr@10")
    ap.add_argument("--splits", type=int, default=200)
    ap.add_argument("--alphas", default="0.05,0.1,0.2,0.5", help="guard levels to compare")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache-dir", type=Path, default=Path("out/cache"))
    ap.add_argument("--baseline", help="power check: pretend this grid setting is the built-in (NORM:W_SPARSE, e.g. "
                    "zscore:0.3), so the grid's best really is better by `full_set_best_gain`; how often does the "
                    "guard let it through on half the queries?")
    args = ap.parse_args()
    if bool(args.dev) == bool(args.heldout_pairs):
        ap.error("give one of --dev or --heldout-pairs")
    if args.dev:
        name, task = dev_task(args.dev)
    else:
        train, held = split_by_group(load_pairs(args.heldout_pairs, descriptions="longest"), 0.1, 0)
        name, task = f"{args.heldout_pairs} held-out pairs", pairs_task(held, distractors=train)
    for encoder in args.encoder:
        t0 = time.perf_counter()
        configs, values = per_query_table(task, encoder, args.cache_dir, args.metric)
        pretend = None
        if args.baseline:
            norm, w = args.baseline.split(":")
            pretend = FusionConfig(weights=(float(w), round(1 - float(w), 6)), norm=norm)  # type: ignore[arg-type]
        result = check(configs, values, args.splits, [float(a) for a in args.alphas.split(",")], args.seed, pretend)
        result.update(encoder=encoder, dev=name, metric=args.metric, baseline=args.baseline,
                      seconds=round(time.perf_counter() - t0, 1))
        print(json.dumps(result))
        with open("benchmarks/results/quality.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps({"variant": "guard-check", "when": datetime.now(timezone.utc).isoformat(
                timespec="seconds"), **result}) + "\n")


if __name__ == "__main__":
    main()
