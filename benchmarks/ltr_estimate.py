"""Would a learnt ranker over every signal the engine already computes beat the hybrid's two-weight fusion? An
estimate before anyone builds learning to rank into the engine:

    python benchmarks/ltr_estimate.py [--encoder DIR] [--bank coco-val-captions] [--dev coco-val] \
        [--test coco-test,coco-fg-test,halc-xmodel,opera-xmodel,docci-iiw,iiw-400]

Each signal was measured alone with one hand-set weight (field BM25, sentence vectors, MaxP, the query bank:
docs/ablations.md, docs/fusion.md) and none moved coco-test much. Feature-based learning to rank (Liu 2009;
LambdaMART, Burges 2010) asks what they are worth together, each weighted by data. The candidates are the
engine's: each side's top 100, every candidate scored on both sides (as adaptive_fusion_estimate.py). Each
(query, candidate) pair gets the features

* BM25 and dense (cos(q, d), less λ · h(d) with `--bank`, as the engine scores it) as z-scores over the
  query's candidates: the built-in hybrid is 0.1 · the first + 0.9 · the second;
* the document's hubness offset h(d) (the query bank's, retrieve/hubness.py; 0 without a bank), z-scored;
* the best cosine of one of the document's sentences (the multi-vector option's parts) and the best BM25 of
  one of them (MaxP), z-scored;
* the share of the query's distinct terms that occur in the document, and the document's log length (less the
  candidates' mean).

Two rankers, both fitted on the dev benchmark's queries (without those about images the encoder trained on,
as `vfr tune` leaves them out; with `--unseen-corpus` those images leave dev's corpus too, so no document the
encoder trained on is a distractor; docs/fusion.md shows why that matters here):

* linear: score = θ · features, θ fitted by the softmax cross-entropy of the relevant document among the
  candidates (ListNet's top-one form, Cao et al. 2007) with a small L2; it starts at the built-in fusion;
* LambdaMART (LightGBM's lambdarank, when `lightgbm` is installed: `pip install lightgbm==4.7.0`): the same
  features plus the query's ten list features of adaptive_fusion_estimate.py (so the trees can weight a side
  by query), its size chosen on dev.

Printed: dev R@1/5/10 of dense, the built-in hybrid and each ranker, two-fold by image (fitted on one half of
the images' queries, scored on the other half's); then each ranker fitted on all of dev, unchanged, on every test
benchmark, with the paired randomisation test of its R@1 against the built-in hybrid and its margin over dense.
"""
from __future__ import annotations

import sys
from typing import Sequence

import numpy as np
import scipy.sparse as sp
import torch

from adaptive_fusion_estimate import BUILT_IN, Lists, _z, halves, parser, r_at
from clean_val import corrected, trained_images, without_trained_images
from sparse_expansion_estimate import Bench, _fmt, _percent
from vfr.eval import benchmarks
from vfr.eval import metrics as M
from vfr.eval.ablation import KS, paired_diff
from vfr.eval.runner import seen_queries
from vfr.eval.tasks import RetrievalTask
from vfr.retrieve import hubness
from vfr.retrieve.encoder import load_encoder
from vfr.retrieve.multivector import split_parts

FEATURES = ["bm25 z", "dense z", "hubness h(d) z", "best sentence cosine z", "best sentence BM25 z",
            "query terms in document (share)", "log length (centred)"]
# LambdaMART sizes tried on dev (two-fold by image): trees, leaves; learning rate 0.05, 50 pairs a leaf at least
TREE_GRID = [(50, 3), (100, 7), (300, 7)]


