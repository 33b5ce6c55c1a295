"""Margins cos(q, document) − cos(q, negative) of several models on calibration triples, split into the
calibration's training images and its held-out images (docs/distillation.md § Why).

    python benchmarks/teacher_margins.py out/models/mpnet-cal mpnet default out/models/minilm-hn2

The triples are those of `vfr calibrate --pairs coco-val --descriptions longest --hard-negatives
--hn-retriever hybrid --hn-skip 1 --hn-count 2 --seed 0` (same split, same mining), except that the negatives
are mined over the documents of all 427 images at once, so training and held-out queries draw from one pool.
A teacher that is much surer of its training triples than of held-out ones teaches its own fit. "wrong way" is
the share of triples whose negative scores above the document.
"""
from __future__ import annotations

import statistics
import sys


def main(models: list[str]) -> None:
    from sentence_transformers import SentenceTransformer

    from vfr.cmd_calibrate import _engine_search
    from vfr.retrieve.calibrate.distil import teacher_margins
    from vfr.retrieve.calibrate.mining import mine_hard_negatives
    from vfr.retrieve.calibrate.pairs import load_sources, split_by_group
    from vfr.retrieve.encoder import resolve_encoder

    pairs, _ = load_sources(["coco-val"], descriptions="longest", seed=0)
    _, held = split_by_group(pairs, 0.1, 0)
    held_groups = {p.group for p in held}
    triples = mine_hard_negatives(pairs, skip=1, seed=0, search=_engine_search("hybrid", "default"), count=2)
    print("| model | training triples: mean margin | wrong way | held-out triples: mean margin | wrong way |")
    print("|---|---:|---:|---:|---:|")
    for name in models:
        model = SentenceTransformer(resolve_encoder(name).location, device="cpu")
        margins = teacher_margins(model, triples)
        parts = [[m for t, m in zip(triples, margins) if (t.group in held_groups) == side] for side in (False, True)]
        cells = [f"{statistics.mean(p):.3f} | {100 * sum(m < 0 for m in p) / len(p):.1f}%" for p in parts]
        print(f"| {name} | {cells[0]} | {cells[1]} |", flush=True)
    print(f"\n{sum(t.group not in held_groups for t in triples)} training and "
          f"{sum(t.group in held_groups for t in triples)} held-out triples")


if __name__ == "__main__":
    main(sys.argv[1:] or ["out/models/mpnet-cal", "mpnet", "default"])
