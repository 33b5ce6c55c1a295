"""`vfr calibrate` with the batching it had before mined negatives were kept out of their images' batches, to
measure that fix (docs/batching.md). Same arguments as `vfr calibrate`; prints, for the first epoch's batches,
how many rows met their own image's description as another row's negative.

    python benchmarks/calibrate_old_batching.py calibrate --pairs coco-val ... --out out/models/minilm-hn2
"""
from __future__ import annotations

import sys

import vfr.retrieve.calibrate.train as train
from vfr.cli import app
from vfr.retrieve.calibrate.pairs import group_free_batches


def collisions(pairs, batch_size: int, seed: int) -> int:
    """Rows of the first epoch (group-only batching) whose positive is another row's negative."""
    import random

    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    hits = 0
    for batch in group_free_batches(order, batch_size, key=lambda i: pairs[i].group):
        negatives = {pairs[i].negative for i in batch}
        hits += sum(pairs[i].document in negatives for i in batch)
    return hits


def _old_negative_groups(pairs):
    if pairs and all(p.negative for p in pairs):
        print(f"old batching: {collisions(pairs, 32, 0)} of {len(pairs)} rows of the first epoch (batch 32, seed 0) "
              "meet their own positive as another row's negative", file=sys.stderr)
    return None  # the sampler then batches by image only, as before the fix


train.negative_groups = _old_negative_groups

if __name__ == "__main__":
    sys.argv = ["vfr", *sys.argv[1:]]
    app()
