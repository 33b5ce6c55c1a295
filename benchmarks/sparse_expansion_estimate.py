"""Can a richer BM25 query or document score make the sparse side add more to the hybrid? An estimate of two
classic sparse-side changes before anyone builds them into the index:

    python benchmarks/sparse_expansion_estimate.py translation [--test coco-test,coco-fg-test]
    python benchmarks/sparse_expansion_estimate.py maxp [--test coco-test,coco-fg-test]

* translation: query expansion with a caption → description term translation table (IBM Model 1, Berger &
  Lafferty 1999), learnt by EM on the caption × description pairs of `--pairs` (default the COCO val join,
  every VLM's description). Each query gains the K description terms its terms translate to most, with boosts
  β · p / p_max (its own terms keep their counts). Chosen on the dev benchmark two-fold by image: the table
  from the pairs of one half of the images, scored on the other half's queries, R@1 of the hybrid averaged
  over both folds. On test, the table from all pairs (the test images must not be among them).
* maxp: a document's BM25 plus λ × the best BM25 of one of its sentences (MaxP, Dai & Callan 2019; the same
  sentences as the multi-vector option), λ chosen on the whole dev benchmark (nothing is learnt).

Scoring is the engine's: the analyser's terms (retrieve/lucene.py), exact BM25 with the index defaults
(retrieve/bm25.py over a forward index of the corpus), the packaged or given encoder, and the built-in fusion
(z-score, 0.1 BM25 / 0.9 dense, each run's top 100). Prints R@1 / R@5 / R@10 of BM25 and of the hybrid for the
baseline (K = 0 or λ = 0) and every grid point on dev, then the dev's best grid point on each test benchmark
(whether or not it beat the baseline on dev), with the paired randomisation test of the hybrid's R@1.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from collections import Counter, defaultdict
from functools import cached_property
from typing import Callable, Sequence

import numpy as np

from vfr.eval import benchmarks
from vfr.eval import metrics as M
from vfr.eval.ablation import KS, paired_diff
from vfr.eval.tasks import RetrievalTask
from vfr.retrieve import lucene
from vfr.retrieve.bm25 import TextsBm25
from vfr.retrieve.calibrate.pairs import load_pairs
from vfr.retrieve.encoder import DEFAULT_ENCODER, load_encoder
from vfr.retrieve.fusion import FusionConfig, fuse
from vfr.retrieve.multivector import split_parts
from vfr.retrieve.types import Run
from vfr.retrieve.writer import IndexConfig

NULL = "\0null"
TRANSLATION_GRID = [(k, beta) for k in (5, 10, 20) for beta in (0.1, 0.2, 0.3, 0.5)]
MAXP_GRID = [0.25, 0.5, 1.0, 2.0]


def fold(image_id: str) -> int:
    return int(hashlib.md5(image_id.encode()).hexdigest(), 16) % 2


# -- IBM Model 1 -------------------------------------------------------------------------------------------
def model1(pairs: Sequence[tuple[Counter, Counter]], iterations: int = 5) -> dict[str, dict[str, float]]:
    """t[q][d] = P(description term d | caption term q), a NULL source absorbing generic description terms."""
    t: dict[str, dict[str, float]] = defaultdict(dict)
    for q_terms, d_terms in pairs:
        for q in [*q_terms, NULL]:
            t[q].update(dict.fromkeys(d_terms, 1.0))
    t = {q: {d: 1.0 / len(row) for d in row} for q, row in t.items()}
    for _ in range(iterations):
        counts: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for q_terms, d_terms in pairs:
            sources = [*q_terms, NULL]
            for d, c in d_terms.items():
                probs = [t[q].get(d, 0.0) for q in sources]
                z = sum(probs)
                for q, p in zip(sources, probs):
                    if p:
                        counts[q][d] += c * p / z
        t = {q: {d: v / sum(row.values()) for d, v in row.items()} for q, row in counts.items()}
    return t


def expand(terms: Counter, table: dict[str, dict[str, float]], k: int, beta: float) -> Counter:
    out = Counter(terms)
    if k <= 0 or beta <= 0 or not terms:
        return out
    score: Counter = Counter()
    n = sum(terms.values())
    for q, c in terms.items():
        for d, p in table.get(q, {}).items():
            if d not in terms:
                score[d] += c * p / n
    top = score.most_common(k)
    for d, s in top:
        out[d] = beta * s / top[0][1]
    return out


def translation_table(pairs) -> dict[str, dict[str, float]]:
    queries = lucene.query_terms_batch([p.query for p in pairs])
    docs = lucene.analyse([p.document for p in pairs])
    return model1([(q, Counter(d)) for q, d in zip(queries, docs)])


# -- one benchmark, scored the engine's way ---------------------------------------------------------------
def bench_task(name: str) -> RetrievalTask:
    _, tasks, _ = benchmarks.resolve(name)
    return next(t for t in tasks if isinstance(t, RetrievalTask))


class Bench:
    def __init__(self, name: str, encoder, task: RetrievalTask | None = None) -> None:
        """`task`: the benchmark's text→image task, changed (by default the benchmark's own)."""
        self.task: RetrievalTask = task or bench_task(name)
        self.name, self.docs, self.qids = name, list(self.task.corpus), list(self.task.queries)
        self.texts = texts = [self.task.corpus[d] for d in self.docs]
        self.queries = queries = [self.task.queries[q] for q in self.qids]
        self.terms = lucene.query_terms_batch(queries)
        config = IndexConfig()
        self.whole = TextsBm25(lucene.analyse(texts), config.k1, config.b)
        self.query_vecs, self.doc_vecs = encoder.encode(queries), encoder.encode(texts)
        self.dense = self.query_vecs @ self.doc_vecs.T
        self.dense_run = self._run(self.dense)

    @cached_property
    def _sentences(self) -> tuple[np.ndarray, TextsBm25]:
        """Each sentence's document and a BM25 over the sentences (the multi-vector option's parts); built on
        first use, by MaxP only."""
        parts = [split_parts(t) for t in self.texts]
        config = IndexConfig()
        return (np.array([i for i, p in enumerate(parts) for _ in p]),
                TextsBm25(lucene.analyse([s for p in parts for s in p]), config.k1, config.b))

    def _run(self, scores: np.ndarray, depth: int = FusionConfig().depth) -> Run:
        return {qid: {self.docs[i]: float(row[i]) for i in np.argsort(-row, kind="stable")[:depth]}
                for qid, row in zip(self.qids, scores)}

    def _hybrid(self, sparse: np.ndarray, dense: np.ndarray | None = None, depth: int = FusionConfig().depth) -> Run:
        """As the engine's hybrid: each side's top `depth`, every candidate scored on both sides, fused."""
        runs: tuple[Run, Run] = ({}, {})
        for qid, s, d in zip(self.qids, sparse, self.dense if dense is None else dense):
            union = np.union1d(np.argsort(-s, kind="stable")[:depth], np.argsort(-d, kind="stable")[:depth])
            runs[0][qid] = {self.docs[i]: float(s[i]) for i in union}
            runs[1][qid] = {self.docs[i]: float(d[i]) for i in union}
        return fuse(list(runs), FusionConfig())

    def sparse_scores(self, query_terms: Callable[[int], Counter], maxp: float = 0.0) -> np.ndarray:
        rows = []
        for i in range(len(self.qids)):
            terms = query_terms(i)
            score = self.whole.score(terms)
            if maxp:
                best = np.zeros(len(self.docs), dtype=np.float32)
                owner, sentences = self._sentences
                np.maximum.at(best, owner, sentences.score(terms))
                score = score + np.float32(maxp) * best
            rows.append(score)
        return np.vstack(rows)

    def runs(self, sparse: np.ndarray, qids: Sequence[str] | None = None, dense: np.ndarray | None = None
             ) -> tuple[dict, list[Run]]:
        """qrels of `qids` (all by default) and their (dense, BM25, hybrid) runs by target; `dense` replaces
        the plain dense scores (query × document) where given."""
        keep = set(qids) if qids is not None else set(self.qids)
        qrels = {q: dict(r) for q, r in self.task.qrels.items() if q in keep}
        dense_run = self.dense_run if dense is None else self._run(dense)
        return qrels, [M.to_target_run({q: r for q, r in run.items() if q in keep}, self.task.doc_target)
                       for run in (dense_run, self._run(sparse), self._hybrid(sparse, dense))]

    def recall(self, sparse: np.ndarray, qids: Sequence[str] | None = None, dense: np.ndarray | None = None
               ) -> list[list[float]]:
        """R@1/5/10 of dense, BM25 and the hybrid."""
        qrels, runs = self.runs(sparse, qids, dense)
        return [_percent(M.evaluate(qrels, run, KS)) for run in runs]


def against_plain(bench: Bench, plain_sparse: np.ndarray, sparse: np.ndarray, dense: np.ndarray | None = None
                  ) -> tuple[float, float, dict]:
    """A variant's runs (BM25 scores `sparse`, dense scores `dense` or the plain ones) against the plain engine's
    (`plain_sparse`, plain dense): dense R@1 of each and the paired comparison of their hybrids (`paired_diff`)."""
    qrels, (dense0, _, hybrid0) = bench.runs(plain_sparse)
    _, (dense1, _, hybrid1) = bench.runs(sparse, dense=dense)
    r1 = [_percent(M.evaluate(qrels, run, KS))[0] for run in (dense0, dense1)]
    return r1[0], r1[1], paired_diff(qrels, hybrid0, hybrid1)


def _percent(rates: dict[str, float]) -> list[float]:
    """R@1/5/10 in % from `M.evaluate`'s hit rates."""
    return [100 * rates[k] for k in KS]


