"""Does calibration help? Train on the COCO val join, measure on the COCO test join and SugarCrepe.

    PYTHONPATH=. HF_HUB_OFFLINE=1 python benchmarks/calibrate_experiment.py --configs mnrl --seeds 0 1 2
    PYTHONPATH=. python benchmarks/calibrate_experiment.py --table          # summarise what has run

Protocol (fixed so runs compare):
- train pairs: COCO Karpathy **val** join (427 images), caption × description; 10% of the images held out
  (by image, seeded) for the per-epoch evaluator and early stopping. Never a test image.
- COCO test join (401 images): every caption is a query, the image's longest machine description its one
  document; dense (cosine, exact) and, when `retrieve.index` is available, BM25 and hybrid through the
  engine's own index. R@k = the right image in the top k (ranx recall@k with one relevant document).
- SugarCrepe: items whose COCO image has a machine description in halc/ or opera/; per (item,
  description): is cos(description, caption) > cos(description, negative caption)? Reported on all such
  items and on those whose image is not in the training join ("unseen").
Each (config, seed) appends one JSON line to --results; rerunning skips what is there (resumable).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vfr.retrieve.calibrate.pairs import data_dir, load_pairs, split_by_group  # noqa: E402

CONFIGS: dict[str, dict] = {
    # name: CalibrateConfig overrides (+ "pairs": longest|all, "hard_negatives": bool)
    "mnrl": {},
    "mnrl-lr5e-5": {"learning_rate": 5e-5},
    "mnrl-sym": {"loss": "mnrl-sym"},
    "mnrl-hn": {"hard_negatives": True},
    "mnrl-freeze3": {"freeze_layers": 3},
    "mnrl-lowlr": {"learning_rate": 5e-6},
    "mnrl-allpairs": {"pairs": "all"},
    "mnrl-2ep": {"epochs": 2},
    # The CPU-budget recipe (about 3x cheaper a step on 2 shared cores): lower half frozen, 64-token training
    # truncation (evaluation still sees the full text). Ablations below vary one thing from it.
    "fast": {"freeze_layers": 3, "max_seq_length": 64},
    "fast-sym": {"freeze_layers": 3, "max_seq_length": 64, "loss": "mnrl-sym"},
    "fast-hn": {"freeze_layers": 3, "max_seq_length": 64, "hard_negatives": True},
    "fast-lr5e-5": {"freeze_layers": 3, "max_seq_length": 64, "learning_rate": 5e-5},
}
SPARSE_WEIGHTS = (0.0, 0.05, 0.2, 0.3)  # extra hybrid rows next to the default (0.1 BM25 / 0.9 dense)
DEFAULTS = {"epochs": 1.0, "batch_size": 32, "learning_rate": 2e-5, "max_seq_length": 128}
TEST_JOIN = "joined/coco_karpathy_test_x_vlm_descriptions.jsonl"
VAL_JOIN = "joined/coco_karpathy_val_x_vlm_descriptions.jsonl"


def test_collection() -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]]]:
    """(queries, documents, qrels) of the COCO test join; the document is the longest description."""
    queries, docs, qrels = {}, {}, {}
    for line in open(data_dir() / TEST_JOIN, encoding="utf-8"):
        row = json.loads(line)
        did = str(row["coco_id"])
        docs[did] = max(row["descriptions"].values(), key=len).strip()
        for i, cap in enumerate(row["captions"]):
            queries[f"{did}#{i}"] = cap.strip()
            qrels[f"{did}#{i}"] = {did: 1}
    return queries, docs, qrels


def sugarcrepe_items() -> list[tuple[str, str, list[str], bool]]:
    """(caption, negative, descriptions, image in the training join) for items with a description."""
    descs: dict[int, list[str]] = {}
    for f in ("halc/*.jsonl", "opera/*.jsonl"):
        for path in glob.glob(str(data_dir() / f)):
            for line in open(path, encoding="utf-8"):
                row = json.loads(line)
                descs.setdefault(int(row["image_id"]), []).extend(
                    t.strip() for t in row["descriptions"].values() if t and t.strip())
    train_ids = {json.loads(line)["coco_id"] for line in open(data_dir() / VAL_JOIN, encoding="utf-8")}
    items = []
    for path in sorted(glob.glob(str(data_dir() / "sugarcrepe/*.json"))):
        for item in json.load(open(path, encoding="utf-8")).values():
            image = int(item["filename"].split(".")[0])
            if image in descs:
                items.append((item["caption"], item["negative_caption"], sorted(set(descs[image])), image in train_ids))
    return items


def dense_recall(model, queries, docs, qrels) -> dict[str, float]:
    from ranx import Qrels, Run, evaluate

    qids, dids = list(queries), list(docs)
    q = model.encode([queries[i] for i in qids], batch_size=64, convert_to_tensor=True, normalize_embeddings=True)
    d = model.encode([docs[i] for i in dids], batch_size=32, convert_to_tensor=True, normalize_embeddings=True)
    top = (q @ d.T).topk(10, dim=1)
    run = {qid: {dids[j]: float(s) for s, j in zip(sc.tolist(), ix.tolist())}
           for qid, sc, ix in zip(qids, top.values, top.indices)}
    return _recall(qrels, run)


def _recall(qrels, run) -> dict[str, float]:
    from ranx import Qrels, Run, evaluate

    m = evaluate(Qrels(qrels), Run(run), ["recall@1", "recall@5", "recall@10"])
    return {k.replace("recall", "R"): round(float(v), 4) for k, v in m.items()}


def sugarcrepe_accuracy(model, items) -> dict[str, float]:
    texts = sorted({t for c, n, ds, _ in items for t in (c, n, *ds)})
    emb = model.encode(texts, batch_size=64, convert_to_tensor=True, normalize_embeddings=True)
    row = {t: i for i, t in enumerate(texts)}
    wins = {"all": [], "unseen": []}
    for cap, neg, descs, seen in items:
        for d in descs:
            ok = float(emb[row[d]] @ emb[row[cap]]) > float(emb[row[d]] @ emb[row[neg]])
            wins["all"].append(ok)
            if not seen:
                wins["unseen"].append(ok)
    return {f"sc_{k}": round(sum(v) / len(v), 4) for k, v in wins.items()} | {"sc_n_unseen": len(wins["unseen"])}


def hybrid_recall(encoder: str, docs, queries, qrels, workdir: Path,
                  kinds: tuple[str, ...] = ("bm25", "hybrid")) -> dict[str, float]:
    """BM25 and hybrid through the engine's own index (skipped when retrieve.index is not there yet)."""
    from vfr.retrieve.index import open_index
    from vfr.retrieve.maintain import IndexedStore
    from vfr.retrieve.types import batch_run
    from vfr.store.store import DescriptionRow, ImageRow, Store

    db = workdir / "test.duckdb"
    if not db.exists():
        with Store(db) as store:
            store.upsert([ImageRow(i) for i in docs], [DescriptionRow(i, t) for i, t in docs.items()])
    index_dir = workdir / f"index-{abs(hash(encoder))}"
    shutil.rmtree(index_dir, ignore_errors=True)
    IndexedStore(db, index_dir, encoder=encoder).update_index(full=True)  # caches embeddings in the store
    from vfr.retrieve.fusion import FusionConfig

    index = open_index(index_dir)
    out = {"fusion_default": FusionConfig().to_dict()}
    for kind in kinds:
        run = batch_run(index.backend(kind), queries, 10)
        name = "engine_dense" if kind == "dense" else kind  # keep dense_* for our own exact computation
        out |= {f"{name}_{k}": v for k, v in _recall(qrels, run).items()}
    if "hybrid" in kinds:  # diagnostics on test (never used to choose anything): other BM25 weights
        for w in SPARSE_WEIGHTS:
            run = batch_run(index.backend("hybrid", FusionConfig(weights=(w, 1 - w))), queries, 10)
            out |= {f"hybrid_w{w}_{k}": v for k, v in _recall(qrels, run).items()}
    shutil.rmtree(index_dir, ignore_errors=True)
    return out


