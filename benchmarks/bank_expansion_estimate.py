"""Can real captions of *other* images bridge the gap between a VLM's description style and a person's query
style? An estimate of two document-side uses of a caption bank before anyone builds them into the index:

    python benchmarks/bank_expansion_estimate.py [--test coco-test,coco-fg-test] [--encoder PATH]

Every document d gets its m nearest bank captions c_1..c_m by cos(d, c) under the encoder (the neighbours the
query-bank hubness correction already finds when it indexes a document):

* sparse (document expansion, the retrieval-based cousin of doc2query, Nogueira et al. 2019): d's BM25 text
  gains the analysed terms of c_1..c_m, so a query can match a description by caption words it never uses.
* dense (cluster smoothing, Liu & Croft 2004, in vector form): d scores cos(q, d) + γ · cos(q, mean(c_i)),
  pulling a description towards the captions people write for images like it.

The bank is every caption of the COCO Karpathy *val* images outside both COCO joins (about 22,900 captions of
4,573 images, none of a benchmark's images), less any text a benchmark scores. Scoring is the engine's (the
sparse_expansion_estimate Bench: analyser, exact BM25 at the index defaults, the built-in fusion, each side's
top 100). m and γ are chosen on the dev benchmark; the dev's best of each grid is then run on test, with the
paired randomisation test of the hybrid's R@1 against the plain engine.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

import numpy as np

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from sparse_expansion_estimate import Bench, _fmt, _percent, against_plain  # noqa: E402

from vfr.eval import benchmarks  # noqa: E402
from vfr.retrieve import lucene  # noqa: E402
from vfr.retrieve.bm25 import TextsBm25  # noqa: E402
from vfr.retrieve.encoder import DEFAULT_ENCODER, load_encoder  # noqa: E402
from vfr.retrieve.hubness import clean_bank  # noqa: E402
from vfr.retrieve.writer import IndexConfig  # noqa: E402

SPARSE_GRID = [1, 2, 3, 5, 10]
DENSE_GRID = [(m, g) for m in (1, 3, 5, 10) for g in (0.1, 0.25, 0.5)]
MAX_M = 10


def caption_bank() -> list[str]:
    return clean_bank([c for i in benchmarks.coco_val_outside_joins() for c in i.captions])


def nearest(doc_vecs: np.ndarray, bank_vecs: np.ndarray, usable: np.ndarray, m: int) -> np.ndarray:
    """Each document's m nearest usable bank entries by cosine (indices into the bank, best first)."""
    sims = doc_vecs @ bank_vecs.T
    sims[:, ~usable] = -np.inf
    return np.argsort(-sims, axis=1, kind="stable")[:, :m]


def expanded(doc_terms: Sequence[Sequence[str]], bank_terms: Sequence[Sequence[str]], near: np.ndarray,
             m: int) -> list[list[str]]:
    """Each document's terms followed by the terms of its m nearest bank captions."""
    return [list(t) + [w for j in near[i, :m] for w in bank_terms[j]] for i, t in enumerate(doc_terms)]


def smoothed(dense: np.ndarray, query_vecs: np.ndarray, bank_vecs: np.ndarray, near: np.ndarray, m: int,
             gamma: float) -> np.ndarray:
    """cos(q, d) + γ · cos(q, the unit mean of d's m nearest bank captions), query × document."""
    centroid = bank_vecs[near[:, :m]].mean(axis=1)
    centroid /= np.linalg.norm(centroid, axis=1, keepdims=True)
    return dense + np.float32(gamma) * (query_vecs @ centroid.T)


