"""Would a cross-encoder reranking the hybrid's top candidates lift R@1? An estimate before anyone builds a
reranking stage into search: train one from the packaged MiniLM on the COCO val join, rerank `vfr eval`
run files, and report what it adds on test.

    python benchmarks/rerank_estimate.py train --out out/models/minilm-rerank
    python benchmarks/rerank_estimate.py score out/models/minilm-rerank --dev FOLDER \
        --test coco-test=FOLDER --test coco-fg-test=FOLDER [--depth 20]

`train`: pairs of the COCO val join (every caption × every VLM description of its image) except the images
of one held-out fifth (by a hash of the COCO id); three hard negatives per caption, the longest descriptions
of other training images that the packaged MiniLM ranks 1-10 for it (seeded choice); listwise loss over the
positive, the hard negatives and in-batch negatives (sentence-transformers' cross-encoder
MultipleNegativesRankingLoss). The model starts from the packaged MiniLM's transformer with a fresh scoring
head: no other model is available offline.

`score`: each folder holds BENCH/ from `vfr eval BENCH --out FOLDER/BENCH -r hybrid` (coco-val/ for --dev).
The reranker scores the top `--depth` of each query's hybrid run; the final score of a candidate is
z(hybrid) + w · z(reranker) over the top K (w = inf: the reranker alone). K and w are chosen by R@1 on the
held-out fifth's coco-val queries only, then applied unchanged to each test run, with the paired
randomisation test against the hybrid as it was, and the reranker's time per query.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from vfr.eval import benchmarks
from vfr.eval import metrics as M
from vfr.eval.ablation import KS, paired_diff, read_run
from vfr.eval.tasks import RetrievalTask
from vfr.retrieve.calibrate.pairs import load_pairs
from vfr.retrieve.encoder import DEFAULT_ENCODER, load_encoder, resolve_encoder

HELD_OUT = 5          # one image in HELD_OUT is held out of training (by a hash of its id)
GRID_K = (5, 10, 20)
GRID_W = (0.25, 0.5, 1.0, 2.0, float("inf"))


def held_out(image_id: str) -> bool:
    return int(hashlib.md5(image_id.encode()).hexdigest(), 16) % HELD_OUT == 0


def _task(bench: str) -> RetrievalTask:
    return next(t for t in benchmarks.resolve(bench)[1] if isinstance(t, RetrievalTask))


# -- training ---------------------------------------------------------------------------------------------
def training_rows(seed: int, negatives: int = 3) -> list[dict]:
    pairs = [p for p in load_pairs("coco-val") if not held_out(p.group)]
    task = _task("coco-val")  # its corpus: each image's longest description (the test documents' kind)
    docs = [d for d in task.corpus if not held_out(d)]
    captions = sorted({p.query for p in pairs})
    owner = {p.query: p.group for p in pairs}
    enc = load_encoder(DEFAULT_ENCODER)
    sim = enc.encode(captions) @ enc.encode([task.corpus[d] for d in docs]).T
    rng = np.random.default_rng(seed)
    hard = {}
    for cap, row in zip(captions, sim):
        ranked = [docs[i] for i in np.argsort(-row, kind="stable") if docs[i] != owner[cap]][:10]
        hard[cap] = [task.corpus[d] for d in rng.choice(ranked, size=negatives, replace=False)]
    rows = [{"query": p.query, "positive": p.document, **{f"negative_{j}": n for j, n in enumerate(hard[p.query])}}
            for p in pairs]
    rng.shuffle(rows)
    return rows


def train(out: Path, epochs: float, lr: float, batch: int, max_length: int, seed: int) -> None:
    from datasets import Dataset
    from sentence_transformers.cross_encoder import (CrossEncoder, CrossEncoderTrainer,
                                                     CrossEncoderTrainingArguments, losses)
    rows = training_rows(seed)
    print(f"{len(rows)} training rows (query, positive, 3 hard negatives)", flush=True)
    base = Path(resolve_encoder(DEFAULT_ENCODER).location)
    with tempfile.TemporaryDirectory() as tmp:  # the transformer alone: no pooling modules, a fresh head
        for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
                     "special_tokens_map.json"):
            shutil.copy(base / name, Path(tmp) / name)
        model = CrossEncoder(tmp, num_labels=1, max_length=max_length, local_files_only=True)
    args = CrossEncoderTrainingArguments(
        output_dir=str(out / "checkpoints"), num_train_epochs=epochs, per_device_train_batch_size=batch,
        learning_rate=lr, warmup_ratio=0.1, seed=seed, save_strategy="no", logging_steps=20, report_to=[],
        batch_sampler="no_duplicates", dataloader_drop_last=True)
    started = time.time()
    CrossEncoderTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                        loss=losses.MultipleNegativesRankingLoss(model, num_negatives=4)).train()
    model.save_pretrained(str(out))
    (out / "rerank.json").write_text(json.dumps({"rows": len(rows), "epochs": epochs, "lr": lr, "batch": batch,
                                                 "max_length": max_length, "seed": seed,
                                                 "train_s": round(time.time() - started)}, indent=1))
    print(f"saved {out} ({time.time() - started:.0f} s)")


# -- scoring ----------------------------------------------------------------------------------------------
def _z(x: np.ndarray) -> np.ndarray:
    sd = x.std()
    return (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)


def rerank(run: dict, ce: dict, k: int, w: float) -> dict:
    out = {}
    for q, scores in run.items():
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
        top, rest = ranked[:k], ranked[k:]
        h = np.array([s for _, s in top])
        c = np.array([ce[q][d] for d, _ in top])
        new = c if np.isinf(w) else _z(h) + w * _z(c)
        # the reranked block stays above the rest (hybrid scores are z-score sums, far below 1e6)
        out[q] = {**dict(rest), **{d: 1e6 + float(v) for (d, _), v in zip(top, new)}}
    return out


def ce_scores(model, task: RetrievalTask, run: dict, depth: int) -> tuple[dict, float]:
    keys, texts = [], []
    for q, scores in run.items():
        for d, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:depth]:
            keys.append((q, d))
            texts.append((task.queries[q], task.corpus[d]))
    started = time.time()
    values = model.predict(texts, batch_size=64, show_progress_bar=False)
    per_query = (time.time() - started) / max(1, len(run))
    out: dict = {}
    for (q, d), v in zip(keys, values):
        out.setdefault(q, {})[d] = float(v)
    return out, per_query


def _recall(qrels: dict, run: dict, task: RetrievalTask) -> list[float]:
    return _percent(M.evaluate(qrels, M.to_target_run(run, task.doc_target), KS))


def _percent(rates: dict[str, float]) -> list[float]:
    return [100 * rates[k] for k in KS]


def _fmt(r: Sequence[float]) -> str:
    return " / ".join(f"{x:.1f}" for x in r)


def score(model_dir: Path, dev: Path, tests: Sequence[str], depth: int) -> None:
    from sentence_transformers.cross_encoder import CrossEncoder
    model = CrossEncoder(str(model_dir), local_files_only=True)
    task = _task("coco-val")
    run = {q: r for q, r in read_run(dev, "coco-val", task.name, "hybrid").items() if held_out(q.split("#")[0])}
    qrels = {q: dict(task.qrels[q]) for q in run}
    ce, per_q = ce_scores(model, task, run, depth)
    grid = {(k, w): _recall(qrels, rerank(run, ce, k, w), task) for k in GRID_K if k <= depth for w in GRID_W}
    base = _recall(qrels, run, task)
    print(f"coco-val held-out fifth: {len(run)} queries; hybrid R@1/5/10 {_fmt(base)}; "
          f"reranker {1000 * per_q:.0f} ms a query for {depth} candidates\n\n| K | w | R@1 / R@5 / R@10 |\n|---|---|---|")
    for (k, w), r in grid.items():
        print(f"| {k} | {w:g} | {_fmt(r)} |")
    k, w = max(grid, key=lambda g: grid[g][0])
    print(f"\nchosen: K {k}, w {w:g}\n\n| benchmark | first stage | queries | hybrid R@1/5/10 | reranked | Δ R@1 | p | ms/query |"
          "\n|---|---|---:|---|---|---:|---:|---:|")
    for spec in tests:
        bench, folder = spec.split("=", 1)
        task = _task(bench)
        run = read_run(Path(folder), bench, task.name, "hybrid")
        if run is None:
            sys.exit(f"{folder}/{bench} has no hybrid run: run `vfr eval {bench} --out {folder}/{bench} -r hybrid`")
        qrels = {q: dict(task.qrels[q]) for q in run}
        ce, per_q = ce_scores(model, task, run, k)
        d = paired_diff(qrels, *(M.to_target_run(r, task.doc_target) for r in (run, rerank(run, ce, k, w))))
        print(f"| {bench} | {folder} | {len(run)} | {_fmt(_percent(d['base']))} | {_fmt(_percent(d['variant']))} | "
              f"{100 * d['diff_r1']:+.1f} | {d['p']:.3f} | {1000 * per_q:.0f} |", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--epochs", type=float, default=1.0)
    t.add_argument("--lr", type=float, default=3e-5)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--max-length", type=int, default=192)
    t.add_argument("--seed", type=int, default=0)
    s = sub.add_parser("score")
    s.add_argument("model", type=Path)
    s.add_argument("--dev", type=Path, required=True, help="vfr eval --out folder holding coco-val/")
    s.add_argument("--test", action="append", default=[], help="BENCH=FOLDER (repeatable)")
    s.add_argument("--depth", type=int, default=20)
    args = ap.parse_args(argv)
    if args.cmd == "train":
        train(args.out, args.epochs, args.lr, args.batch, args.max_length, args.seed)
    else:
        score(args.model, args.dev, args.test, args.depth)
    return 0


if __name__ == "__main__":
    sys.exit(main())
