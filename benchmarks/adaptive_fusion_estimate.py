"""Would a fusion weight chosen per query, from what the two result lists look like, widen the hybrid's lead
over dense? An estimate before anyone builds query-dependent fusion into the engine:

    python benchmarks/adaptive_fusion_estimate.py [--encoder DIR] [--dev coco-val] \
        [--test coco-test,coco-fg-test,halc-xmodel,opera-xmodel,docci-iiw,iiw-400]

The built-in hybrid gives BM25 one weight for every query (z-score, 0.1 BM25 / 0.9 dense). Some queries
name a rare object or a word printed in the picture, where the lexical side knows better; others paraphrase,
where it only adds noise. Query-performance prediction (Cronen-Townsend et al. 2002; Shtok et al. 2012) and
dynamic fusion weights (e.g. Arabzadeh et al. 2021; Hsu and Tzeng 2025, DAT) read that off the result lists.
Here the weight is w(q) = sigmoid(b + θ · f(q)), where f(q) holds ten post-retrieval features of the two
sides' candidates:

* each side's top z-score and its gap to the second (how sure each side is);
* whether both sides put the same document first, and where each side's first document sits in the
  other side's ranking (log rank; do they agree);
* the dense side's top cosine, and the number of query terms and how many of them occur in BM25's first
  document (how lexical the query is).

Scoring is the engine's, as in sparse_expansion_estimate.py: exact BM25 at the index defaults, the given
encoder, each side's top 100, every candidate scored on both sides, z-scores over those candidates, then
w(q) · z_bm25 + (1 − w(q)) · z_dense. b, θ and a temperature are fitted on the dev benchmark's queries by the
softmax cross-entropy of the relevant document among the candidates (a smooth stand-in for R@1; L2 on θ).

Printed, one change at a time:
* dev: the built-in weight, the best single weight (b alone, fitted by the same loss) and the adaptive weight,
  each scored two-fold by image (fitted on one half of the dev images' queries, scored on the other half),
  and the oracle (each query's best weight of a grid, an upper bound no predictor reaches);
* test: the single weight and the adaptive model fitted on all of dev, unchanged, on each test benchmark,
  with the paired randomisation test of the hybrid's R@1 against the built-in fusion and the hybrid's
  margin over dense (what issue 13 asks to widen).
"""
from __future__ import annotations

import argparse
import sys
import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from sparse_expansion_estimate import Bench, _fmt, _percent
from vfr.eval import metrics as M
from vfr.eval.ablation import KS, paired_diff
from vfr.retrieve.encoder import DEFAULT_ENCODER, load_encoder
from vfr.retrieve.fusion import FusionConfig, normalise_grouped

FEATURES = ["dense top z", "dense gap", "bm25 top z", "bm25 gap", "same first", "dense first in bm25 (log rank)",
            "bm25 first in dense (log rank)", "dense top cosine", "query terms (log)", "terms in bm25 first"]
ORACLE_GRID = np.round(np.linspace(0, 1, 21), 2)
BUILT_IN = FusionConfig().weights[0] / sum(FusionConfig().weights)


