"""Would mixing the calibrated encoder's cosines with the packaged encoder's (an output-space ensemble of a
fine-tuned model and the model it started from) lift the hybrid where mixing their weights did not? An estimate
before anyone builds a two-encoder dense side:

    python benchmarks/output_ensemble_estimate.py --encoder out/models/minilm-travel-fix [--with ENCODER] \
        [--dev coco-val] [--test coco-test,coco-fg-test,halc-xmodel,opera-xmodel,docci-iiw,iiw-400]

WiSE-FT (Wortsman et al. 2022) found that fine-tuned and zero-shot models make different errors, and that both
their weight average and their output average keep the fine-tuned model's gain in domain while recovering
the zero-shot model's robustness. The weight average was measured here (distillation.md, WiSE-FT 0.5: coco-test
hybrid −0.3, p 0.49); the output average was not. Here the dense score of a document is

    α · cos_calibrated(q, d) + (1 − α) · cos_packaged(q, d)

and the hybrid fuses it with BM25 exactly as the engine does (exact BM25 at the index defaults, each side's top
100, every candidate scored on both sides, z-scores, 0.1 BM25 / 0.9 dense). α = 1 is the calibrated encoder
alone (the engine today), α = 0 the packaged one. It costs a second index vector per document and a second
query encoding.

α is chosen on the dev benchmark alone: the best hybrid R@1 over a grid of α < 1 (on a tie the larger α, nearer
today's engine), which is then run on test whether or not it beat α = 1 on dev, to see whether dev's verdict
holds. The unseen-images recipe trained on 55 of coco-val's 427 images, so coco-val is nearly clean for it.
Printed: dev's dense and hybrid R@1/5/10 at each α, then on each test benchmark the calibrated encoder alone
against the chosen α: dense R@1, hybrid R@1/5/10, the paired randomisation test of the hybrid's R@1, and the hybrid's
margin over its own dense side (what issue 13 asks to widen).
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

import numpy as np

from sparse_expansion_estimate import Bench, _fmt, _percent
from vfr.eval import metrics as M
from vfr.eval.ablation import KS, paired_diff
from vfr.retrieve.encoder import DEFAULT_ENCODER, load_encoder

GRID = [round(a, 2) for a in np.linspace(0.0, 1.0, 11)]
TESTS = "coco-test,coco-fg-test,halc-xmodel,opera-xmodel,docci-iiw,iiw-400"


class Pair:
    """One benchmark scored by both encoders: the calibrated one inside `bench`, the other's cosines beside."""

    def __init__(self, name: str, calibrated, other) -> None:
        self.bench = Bench(name, calibrated)
        self.other = other.encode(self.bench.queries) @ other.encode(self.bench.texts).T
        self.sparse = self.bench.sparse_scores(lambda i: self.bench.terms[i])

    def dense(self, alpha: float) -> np.ndarray:
        return mix(self.bench.dense, self.other, alpha)

    def runs(self, alpha: float) -> tuple[dict, list]:
        """qrels and the (dense, BM25, hybrid) runs by target at `alpha`."""
        return self.bench.runs(self.sparse, dense=self.dense(alpha))


def mix(calibrated: np.ndarray, other: np.ndarray, alpha: float) -> np.ndarray:
    return np.float32(alpha) * calibrated + np.float32(1.0 - alpha) * other


def choose(results: dict[float, list[list[float]]]) -> float:
    """The α < 1 with the best dev hybrid R@1; on a tie the largest (nearest the calibrated encoder alone)."""
    return max((a for a in results if a < 1.0), key=lambda a: (round(results[a][2][0], 6), a))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--encoder", required=True, help="the calibrated encoder (a model folder)")
    ap.add_argument("--with", dest="other", default=DEFAULT_ENCODER, help="the encoder mixed in (packaged)")
    ap.add_argument("--dev", default="coco-val")
    ap.add_argument("--test", default=TESTS, help="comma-separated test benchmarks")
    args = ap.parse_args(argv)
    calibrated, other = load_encoder(args.encoder), load_encoder(args.other)
    dev = Pair(args.dev, calibrated, other)
    results = {a: dev.bench.recall(dev.sparse, dense=dev.dense(a)) for a in GRID}
    print(f"{args.dev}: {len(dev.bench.qids)} queries, {len(dev.bench.docs)} documents\n\n"
          "| α (1 = calibrated alone) | dense R@1/5/10 | hybrid R@1/5/10 |\n|---|---|---|")
    for a, (dense, _, hybrid) in results.items():
        print(f"| {a:.1f} | {_fmt(dense)} | {_fmt(hybrid)} |")
    alpha = choose(results)
    verdict = "above" if results[alpha][2][0] > results[1.0][2][0] else "not above"
    print(f"\nbest mix on {args.dev}: α = {alpha:.1f}, hybrid R@1 {results[alpha][2][0]:.1f}, {verdict} the "
          f"calibrated encoder alone ({results[1.0][2][0]:.1f}); on test anyway, to see whether the dev verdict "
          "holds:\n\n| benchmark | queries | dense R@1 alone → mixed | hybrid R@1/5/10 alone | mixed | "
          "Δ hybrid R@1 (95% CI), p | hybrid − dense alone → mixed |\n|---|---:|---|---|---|---|---|")
    for name in filter(None, args.test.split(",")):
        test = Pair(name, calibrated, other)
        qrels, (d_alone, _, h_alone) = test.runs(1.0)
        _, (d_mixed, _, h_mixed) = test.runs(alpha)
        diff = paired_diff(qrels, h_alone, h_mixed)
        dense = [_percent(M.evaluate(qrels, run, KS))[0] for run in (d_alone, d_mixed)]
        hybrid = [_percent(diff[side]) for side in ("base", "variant")]
        lo, hi = (100 * x for x in diff["ci95"])
        print(f"| {name} | {diff['queries']} | {dense[0]:.1f} → {dense[1]:.1f} | {_fmt(hybrid[0])} | "
              f"{_fmt(hybrid[1])} | {100 * diff['diff_r1']:+.1f} ({lo:+.1f} to {hi:+.1f}), {diff['p']:.3f} | "
              f"{hybrid[0][0] - dense[0]:+.1f} → {hybrid[1][0] - dense[1]:+.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
