"""Would making queries read like descriptions, or descriptions like captions, lift the hybrid? An estimate of
two rewrites that cost nothing to serve:

    python benchmarks/style_estimate.py [--encoder MODEL] [--dev coco-val] [--test coco-test,coco-fg-test]

Queries are captions ("A man riding a wave on a surfboard.") and nearly every document opens with a VLM's
lead-in ("The image features a man riding…"). Two ways to close that gap without training:

* a query template on the dense side: the encoder reads "The image features a man riding a wave on a surfboard."
  (or "The image shows …", "A photo of …") for the query; BM25 reads the query as typed. `mix` averages the
  templated and the plain query's cosines.
* the lead-in cut from every document ("The image features a man…" → "A man…"), on both sides (the rule that
  `benchmarks/pseudo_pairs.py` cuts a description's first sentence with).

Scoring is the engine's (the sparse_expansion_estimate Bench: exact BM25 at the index defaults, each side's top
100, every candidate scored on both sides, the built-in fusion). With a calibrated encoder, dev leaves out the
images it trained on, queries and documents (`benchmarks/clean_val.py`). The dev's best rewrite (hybrid R@1) is
run on test whether or not it beat the plain engine on dev, with the paired randomisation test of the hybrid's
R@1 against the plain engine.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Sequence

import numpy as np

from clean_val import clean_dev, trained_images
from pseudo_pairs import cut_lead_in
from sparse_expansion_estimate import Bench, _fmt, _percent, against_plain, bench_task
from vfr.eval.tasks import RetrievalTask
from vfr.retrieve.encoder import DEFAULT_ENCODER, load_encoder

TEMPLATES = {"features": "The image features {}", "shows": "The image shows {}", "photo": "A photo of {}"}
REWRITES = [f"template {t}" for t in TEMPLATES] + [f"template {t} mix" for t in TEMPLATES] + ["lead-in cut"]


def templated(query: str, template: str) -> str:
    """The query inside the template: its first letter lowered unless the first word is an acronym, one full stop.
    (MiniLM's and mpnet's tokenisers lower-case anyway; the case is for readers of the rewritten text.)"""
    q = query.strip().rstrip(".")
    first = q.split()[0] if q.split() else ""
    if not (len(first) > 1 and first.isupper()):
        q = q[:1].lower() + q[1:]
    return template.format(q) + "."


class Rewrites:
    """One benchmark as the engine scores it, plain and under each rewrite: (BM25 scores, dense scores) each."""

    def __init__(self, name: str, encoder, task: RetrievalTask) -> None:
        self.bench = Bench(name, encoder, task)
        self.encoder, self.task = encoder, task
        self.sparse = self.bench.sparse_scores(self.bench.terms.__getitem__)

    def scores(self, rewrite: str) -> tuple[np.ndarray, np.ndarray]:
        b = self.bench
        if rewrite == "lead-in cut":
            cut = Bench(b.name, self.encoder,
                        dataclasses.replace(self.task, corpus={d: cut_lead_in(t) or t for d, t in self.task.corpus.items()}))
            return cut.sparse_scores(cut.terms.__getitem__), cut.dense
        name = rewrite.split()[1]
        dense = self.encoder.encode([templated(q, TEMPLATES[name]) for q in b.queries]) @ b.doc_vecs.T
        return self.sparse, (dense + b.dense) / 2 if rewrite.endswith("mix") else dense

    def recall(self, rewrite: str | None) -> list[list[float]]:
        if rewrite is None:
            return self.bench.recall(self.sparse)
        sparse, dense = self.scores(rewrite)
        return self.bench.recall(sparse, dense=dense)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--encoder", default=DEFAULT_ENCODER)
    ap.add_argument("--dev", default="coco-val")
    ap.add_argument("--test", default="coco-test,coco-fg-test", help="comma-separated test benchmarks")
    args = ap.parse_args(argv)
    encoder = load_encoder(args.encoder)
    trained = trained_images([args.encoder])
    dev_task, left_out = clean_dev(args.dev, trained)
    dev = Rewrites(args.dev, encoder, dev_task)
    rows = {r: dev.recall(r) for r in [None, *REWRITES]}
    print(f"{args.encoder} on {args.dev} without the {left_out} images it "
          f"trained on: {len(dev.bench.qids)} queries, {len(dev.bench.docs)} documents\n\n"
          "| rewrite | dense R@1/5/10 | hybrid R@1/5/10 |\n|---|---|---|")
    for r, (d, _, h) in rows.items():
        print(f"| {r or 'plain'} | {_fmt(d)} | {_fmt(h)} |", flush=True)
    best = max(REWRITES, key=lambda r: rows[r][2][0])
    verdict = "above" if rows[best][2][0] > rows[None][2][0] else "not above"
    print(f"\ndev's best: {best}, hybrid R@1 {rows[best][2][0]:.1f}, {verdict} the plain engine "
          f"({rows[None][2][0]:.1f}); on test anyway:\n\n| benchmark | dense R@1 plain → rewritten | "
          "hybrid R@1/5/10 plain | rewritten | Δ hybrid R@1 (95% CI), p |\n|---|---|---|---|---|")
    for name in filter(None, args.test.split(",")):
        test = Rewrites(name, encoder, bench_task(name))
        d0, d1, diff = against_plain(test.bench, test.sparse, *test.scores(best))
        lo, hi = (100 * x for x in diff["ci95"])
        print(f"| {name} | {d0:.1f} → {d1:.1f} | {_fmt(_percent(diff['base']))} | "
              f"{_fmt(_percent(diff['variant']))} | {100 * diff['diff_r1']:+.1f} ({lo:+.1f} to {hi:+.1f}), "
              f"{diff['p']:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
