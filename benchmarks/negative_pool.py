"""Write a pool of description-style documents for hard-negative mining (`vfr calibrate --hn-pool FILE`):

    python benchmarks/negative_pool.py > out/negative-pool.txt [--exclude out/unseen-images.txt]

HALC and OPERA describe COCO val2014 images of which many are in neither COCO join nor SugarCrepe(++), so no
benchmark's caption queries ask for them and no calibration pair has them. Each such image gives one document,
its longest description (as `--descriptions longest` pairs), whitespace collapsed to fit on one line. Images in
`--exclude` files (one id a line, `benchmarks/benchmark_images.py`'s output) are left out too; the count goes to
standard error.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pseudo_pairs import held_out_images
from vfr.eval.benchmarks import coco_descriptions, default_data_dir
from vfr.retrieve.calibrate.pairs import read_groups


def pool(data: Path, exclude: set[str]) -> list[str]:
    """The longest description of each described image outside the joins, SugarCrepe(++) and `exclude`."""
    out = held_out_images(data) | exclude
    return [" ".join(max(descs.values(), key=len).split())
            for cid, descs in sorted(coco_descriptions(data).items(), key=lambda kv: int(kv[0])) if cid not in out]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--exclude", action="append", default=[], help="a file of image ids to leave out (repeatable)")
    args = ap.parse_args(argv)
    docs = pool(default_data_dir(), {g for path in args.exclude for g in read_groups(Path(path))})
    print("\n".join(docs))
    print(f"{len(docs)} documents", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
