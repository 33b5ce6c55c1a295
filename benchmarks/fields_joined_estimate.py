"""Field BM25 on joined documents (several describers per image), estimated on validation (docs/views.md).

    python benchmarks/fields_joined_estimate.py [--bench coco-val] [--weights 0.1,0.25,0.5,1.0] [--work DIR]

The engine refuses `--bm25-fields` with `--descriptions every-model` (and `vfr eval`/`vfr tune` with
`-s concat`): a field reads one description's structure. This asks what building it would buy. The COCO joins'
descriptions are free text, so the only field is `caption`; on a joined document it can be made three ways:

    views  each describer's first sentence, joined (what a view-aware field would index)
    naive  the first sentence of the joined text (the first describer's only)
    lead2  each describer's first two sentences, joined

For each way and each caption weight, `vfr eval BENCH -s concat` runs with the field added to the plain BM25
(the field texts swapped in for the duration; a cache folder per way so no index is reused across ways), and
BM25 and hybrid R@1 are compared with plain BM25 by the paired randomisation test on per-query R@1. Packaged
MiniLM, built-in fusion. About a minute per setting on 2 cores.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

import vfr.retrieve.fields as fields
from vfr.cli import app
from vfr.eval import benchmarks
from vfr.eval import datasets as ds
from vfr.eval import metrics as M
from vfr.eval.report import read_trec
from vfr.eval.tasks import select_descriptions
from vfr.store.changes import JOIN_SEPARATOR

WAYS = ("views", "naive", "lead2")


def joined_views(data: Path) -> dict[str, list[str]]:
    """Joined text (as `-s concat` makes it) → each describer's description, in that order, for both COCO joins."""
    out = {}
    for split in ("val", "test"):
        for img in ds.load_joined(data / "joined" / f"coco_karpathy_{split}_x_vlm_descriptions.jsonl"):
            (_, joined), = select_descriptions(img.descriptions, "concat")
            out[joined] = [img.descriptions[k] for k in sorted(img.descriptions)]
    return out


def caption_field(way: str, views: list[str]) -> str:
    if way == "views":
        return " ; ".join(fields.first_sentence(v) for v in views)
    if way == "lead2":
        return " ; ".join(" ".join(fields._SENTENCE_END.split(v.strip())[:2]) for v in views)
    return fields.first_sentence(JOIN_SEPARATOR.join(views))


def run_eval(bench: str, out: Path, cache: Path, weight: str | None) -> None:
    args = ["eval", bench, "-s", "concat", "-o", str(out), "--cache-dir", str(cache), "--no-progress", "--no-plots"]
    res = CliRunner().invoke(app, args + (["--bm25-fields", f"caption={weight}"] if weight else []))
    if res.exit_code:
        raise SystemExit(f"vfr eval failed: {res.output[-2000:]}")


def top1_hits(qrels: dict, path: Path) -> np.ndarray:
    """Per judged query (in qrels' order), R@1 of the run file at `path`."""
    return M.per_query(qrels, read_trec(path), "hit_rate@1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", default="coco-val", help="a COCO join benchmark (validation: coco-val)")
    ap.add_argument("--weights", default="0.1,0.25,0.5,1.0")
    ap.add_argument("--work", type=Path, default=Path("out/fields-joined"))
    args = ap.parse_args()
    views = joined_views(benchmarks.default_data_dir())
    qrels = dict(next(t for t in benchmarks.resolve(args.bench, None)[1] if t.name == "t2i").qrels)
    original = fields.document_fields
    # `vfr eval` refuses the combination this estimates (its check builds an every-model IndexConfig for
    # -s concat): let that check pass in this process; the eval's own indexes hold the joined text either way
    import vfr.retrieve.writer as writer
    check = writer.IndexConfig.__post_init__

    def lenient(self) -> None:
        if self.fields and self.descriptions == "every-model":
            object.__setattr__(self, "descriptions", "newest")
        check(self)
    writer.IndexConfig.__post_init__ = lenient  # type: ignore[method-assign]

    run_eval(args.bench, args.work / "plain", args.work / "cache-plain", None)
    runs = args.work / "plain" / "runs"
    base = {side: top1_hits(qrels, runs / f"{args.bench}.t2i.{side}.trec") for side in ("bm25", "hybrid")}
    print(f"{args.bench} t2i R@1, plain BM25: bm25 {100 * base['bm25'].mean():.1f}, "
          f"hybrid {100 * base['hybrid'].mean():.1f}")
    print("| caption field | weight | BM25 R@1 (p) | hybrid R@1 (p) |\n|---|---:|---|---|")
    for way in WAYS:
        def patched(text, structured, way=way):
            out = original(text, structured)
            if text in views:
                out["caption"] = caption_field(way, views[text])
            return out
        fields.document_fields = patched
        try:
            for w in args.weights.split(","):
                out = args.work / f"{way}-{w}"
                run_eval(args.bench, out, args.work / f"cache-{way}", w)
                cells = []
                for side in ("bm25", "hybrid"):
                    a, b = base[side], top1_hits(qrels, out / "runs" / f"{args.bench}.t2i.{side}.trec")
                    p = M.paired_test(a, b, "fisher", permutations=5000)
                    cells.append(f"{100 * b.mean():.1f} ({p:.3f})")
                print(f"| {way} | {w} | {cells[0]} | {cells[1]} |", flush=True)
        finally:
            fields.document_fields = original


if __name__ == "__main__":
    main()