def _fmt(r: Sequence[float]) -> str:
    return " / ".join(f"{x:.1f}" for x in r)


def with_change(bench: Bench, change: str, setting, table: dict | None) -> np.ndarray:
    """BM25 scores of every query of `bench` under one setting of the change (K = 0 or λ = 0: plain BM25)."""
    if change == "translation":
        return bench.sparse_scores(lambda i: expand(bench.terms[i], table, *setting))
    return bench.sparse_scores(lambda i: bench.terms[i], setting)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("change", choices=("translation", "maxp"))
    ap.add_argument("--dev", default="coco-val")
    ap.add_argument("--test", default="", help="comma-separated test benchmarks (caption queries)")
    ap.add_argument("--pairs", default="coco-val", help="pair source of the translation table")
    ap.add_argument("--encoder", default=DEFAULT_ENCODER)
    args = ap.parse_args(argv)
    encoder = load_encoder(args.encoder)
    dev = Bench(args.dev, encoder)
    if args.change == "translation":
        pairs = load_pairs(args.pairs)
        tables = [translation_table([p for p in pairs if fold(p.group) == h]) for h in (0, 1)]
        folds = [[q for q in dev.qids if fold(q.split("#")[0]) != h] for h in (0, 1)]

        def on_dev(setting) -> list[list[float]]:
            # table h (pairs of one fold's images) scored on the queries of the other fold's images
            parts = [dev.recall(with_change(dev, args.change, setting, tables[h]), folds[h]) for h in (0, 1)]
            n = [len(f) for f in folds]
            return [[(a * n[0] + b * n[1]) / sum(n) for a, b in zip(x, y)] for x, y in zip(*parts)]
        grid, baseline = TRANSLATION_GRID, (0, 0.0)
    else:
        grid, baseline = MAXP_GRID, 0.0

        def on_dev(setting) -> list[list[float]]:
            return dev.recall(with_change(dev, args.change, setting, None))
    results = {g: on_dev(g) for g in [baseline, *grid]}
    print(f"{args.dev}: {len(dev.qids)} queries, {len(dev.docs)} documents, dense R@1 "
          f"{results[baseline][0][0]:.1f}\n\n| setting | BM25 R@1/5/10 | hybrid R@1/5/10 |\n|---|---|---|")
    for g, (_, sparse, hybrid) in results.items():
        print(f"| {g}{' (baseline)' if g == baseline else ''} | {_fmt(sparse)} | {_fmt(hybrid)} |")
    chosen = max(grid, key=lambda g: results[g][2][0])
    verdict = "above" if results[chosen][2][0] > results[baseline][2][0] else "not above"
    print(f"\nbest on {args.dev}: {chosen}, hybrid R@1 {results[chosen][2][0]:.1f}, {verdict} the baseline's "
          f"{results[baseline][2][0]:.1f}; on test anyway, to see whether the dev verdict holds:")
    table = translation_table(load_pairs(args.pairs)) if args.change == "translation" else None
    print("\n| benchmark | queries | dense R@1 | BM25 R@1/5/10 | with it | hybrid R@1/5/10 | with it | Δ hybrid R@1, p |"
          "\n|---|---:|---:|---|---|---|---|---|")
    for name in filter(None, args.test.split(",")):
        test = Bench(name, encoder)
        qrels, (dense, b_sparse, b_hybrid) = test.runs(with_change(test, args.change, baseline, table))
        _, (_, n_sparse, n_hybrid) = test.runs(with_change(test, args.change, chosen, table))
        sparse, hybrid = paired_diff(qrels, b_sparse, n_sparse), paired_diff(qrels, b_hybrid, n_hybrid)
        cells = [_fmt(_percent(d[side])) for d in (sparse, hybrid) for side in ("base", "variant")]
        print(f"| {name} | {len(test.qids)} | {_percent(M.evaluate(qrels, dense, KS))[0]:.1f} | "
              f"{' | '.join(cells)} | {100 * hybrid['diff_r1']:+.1f}, {hybrid['p']:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
