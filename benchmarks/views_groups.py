"""Where joining every describer's description gains (docs/views.md): coco-test text→image R@1 of two `vfr eval`
runs (the longest description vs all joined), split by which descriptions each query's image has.

    python benchmarks/views_groups.py out/ablate/base out/ablate/views [--retriever hybrid]

A group is named by how many OPERA (full-length) and HALC (cut at 64 tokens) descriptions its images have;
groups under 50 queries are left out of the table but not of the totals.
"""
from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from pathlib import Path

from vfr.eval import datasets as ds
from vfr.eval.benchmarks import default_data_dir
from vfr.eval.report import read_trec


def group(keys: list[str]) -> str:
    opera, halc = sum(k.startswith("opera/") for k in keys), sum(k.startswith("halc/") for k in keys)
    return f"{opera} OPERA + {halc} HALC"


def top1(folder: Path, retriever: str) -> dict[str, str]:
    run = read_trec(folder / "coco-test" / "runs" / f"coco-test.t2i.{retriever}.trec")
    return {q: max(docs.items(), key=lambda kv: kv[1])[0] for q, docs in run.items() if docs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("base", type=Path)
    ap.add_argument("variant", type=Path)
    ap.add_argument("--retriever", default="hybrid")
    args = ap.parse_args()
    images = ds.load_joined(default_data_dir() / "joined" / "coco_karpathy_test_x_vlm_descriptions.jsonl")
    of = {img.image_id: group(sorted(img.descriptions)) for img in images}
    images_in = Counter(of.values())
    base, variant = top1(args.base, args.retriever), top1(args.variant, args.retriever)
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for q in base:
        image = q.split("#")[0]
        c = counts[of[image]]
        c[0] += 1
        c[1] += base[q] == image
        c[2] += variant.get(q) == image
    print(f"| descriptions an image has | images | queries | {args.base.name} R@1 | {args.variant.name} R@1 | Δ |")
    print("|---|---:|---:|---:|---:|---:|")
    for g, (n, b, v) in sorted(counts.items(), key=lambda kv: -kv[1][0]):
        if n >= 50:
            print(f"| {g} | {images_in[g]} | {n} | {100 * b / n:.1f} | {100 * v / n:.1f} | {100 * (v - b) / n:+.1f} |")
    n, b, v = (sum(c[i] for c in counts.values()) for i in range(3))
    print(f"| all | {len(images)} | {n} | {100 * b / n:.1f} | {100 * v / n:.1f} | {100 * (v - b) / n:+.1f} |")


if __name__ == "__main__":
    main()
