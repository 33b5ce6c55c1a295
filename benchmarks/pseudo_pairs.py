"""Caption-like pseudo-queries from machine descriptions alone, for `vfr calibrate --pairs FILE` (issue 13).

    python benchmarks/pseudo_pairs.py [--group-prefix P] > out/pseudo-pairs.jsonl

Every MiniLM calibration learns the caption → description mapping from the few hundred images that have both
(the COCO joins). HALC and OPERA describe some 2,600 more COCO images, with no captions here. A vision LLM opens
with a summary ("The image features an old motorcycle parked on a street."), which reads like a caption once
its lead-in is cut. Each image with descriptions by two or more models gives pairs: the first sentence of one
model's description (lead-in cut) → the longest description of the image by *another* model (the document an
index holds), so a query never shares its own description's wording.

Left out: the images of the COCO joins (coco-val is validation, coco-test and coco-fg-test test) and the images
SugarCrepe items have a description of. halc-xmodel and opera-xmodel search every HALC / OPERA image, so a
model trained on these pairs has seen their documents' images (not their queries' wording): they are no longer
held-out benchmarks for it. Groups are the COCO ids, so held-out pairs are split by image; `--group-prefix`
prefixes them (e.g. `pseudo:`) so that `vfr calibrate --exclude-groups out/unseen-images.txt`, which keeps the
other sources' halc/opera images out, does not drop these pairs as well.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from vfr.eval import datasets as ds
from vfr.eval.benchmarks import coco_descriptions, default_data_dir
from vfr.eval.tasks import _model_of
from vfr.retrieve.fields import first_sentence

LEAD_IN = re.compile(r"^(?:in )?(?:the|this) (?:image|picture|photo(?:graph)?|scene)(?: (?:is|appears to be))?"
                     r"(?: (?:features|shows|depicts|displays|captures|showcases|presents|contains|of|"
                     r"consists of))?\s*,?\s*", re.IGNORECASE)


def cut_lead_in(text: str) -> str:
    """The text without its lead-in ("The image features …"), first letter capitalised; '' if nothing is left."""
    rest = LEAD_IN.sub("", text.strip(), count=1).strip()
    return rest[:1].upper() + rest[1:]


def pseudo_query(description: str) -> str:
    """The description's first sentence without its lead-in, as a caption would read; '' if nothing is left."""
    rest = cut_lead_in(first_sentence(description))
    return rest if len(rest.split()) >= 3 else ""


def held_out_images(data: Path) -> set[str]:
    """The images of the COCO joins and of SugarCrepe(++) items (COCO ids)."""
    out = {img.image_id for split in ("val", "test")
           for img in ds.load_joined(data / "joined" / f"coco_karpathy_{split}_x_vlm_descriptions.jsonl")}
    out.update(item.image_id for item in ds.load_sugarcrepe(data / "sugarcrepe"))
    out.update(item.image_id for item in ds.load_sugarcrepe_pp(data / "sugarcrepe_pp"))
    return out


def pairs(data: Path, prefix: str = "") -> tuple[list[dict], dict[str, int]]:
    skip = held_out_images(data)
    rows, stats = [], {"images": 0, "held_out": 0, "one_model": 0}
    for cid, descs in sorted(coco_descriptions(data).items(), key=lambda kv: int(kv[0])):
        if cid in skip:
            stats["held_out"] += 1
            continue
        doc_key = max(descs, key=lambda k: (len(descs[k]), k))
        queries = sorted({pseudo_query(t) for k, t in descs.items() if _model_of(k) != _model_of(doc_key)} - {""})
        if not queries:
            stats["one_model"] += 1
            continue
        stats["images"] += 1
        rows += [{"query": q, "document": descs[doc_key], "group": prefix + cid} for q in queries]
    return rows, stats


def main() -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--group-prefix", default="", help="prefix of every pair's group (its COCO id)")
    rows, stats = pairs(default_data_dir(), ap.parse_args().group_prefix)
    for r in rows:
        print(json.dumps(r, ensure_ascii=False))
    print(f"{len(rows)} pairs over {stats['images']} images ({stats['held_out']} held-out images and "
          f"{stats['one_model']} with one describing model left out)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