def _z(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-row z-scores over the masked candidates, by the engine's own grouped normalisation (a constant row
    maps to 0); 0 outside the mask."""
    q, d = scores.shape
    z = normalise_grouped(scores.ravel(), mask.ravel(), np.repeat(np.arange(q), d), q, "zscore").reshape(q, d)
    return np.where(mask, z, 0.0)


def _sigmoid(x: np.ndarray | float) -> np.ndarray | float:
    return 1 / (1 + np.exp(-x))


@dataclass
class Lists:
    """One benchmark's candidates: z-scores of both sides over each query's candidates, the mask of those
    candidates, the features, and which candidates are relevant."""

    bench: Bench
    zs: np.ndarray
    zd: np.ndarray
    mask: np.ndarray
    features: np.ndarray
    relevant: np.ndarray

    @classmethod
    def of(cls, bench: Bench, depth: int = FusionConfig().depth) -> "Lists":
        sparse = bench.sparse_scores(lambda i: bench.terms[i]).astype(np.float64)
        dense = bench.dense.astype(np.float64)
        q, d = dense.shape
        order_s, order_d = np.argsort(-sparse, axis=1, kind="stable"), np.argsort(-dense, axis=1, kind="stable")
        mask = np.zeros((q, d), dtype=bool)
        rows = np.arange(q)[:, None]
        mask[rows, order_s[:, :depth]] = True
        mask[rows, order_d[:, :depth]] = True
        zs, zd = _z(sparse, mask), _z(dense, mask)
        rank_s, rank_d = np.empty_like(order_s), np.empty_like(order_d)
        rank_s[rows, order_s] = np.arange(d)
        rank_d[rows, order_d] = np.arange(d)
        first_s, first_d = order_s[:, 0], order_d[:, 0]
        second_s, second_d = order_s[:, min(1, d - 1)], order_d[:, min(1, d - 1)]
        r = np.arange(q)
        n_terms = np.array([len(bench.terms[i]) for i in range(q)], dtype=np.float64)
        hit_terms = _matched(bench, first_s)
        features = np.column_stack([
            zd[r, first_d], zd[r, first_d] - zd[r, second_d], zs[r, first_s], zs[r, first_s] - zs[r, second_s],
            (first_s == first_d).astype(np.float64), np.log1p(rank_s[r, first_d]), np.log1p(rank_d[r, first_s]),
            dense[r, first_d], np.log1p(n_terms), hit_terms / np.maximum(n_terms, 1)])
        relevant = np.zeros((q, d), dtype=bool)
        target_docs: dict[str, list[int]] = {}
        for i, doc in enumerate(bench.docs):
            target_docs.setdefault(bench.task.doc_target.get(doc, doc) if bench.task.doc_target else doc,
                                   []).append(i)
        for qi, qid in enumerate(bench.qids):
            for target, grade in bench.task.qrels.get(qid, {}).items():
                if grade > 0:
                    relevant[qi, target_docs.get(target, [])] = True
        return cls(bench, zs, zd, mask, features, relevant)

    def run(self, w: np.ndarray | float) -> dict:
        """The hybrid's run (by target) for weight(s) w on BM25, over each query's candidates (w = 0: dense)."""
        w = np.broadcast_to(np.asarray(w, dtype=np.float64), (len(self.zs),))
        return self.run_scores(w[:, None] * self.zs + (1 - w[:, None]) * self.zd)

    def run_scores(self, fused: np.ndarray) -> dict:
        """The run (by target) of query × document scores over each query's candidates."""
        docs = self.bench.docs
        run = {qid: {docs[j]: float(fused[i, j]) for j in np.flatnonzero(self.mask[i])}
               for i, qid in enumerate(self.bench.qids)}
        return M.to_target_run(run, self.bench.task.doc_target)

    def qrels(self) -> dict:
        keep = set(self.bench.qids)
        return {q: dict(r) for q, r in self.bench.task.qrels.items() if q in keep}


def _matched(bench: Bench, first: np.ndarray) -> np.ndarray:
    """How many of each query's analysed terms occur in its BM25-first document (forward index)."""
    seg = bench.whole.segment
    out = np.zeros(len(first))
    for i, doc in enumerate(first):
        row = seg.tf[int(doc)]
        present = set(np.asarray(row.indices).tolist())
        out[i] = sum(1 for t in bench.terms[i] if seg.vocab.get(t) in present)
    return out


class Weighting:
    """w(q) = sigmoid(b + θ · standardised f(q)); `adaptive=False` fits b alone (one weight for every query)."""

    def __init__(self, adaptive: bool, l2: float = 1e-2) -> None:
        self.adaptive, self.l2 = adaptive, l2

    def fit(self, lists: Lists, rows: np.ndarray) -> "Weighting":
        f = lists.features[rows]
        self.mean, self.std = f.mean(axis=0), f.std(axis=0) + 1e-9
        x = torch.tensor((f - self.mean) / self.std)
        zs, zd = torch.tensor(lists.zs[rows]), torch.tensor(lists.zd[rows])
        mask, rel = torch.tensor(lists.mask[rows]), torch.tensor(lists.relevant[rows] & lists.mask[rows])
        keep = rel.any(dim=1)  # a query whose relevant document is not among its candidates teaches nothing
        x, zs, zd, mask, rel = x[keep], zs[keep], zd[keep], mask[keep], rel[keep]
        b = torch.tensor([float(np.log(BUILT_IN / (1 - BUILT_IN)))], dtype=torch.float64, requires_grad=True)
        theta = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=self.adaptive)
        log_t = torch.tensor([np.log(5.0)], dtype=torch.float64, requires_grad=True)
        params = [b, log_t] + ([theta] if self.adaptive else [])
        opt = torch.optim.LBFGS(params, lr=0.5, max_iter=200, line_search_fn="strong_wolfe")
        neg = torch.tensor(-1e9, dtype=torch.float64)

        def loss():
            opt.zero_grad()
            w = torch.sigmoid(b + x @ theta)[:, None]
            logits = torch.exp(log_t) * (w * zs + (1 - w) * zd)
            all_ = torch.logsumexp(torch.where(mask, logits, neg), dim=1)
            pos = torch.logsumexp(torch.where(rel, logits, neg), dim=1)
            value = (all_ - pos).mean() + self.l2 * (theta ** 2).sum()
            value.backward()
            return value

        opt.step(loss)
        self.b, self.theta = float(b.detach()), theta.detach().numpy().copy()
        return self

    def weights(self, lists: Lists) -> np.ndarray:
        x = (lists.features - self.mean) / self.std
        return _sigmoid(self.b + x @ self.theta)