class Candidates:
    """One benchmark's candidates (as `Lists`, the dense side corrected by the query bank where given) and the
    features of every (query, candidate) pair: `x` is query × document × feature, 0 outside the mask."""

    def __init__(self, bench: Bench, encoder, bank_texts: Sequence[str] | None, weight: float, bank_k: int) -> None:
        h = corrected(bench, encoder, bank_texts, weight, bank_k)
        self.lists = lists = Lists.of(bench)
        mask = lists.mask
        q, d = mask.shape
        owner, sentences = bench._sentences  # every document has a part, in document order
        starts = np.flatnonzero(np.r_[True, np.diff(owner) != 0])
        sentence_vecs = encoder.encode([s for t in bench.texts for s in split_parts(t)])
        best_cos = np.maximum.reduceat(bench.query_vecs @ sentence_vecs.T, starts, axis=1)
        best_bm25 = np.vstack([np.maximum.reduceat(sentences.score(bench.terms[i]), starts) for i in range(q)])
        seg = bench.whole.segment
        present = (seg.tf > 0).astype(np.float64)
        cols = [(i, seg.vocab[t]) for i in range(q) for t in set(bench.terms[i]) if t in seg.vocab]
        distinct = np.array([max(len(set(t)), 1) for t in bench.terms], dtype=np.float64)
        queries = sp.csr_matrix((np.ones(len(cols)), ([c[0] for c in cols], [c[1] for c in cols])),
                                shape=(q, present.shape[1]))
        share = np.asarray((queries @ present.T).todense()) / distinct[:, None]
        log_len = np.broadcast_to(np.log1p(seg.lengths.astype(np.float64)), (q, d))
        centred = log_len - (log_len * mask).sum(1, keepdims=True) / mask.sum(1, keepdims=True)
        hub = np.broadcast_to(h.astype(np.float64), (q, d))
        self.x = np.stack([lists.zs, lists.zd, _z(hub, mask), _z(best_cos.astype(np.float64), mask),
                           _z(best_bm25.astype(np.float64), mask), np.where(mask, share, 0.0),
                           np.where(mask, centred, 0.0)], axis=2)
        self.bench = bench

    def run(self, scores: np.ndarray) -> dict:
        """A run (by target) from query × document scores over each query's candidates."""
        return self.lists.run_scores(scores)


class Linear:
    """score = θ · features, fitted by the top-one listwise loss; θ starts at the built-in fusion."""

    def __init__(self, l2: float = 1e-3) -> None:
        self.l2 = l2

    def fit(self, c: Candidates, rows: np.ndarray) -> "Linear":
        lists = c.lists
        rel = lists.relevant[rows] & lists.mask[rows]
        keep = rel.any(axis=1)  # a query whose relevant document is not among its candidates teaches nothing
        x = torch.tensor(c.x[rows][keep])
        mask, rel = torch.tensor(lists.mask[rows][keep]), torch.tensor(rel[keep])
        start = np.zeros(x.shape[2])
        start[:2] = 5 * BUILT_IN, 5 * (1 - BUILT_IN)
        theta = torch.tensor(start, requires_grad=True)
        opt = torch.optim.LBFGS([theta], lr=0.5, max_iter=300, line_search_fn="strong_wolfe")
        neg = torch.tensor(-1e9, dtype=torch.float64)

        def loss():
            opt.zero_grad()
            logits = x @ theta
            value = (torch.logsumexp(torch.where(mask, logits, neg), 1)
                     - torch.logsumexp(torch.where(rel, logits, neg), 1)).mean() + self.l2 * (theta ** 2).sum()
            value.backward()
            return value

        opt.step(loss)
        self.theta = theta.detach().numpy().copy()
        return self

    def scores(self, c: Candidates) -> np.ndarray:
        return np.where(c.lists.mask, c.x @ self.theta, 0.0)