def evaluate_model(encoder: str, workdir: Path, hybrid: bool) -> dict[str, float]:
    from vfr.retrieve.encoder import load_encoder

    model = load_encoder(encoder).model  # the SentenceTransformer: these measures use its tensor output
    queries, docs, qrels = test_collection()
    out = {f"dense_{k}": v for k, v in dense_recall(model, queries, docs, qrels).items()}
    out |= sugarcrepe_accuracy(model, sugarcrepe_items())
    if hybrid:
        out |= hybrid_recall(encoder, docs, queries, qrels, workdir)
    return out


def add_hybrid(results: Path, models_dir: Path) -> None:
    """Fill in BM25/hybrid for rows run with --no-hybrid whose model folder was kept (--keep-models)."""
    rows = [json.loads(x) for x in results.read_text().splitlines() if x]
    queries, docs, qrels = test_collection()
    workdir = Path(tempfile.mkdtemp(prefix="vfr-calexp-"))
    try:
        for r in rows:
            if "hybrid_R@1" in r["metrics"]:
                continue
            encoder = "default" if r["config"] == "base" else str(models_dir / f"{r['config']}-s{r['seed']}")
            if encoder != "default" and not Path(encoder).exists():
                print(f"   {encoder} was not kept; no hybrid numbers for it")
                continue
            print(f"== hybrid {r['config']} seed {r['seed']}", flush=True)
            # the base row also runs the engine's own dense search: a cross-check of dense_recall above
            kinds = ("bm25", "dense", "hybrid") if r["config"] == "base" else ("bm25", "hybrid")
            r["metrics"] |= hybrid_recall(encoder, docs, queries, qrels, workdir, kinds)
            results.write_text("".join(json.dumps(x) + "\n" for x in rows))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def train_one(name: str, seed: int, models_dir: Path) -> tuple[str, dict]:
    from vfr.retrieve.calibrate.mining import mine_hard_negatives
    from vfr.retrieve.calibrate.train import CalibrateConfig, calibrate

    spec = {**DEFAULTS, **CONFIGS[name]}
    pairs = load_pairs("coco-val", descriptions=spec.pop("pairs", "longest"))
    hard = spec.pop("hard_negatives", False)
    train, heldout = split_by_group(pairs, 0.1, seed)
    if hard:
        train = mine_hard_negatives(train, seed=seed)
    out = models_dir / f"{name}-s{seed}"
    result = calibrate(train, heldout, out, CalibrateConfig(seed=seed, **spec), log=lambda m: print("  " + m))
    return str(out), {"train_seconds": result.seconds, "steps": result.steps,
                      "loss_before": round(result.train_loss_before, 4), "loss_after": round(result.train_loss_after, 4),
                      "heldout_before": result.heldout_before, "heldout_after": result.heldout_after}


