"""Re-choose the fusion of a model calibrated by `vfr calibrate` without retraining it: the same pairs and
held-out split (same --pairs, --descriptions, --heldout, --seed), the held-out captions querying every
document of the pairs (what `vfr calibrate` now does after training). Saves fusion.json in the model folder.

    python benchmarks/retune_calibrated.py MODEL --pairs coco-val --descriptions longest [--heldout 0.1 --seed 0]
        [--alpha 0.2]   (the guard of retrieve/tuning.py; 1 = the grid's best whatever, as before the guard)
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from vfr.eval.tune import describe, pairs_task, table_lines, tune_task
from vfr.retrieve.calibrate.pairs import load_pairs, split_by_group

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--pairs", default="coco-val")
ap.add_argument("--descriptions", default="longest")
ap.add_argument("--heldout", type=float, default=0.1)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--metric", default="mrr@10")
ap.add_argument("--alpha", type=float, default=0.2, help="the guard's level (1 = the grid's best whatever)")
ap.add_argument("--cache-dir", default="out/cache")
ap.add_argument("--no-distractors", action="store_true", help="held-out documents only (the first version)")
args = ap.parse_args()
train, held = split_by_group(load_pairs(args.pairs, descriptions=args.descriptions), args.heldout, args.seed)
task = pairs_task(held, distractors=() if args.no_distractors else train)
tuned = tune_task(task, args.model, "calibration held-out pairs", metric=args.metric, cache_dir=Path(args.cache_dir),
                  progress=False, log=print, alpha=args.alpha)
print("\n".join(table_lines(tuned.result)))
print(f"chosen: {describe(tuned.result.best)} (grid's best {describe(tuned.result.top)}, p = {tuned.result.p_value}); "
      f"saved to {tuned.saved_to}")
with open("benchmarks/results/quality.jsonl", "a") as f:
    f.write(json.dumps({"variant": "retune", "model": args.model, "args": vars(args), "documents": tuned.documents,
                        "choice": tuned.choice.model_dump()}) + "\n")