class Trees:
    """LambdaMART over the pair features and the query's list features."""

    def __init__(self, trees: int, leaves: int) -> None:
        self.trees, self.leaves = trees, leaves

    @staticmethod
    def _table(c: Candidates, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        mask = c.lists.mask[rows]
        qi, di = np.nonzero(mask)
        features = np.hstack([c.x[rows][qi, di], c.lists.features[rows][qi]])
        return features, c.lists.relevant[rows][qi, di].astype(int), np.bincount(qi, minlength=len(rows))

    def fit(self, c: Candidates, rows: np.ndarray) -> "Trees":
        import lightgbm

        x, y, groups = self._table(c, rows)
        self.model = lightgbm.LGBMRanker(n_estimators=self.trees, num_leaves=self.leaves, learning_rate=0.05,
                                         min_child_samples=50, subsample=0.8, subsample_freq=1,
                                         colsample_bytree=0.8, random_state=0, verbose=-1, n_jobs=2)
        self.model.fit(x, y, group=groups[groups > 0])
        return self

    def scores(self, c: Candidates) -> np.ndarray:
        rows = np.arange(len(c.lists.mask))
        x, _, _ = self._table(c, rows)
        out = np.zeros(c.lists.mask.shape)
        out[np.nonzero(c.lists.mask)] = self.model.predict(x)
        return out


def unseen_rows(c: Candidates, encoder_location: str) -> np.ndarray:
    """The rows of the queries not about an image the encoder trained on (all of them for a packaged one)."""
    trained = trained_images([encoder_location])
    seen = seen_queries(c.bench.task.qrels, trained)
    return np.array([i for i, q in enumerate(c.bench.qids) if q not in seen])


def two_fold(c: Candidates, rows: np.ndarray, make) -> np.ndarray:
    """Scores of `rows`' queries from rankers fitted on the other half of the images (`halves`)."""
    out = np.zeros(c.lists.mask.shape)
    folds = [np.intersect1d(f, rows) for f in halves(c.bench)]
    for k in (0, 1):
        out[folds[k]] = make().fit(c, folds[1 - k]).scores(c)[folds[k]]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = parser(__doc__)
    ap.add_argument("--bank", default="", help="a query bank (built-in name or file) for the dense side's "
                                               "hubness correction, as `vfr index --query-bank`")
    ap.add_argument("--bank-weight", type=float, default=hubness.DEFAULT_WEIGHT)
    ap.add_argument("--bank-k", type=int, default=10)
    ap.add_argument("--unseen-corpus", action="store_true",
                    help="dev without the images the encoder trained on as documents too (not only as queries)")
    ap.add_argument("--l2", type=float, default=1e-3, help="L2 penalty on the linear ranker's θ")
    args = ap.parse_args(argv)
    encoder = load_encoder(args.encoder)
    try:
        import lightgbm  # noqa: F401
        trees = True
    except ImportError:
        print("lightgbm is not installed: the linear ranker only (pip install lightgbm==4.7.0 for LambdaMART)")
        trees = False
    bank_texts = benchmarks.query_bank(args.bank) if args.bank else None

    def candidates(name: str, task: RetrievalTask | None = None) -> Candidates:
        return Candidates(Bench(name, encoder, task), encoder, bank_texts, args.bank_weight, args.bank_k)

    clean = without_trained_images(args.dev, trained_images([args.encoder])) if args.unseen_corpus else None
    dev = candidates(args.dev, clean)
    rows = unseen_rows(dev, args.encoder)
    keep = {dev.bench.qids[i] for i in rows}
    qrels = {q: r for q, r in dev.lists.qrels().items() if q in keep}

    def dev_r(run: dict) -> list[float]:
        """R@1/5/10 over the dev queries in `rows` (M.evaluate scores exactly the judged queries)."""
        return _percent(M.evaluate(qrels, run, KS))

    print(f"{args.dev}: {len(rows)} queries (of {len(dev.bench.qids)}; the others ask for images the encoder "
          f"trained on), {len(dev.bench.docs)} documents; bank {'none' if bank_texts is None else args.bank}"
          f"\n\n| ranker (dev, two-fold by image) | R@1/5/10 |\n|---|---|")
    print(f"| dense | {_fmt(dev_r(dev.lists.run(0.0)))} |\n"
          f"| built-in hybrid (BM25 {BUILT_IN:.2f}) | {_fmt(dev_r(dev.lists.run(BUILT_IN)))} |")
    print(f"| linear | {_fmt(dev_r(dev.run(two_fold(dev, rows, lambda: Linear(args.l2)))))} |", flush=True)
    chosen = None
    if trees:
        best = -1.0
        for size in TREE_GRID:
            r = dev_r(dev.run(two_fold(dev, rows, lambda: Trees(*size))))
            print(f"| LambdaMART, {size[0]} trees of {size[1]} leaves | {_fmt(r)} |", flush=True)
            if r[0] > best:
                best, chosen = r[0], size
    linear = Linear(args.l2).fit(dev, rows)
    print(f"\nlinear θ fitted on all of {args.dev}:")
    for name, t in zip(FEATURES, linear.theta):
        print(f"  {t:+.3f}  {name}")
    rankers = {"linear": linear}
    if chosen:
        rankers[f"LambdaMART {chosen[0]}×{chosen[1]}"] = Trees(*chosen).fit(dev, rows)
    names = list(rankers)
    print("\n| benchmark | queries | dense R@1 | built-in hybrid R@1/5/10 | "
          + " | ".join(f"{n} R@1/5/10 | Δ R@1 vs built-in, p | − dense" for n in names)
          + " |\n|---|---:|---:|---|" + "---|---|---:|" * len(names))
    for name in filter(None, args.test.split(",")):
        test = candidates(name)
        tq = test.lists.qrels()
        base, dense = test.lists.run(BUILT_IN), r_at(test.lists, test.lists.run(0.0))[0]
        cells = []
        for ranker in rankers.values():
            diff = paired_diff(tq, base, test.run(ranker.scores(test)))
            v = _percent(diff["variant"])
            cells.append(f"{_fmt(v)} | {100 * diff['diff_r1']:+.1f}, {diff['p']:.3f} | {v[0] - dense:+.1f}")
        print(f"| {name} | {len(test.bench.qids)} | {dense:.1f} | {_fmt(r_at(test.lists, base))} | "
              + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