def halves(bench: Bench) -> list[np.ndarray]:
    """Two folds of the queries by image (a CRC of the relevant target), so no image is in both."""
    keys = [min(bench.task.qrels.get(q, {"": 1})) for q in bench.qids]
    h = np.array([zlib.crc32(k.encode()) % 2 for k in keys])
    return [np.flatnonzero(h == i) for i in (0, 1)]


def r_at(lists: Lists, run: dict) -> list[float]:
    return _percent(M.evaluate(lists.qrels(), run, KS))


def oracle(lists: Lists) -> float:
    """R@1 when each query takes its best weight of ORACLE_GRID (an upper bound)."""
    qrels = lists.qrels()
    hits = np.zeros(len(lists.zs), dtype=bool)
    for w in ORACLE_GRID:
        hits |= M.per_query(qrels, lists.run(float(w)), "hit_rate@1").astype(bool)
    return 100 * hits.mean()


def parser(doc: str) -> argparse.ArgumentParser:
    """The arguments every fitted-on-dev estimate takes: --dev, --test (every text→image benchmark), --encoder."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--dev", default="coco-val")
    ap.add_argument("--test", default="coco-test,coco-fg-test,halc-xmodel,opera-xmodel,docci-iiw,iiw-400",
                    help="comma-separated test benchmarks")
    ap.add_argument("--encoder", default=DEFAULT_ENCODER)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    ap = parser(__doc__)
    ap.add_argument("--l2", type=float, default=1e-2, help="L2 penalty on θ (standardised features)")
    args = ap.parse_args(argv)
    encoder = load_encoder(args.encoder)
    dev = Lists.of(Bench(args.dev, encoder))
    folds = halves(dev.bench)
    every = np.arange(len(dev.zs))
    print(f"{args.dev}: {len(every)} queries, {len(dev.bench.docs)} documents; folds {len(folds[0])} / "
          f"{len(folds[1])} queries\n\n| setting (dev, two-fold by image) | R@1/5/10 |\n|---|---|")
    print(f"| dense | {_fmt(r_at(dev, dev.run(0.0)))} |\n| built-in weight {BUILT_IN:.2f} | "
          f"{_fmt(r_at(dev, dev.run(BUILT_IN)))} |")
    for name, adaptive in (("one fitted weight", False), ("adaptive weight", True)):
        w = np.zeros(len(every))
        for k in (0, 1):
            model = Weighting(adaptive, args.l2).fit(dev, folds[1 - k])
            w[folds[k]] = model.weights(dev)[folds[k]]
        print(f"| {name} (mean w {w.mean():.3f}) | {_fmt(r_at(dev, dev.run(w)))} |")
    print(f"| oracle: each query's best weight of {len(ORACLE_GRID)} (upper bound) | {oracle(dev):.1f} |")

    single = Weighting(False, args.l2).fit(dev, every)
    adaptive = Weighting(True, args.l2).fit(dev, every)
    one_weight = float(_sigmoid(single.b))
    print(f"\nfitted on all of {args.dev}: one weight w = {one_weight:.3f}; adaptive: bias "
          f"{adaptive.b:+.2f}, θ (standardised features):")
    for name, t in sorted(zip(FEATURES, adaptive.theta), key=lambda x: -abs(x[1])):
        print(f"  {t:+.3f}  {name}")
    print("\n| benchmark | queries | dense R@1 | built-in hybrid R@1/5/10 | one fitted weight | adaptive | "
          "Δ R@1 adaptive vs built-in, p | adaptive − dense | oracle |\n|---|---:|---:|---|---|---|---|---:|---:|")
    for name in filter(None, args.test.split(",")):
        test = Lists.of(Bench(name, encoder))
        qrels = test.qrels()
        base, one, ad = test.run(BUILT_IN), test.run(one_weight), test.run(adaptive.weights(test))
        dense = r_at(test, test.run(0.0))[0]
        diff = paired_diff(qrels, base, ad)
        print(f"| {name} | {len(test.zs)} | {dense:.1f} | {_fmt(_percent(diff['base']))} | "
              f"{_fmt(r_at(test, one))} | {_fmt(_percent(diff['variant']))} | "
              f"{100 * diff['diff_r1']:+.1f}, {diff['p']:.3f} | {_percent(diff['variant'])[0] - dense:+.1f} | "
              f"{oracle(test):.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