def done(results: Path) -> set[tuple[str, int]]:
    if not results.exists():
        return set()
    return {(r["config"], r["seed"]) for r in map(json.loads, results.read_text().splitlines()) if r}


def table(results: Path) -> str:
    rows: dict[str, list[dict]] = {}
    for r in map(json.loads, results.read_text().splitlines()):
        rows.setdefault(r["config"], []).append(r)
    cols = ["dense_R@1", "dense_R@5", "dense_R@10", "hybrid_R@1", "hybrid_R@5", "hybrid_R@10", "sc_all", "sc_unseen",
            *[f"hybrid_w{w}_R@1" for w in SPARSE_WEIGHTS]]
    lines = ["| config | seeds | " + " | ".join(cols) + " | train s |", "|" + "---|" * (len(cols) + 3)]
    for name, rs in rows.items():
        cells = []
        for c in cols:
            vals = [100 * r["metrics"][c] for r in rs if c in r["metrics"]]
            cells.append("n/a" if not vals else f"{statistics.mean(vals):.1f}" if len(vals) == 1
                         else f"{statistics.mean(vals):.1f} ± {statistics.stdev(vals):.1f}")
        secs = [r["train"]["train_seconds"] for r in rs if r.get("train")]
        lines.append(f"| {name} | {len(rs)} | " + " | ".join(cells) + f" | {statistics.mean(secs):.0f} |"
                     if secs else f"| {name} | {len(rs)} | " + " | ".join(cells) + " | – |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="*", default=["base", "mnrl"], help=f"base and/or {', '.join(CONFIGS)}")
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    ap.add_argument("--results", type=Path, default=Path("benchmarks/results/calibrate_runs.jsonl"))
    ap.add_argument("--models-dir", type=Path, default=Path(tempfile.gettempdir()) / "vfr-calibrate-models")
    ap.add_argument("--keep-models", action="store_true", help="keep trained models (to re-evaluate later)")
    ap.add_argument("--no-hybrid", action="store_true", help="skip BM25/hybrid (needs retrieve.index)")
    ap.add_argument("--table", action="store_true", help="only print the summary table of --results")
    ap.add_argument("--add-hybrid", action="store_true", help="only add BM25/hybrid to rows that lack them")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.table:
        print(table(args.results))
        return
    if args.add_hybrid:
        add_hybrid(args.results, args.models_dir)
        print(table(args.results))
        return
    args.results.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="vfr-calexp-"))
    try:
        for name in args.configs:
            for seed in ([0] if name == "base" else args.seeds):
                if (name, seed) in done(args.results):
                    continue
                print(f"== {name} seed {seed}", flush=True)
                start = time.perf_counter()
                encoder, train = ("default", None) if name == "base" else train_one(name, seed, args.models_dir)
                metrics = evaluate_model(encoder, workdir, hybrid=not args.no_hybrid)
                import torch

                row = {"config": name, "seed": seed, "torch_threads": torch.get_num_threads(), "spec": {**DEFAULTS, **CONFIGS.get(name, {})} if train else {},
                       "metrics": metrics, "train": train, "wall_seconds": round(time.perf_counter() - start, 1)}
                with open(args.results, "a") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"   {metrics}", flush=True)
                if train and not args.keep_models:
                    shutil.rmtree(encoder, ignore_errors=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(table(args.results))


if __name__ == "__main__":
    main()
