"""Write the --exclude-groups files of the cross-fitted teachers in docs/distillation.md: the student's training
images (calibrate's split of the pairs: --heldout 0.1 --seed 0) in two random halves (seed 0); each file lists
the other half plus the student's held-out images, so teacher A trains on half A only and scores half B.

    python benchmarks/crossfit_groups.py --pairs coco-val --out out/crossfit
    # → out/crossfit/exclude-for-A.txt, exclude-for-B.txt
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from vfr.retrieve.calibrate.pairs import load_pairs, split_by_group

ap = argparse.ArgumentParser()
ap.add_argument("--pairs", default="coco-val")
ap.add_argument("--descriptions", default="longest")
ap.add_argument("--heldout", type=float, default=0.1)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--out", type=Path, default=Path("out/crossfit"))
args = ap.parse_args()
train, held = split_by_group(load_pairs(args.pairs, descriptions=args.descriptions), args.heldout, args.seed)
groups, held_groups = sorted({p.group for p in train}), sorted({p.group for p in held})
order = np.random.default_rng(args.seed).permutation(len(groups))
half = {"A": sorted(groups[i] for i in order[: len(groups) // 2]),
        "B": sorted(groups[i] for i in order[len(groups) // 2:])}
args.out.mkdir(parents=True, exist_ok=True)
header = ("# cross-fitting (docs/distillation.md): the student's training images split in two at random (seed "
          f"{args.seed}) + its held-out images\n")
for name, other in (("A", "B"), ("B", "A")):
    (args.out / f"exclude-for-{name}.txt").write_text(header + "\n".join(half[other] + held_groups) + "\n")
print(f"{len(groups)} training images → halves of {len(half['A'])} / {len(half['B'])}; {len(held_groups)} held out; "
      f"wrote {args.out}/exclude-for-A.txt, exclude-for-B.txt")