class Expansion:
    """One benchmark's documents with their nearest bank captions; the bank less the benchmark's queries."""

    def __init__(self, bench: Bench, bank: list[str], bank_vecs: np.ndarray, bank_terms: list[list[str]]) -> None:
        scored = set(bench.queries)
        usable = np.array([b not in scored for b in bank])
        self.bench, self.bank_vecs, self.bank_terms = bench, bank_vecs, bank_terms
        self.near = nearest(bench.doc_vecs, bank_vecs, usable, MAX_M)
        self.doc_terms = lucene.analyse(bench.texts)

    def sparse(self, m: int) -> np.ndarray:
        config = IndexConfig()
        bm25 = TextsBm25(expanded(self.doc_terms, self.bank_terms, self.near, m), config.k1, config.b)
        return np.vstack([bm25.score(self.bench.terms[i]) for i in range(len(self.bench.qids))])

    def dense(self, m: int, gamma: float) -> np.ndarray:
        return smoothed(self.bench.dense, self.bench.query_vecs, self.bank_vecs, self.near, m, gamma)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dev", default="coco-val")
    ap.add_argument("--test", default="", help="comma-separated test benchmarks (caption queries)")
    ap.add_argument("--encoder", default=DEFAULT_ENCODER)
    args = ap.parse_args(argv)
    encoder = load_encoder(args.encoder)
    bank = caption_bank()
    bank_vecs = encoder.encode(bank)
    bank_terms = [list(t) for t in lucene.analyse(bank)]
    print(f"bank: {len(bank)} captions")

    dev = Bench(args.dev, encoder)
    ex = Expansion(dev, bank, bank_vecs, bank_terms)
    base_sparse = dev.sparse_scores(dev.terms.__getitem__)
    rows = {"plain": dev.recall(base_sparse)}
    sparse_by_m = {m: ex.sparse(m) for m in SPARSE_GRID}
    for m, s in sparse_by_m.items():
        rows[f"sparse m={m}"] = dev.recall(s)
    for m, g in DENSE_GRID:
        rows[f"dense m={m} γ={g}"] = dev.recall(base_sparse, dense=ex.dense(m, g))
    print(f"\n{args.dev}: {len(dev.qids)} queries, {len(dev.docs)} documents\n\n"
          "| setting | dense R@1/5/10 | BM25 R@1/5/10 | hybrid R@1/5/10 |\n|---|---|---|---|")
    for name, (d, s, h) in rows.items():
        print(f"| {name} | {_fmt(d)} | {_fmt(s)} | {_fmt(h)} |", flush=True)
    best_m = max(SPARSE_GRID, key=lambda m: rows[f"sparse m={m}"][2][0])
    best_mg = max(DENSE_GRID, key=lambda mg: rows[f"dense m={mg[0]} γ={mg[1]}"][2][0])
    both = dev.recall(sparse_by_m[best_m], dense=ex.dense(*best_mg))
    print(f"| both (sparse m={best_m}, dense m={best_mg[0]} γ={best_mg[1]}) | {_fmt(both[0])} | {_fmt(both[1])} | "
          f"{_fmt(both[2])} |")
    print("\nOn test, the dev's best of each (paired against the plain engine):\n\n"
          "| benchmark | variant | dense R@1 | hybrid R@1/5/10 | with it | hybrid − dense | Δ hybrid R@1, p |\n"
          "|---|---|---:|---|---|---:|---|")
    for name in filter(None, args.test.split(",")):
        test = Bench(name, encoder)
        tex = Expansion(test, bank, bank_vecs, bank_terms)
        base = test.sparse_scores(test.terms.__getitem__)
        variants = {f"sparse m={best_m}": (tex.sparse(best_m), None),
                    f"dense m={best_mg[0]} γ={best_mg[1]}": (base, tex.dense(*best_mg))}
        variants["both"] = (variants[f"sparse m={best_m}"][0], variants[f"dense m={best_mg[0]} γ={best_mg[1]}"][1])
        for label, (s, d) in variants.items():
            d0, d1, diff = against_plain(test, base, s, d)
            h1 = _percent(diff["variant"])
            print(f"| {name} | {label} | {d0:.1f} → {d1:.1f} | {_fmt(_percent(diff['base']))} | {_fmt(h1)} | "
                  f"{h1[0] - d1:+.1f} | {100 * diff['diff_r1']:+.1f}, {diff['p']:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
