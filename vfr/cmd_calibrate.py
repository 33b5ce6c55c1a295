"""`vfr calibrate`: contrastive fine-tuning of the dense encoder on caption↔description pairs."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from vfr.common import console, counted, fail, require_empty_out


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate_cmd)


def calibrate_cmd(
    pairs: Annotated[list[str], typer.Option("--pairs", help="Pair source (repeatable: sources of different "
                                             "description styles train together): a .duckdb store (captions of "
                                             "described images), a COCO join JSONL, a Karpathy split JSON (caption "
                                             "proxy: captions 2… ↔ caption 1), a JSONL of {\"query\", "
                                             "\"document\"} pairs, or a shared-data name under $VFR_DATA: coco-val, "
                                             "coco-test (joins), flickr30k-val, coco-5k-val (caption proxies).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the calibrated model (`vfr index --encoder OUT`).")],
    base: Annotated[str, typer.Option("--base", help="Model to start from: default (packaged MiniLM), a "
                                      "model folder or a hub name.")] = "default",
    fmt: Annotated[str, typer.Option("--format", help="auto | store | coco-join | karpathy | jsonl")] = "auto",
    descriptions: Annotated[str, typer.Option(help="Pair each caption with all of its image's descriptions (a pair "
                                              "each; COCO joins), the longest, or 'joined': all in one "
                                              "document, as `vfr index --descriptions every-model` indexes "
                                              "them (COCO joins and stores).")] = "all",
    source: Annotated[Optional[list[str]], typer.Option("--source", help="COCO joins: only descriptions whose "
                                                        "key starts with this (repeatable), e.g. opera/.")] = None,
    max_pairs: Annotated[Optional[int], typer.Option(min=2, help="Keep a seeded random sample of at most this "
                                                     "many pairs from each --pairs source.")] = None,
    exclude_groups: Annotated[Optional[Path], typer.Option(help="File of image ids (one a line) whose pairs are "
                                                           "dropped: keep the images you evaluate on out of "
                                                           "training (`python benchmarks/benchmark_images.py`).")]
    = None,
    loss: Annotated[str, typer.Option(help="mnrl | mnrl-sym | cached-mnrl | cached-mnrl-sym")] = "mnrl",
    epochs: Annotated[float, typer.Option(min=0.001, max=10_000.0, help="Passes over the training pairs.")] = 1.0,
    batch_size: Annotated[int, typer.Option(min=2, max=1_000_000, help="Pairs per batch; the others in a batch are the negatives.")] = 32,
    mini_batch_size: Annotated[int, typer.Option(min=1, help="Cached losses: GPU memory knob.")] = 32,
    lr: Annotated[float, typer.Option("--lr", min=1e-12, max=1.0, help="Peak learning rate (linear warm-up and decay).")] = 2e-5,
    warmup: Annotated[float, typer.Option(min=0.0, max=1.0, help="Warm-up fraction of the steps.")] = 0.1,
    scale: Annotated[float, typer.Option(min=0.001, max=10_000.0, help="Inverse temperature of the contrastive softmax.")] = 20.0,
    freeze_layers: Annotated[int, typer.Option(min=0, help="Freeze embeddings + this many lowest layers.")] = 0,
    max_seq_length: Annotated[Optional[int], typer.Option(min=1, help="Truncate texts while training "
                                                          "(faster on CPU); the saved model keeps its own.")] = None,
    hard_negatives: Annotated[bool, typer.Option(help="Mine one hard negative per pair (another image's "
                                                 "document ranked high; see --hn-retriever).")] = False,
    hn_retriever: Annotated[str, typer.Option(help="Who ranks the negatives: bm25 (Lucene) or hybrid / dense "
                                              "(the engine over the --base model: the mistakes search would "
                                              "make).")] = "bm25",
    hn_depth: Annotated[int, typer.Option(min=1, help="Draw the negative from this many top other-image hits.")] = 10,
    hn_skip: Annotated[int, typer.Option(min=0, help="Skip this many top other-image hits (likely false negatives).")] = 0,
    hn_count: Annotated[int, typer.Option(min=1, max=100, help="Hard negatives per pair (each makes one training "
                                          "triple; more give a --teacher more margins to teach).")] = 1,
    hn_pool: Annotated[Optional[str], typer.Option(help="More documents to mine negatives from, of images without "
                                                   "pairs: a .duckdb store (its described images that have no "
                                                   "captions, less --exclude-groups) or a text file, one document "
                                                   "a line (keep your evaluation images out of it). Offered to "
                                                   "pairs of description sources only, never to caption proxies "
                                                   "(Karpathy splits). Implies --hard-negatives.")] = None,
    hn_guide: Annotated[Optional[str], typer.Option(help="Positive-aware mining: an encoder (folder or name, e.g. "
                                                    "mpnet) that vetoes a candidate negative scoring at least "
                                                    "--hn-guide-ratio x the pair's own document for the query (a "
                                                    "likely unlabelled positive). Implies --hard-negatives.")]
    = None,
    hn_guide_ratio: Annotated[float, typer.Option(min=0.01, max=2.0, help="With --hn-guide: the veto threshold "
                                                  "(NV-Retriever's 0.95 by default).")] = 0.95,
    teacher: Annotated[Optional[list[str]], typer.Option(help="Distil: a stronger model (folder or name, e.g. a "
                                                         "calibrated mpnet) whose score margins between each pair's "
                                                         "document and its hard negative the new model also learns "
                                                         "(Margin-MSE beside the contrastive loss; implies "
                                                         "--hard-negatives). Serving costs what --base costs. "
                                                         "Repeat to cross-fit: teachers from `vfr calibrate "
                                                         "--exclude-groups`, each triple scored by one that never "
                                                         "trained on its image.")] = None,
    distil_weight: Annotated[float, typer.Option(min=0.0, max=1000.0, help="With --teacher: weight of the "
                                                 "margin term next to the contrastive one.")] = 1.0,
    lexical_weight: Annotated[float, typer.Option(min=0.0, max=0.99, help="Train for the hybrid: every "
                                                  "candidate's training score adds BM25 at this fusion weight "
                                                  "(e.g. 0.1, the built-in fusion's), so the encoder learns what "
                                                  "BM25 misses (CLEAR-style residual). 0 = off.")] = 0.0,
    heldout: Annotated[float, typer.Option(min=0.0, max=0.99, help="Fraction of images (never pairs) held out for "
                                           "evaluation and early stopping; 0 = none.")] = 0.1,
    dev: Annotated[Optional[str], typer.Option("--dev", help="A labelled dev set in the description style the "
                                               "model will search, scored with the held-out pairs at each "
                                               "evaluation: a built-in validation benchmark (coco-val), a BEIR "
                                               "folder or a generic JSONL (what `vfr tune` reads), less the images "
                                               "the model trains on. Checkpoints and early stopping are then "
                                               "decided on it, and a model that ends below its base there is "
                                               "flagged.")] = None,
    early_stopping: Annotated[int, typer.Option(min=0, help="Stop after this many evaluations without "
                                                "improvement (0 = off).")] = 2,
    eval_steps: Annotated[Optional[int], typer.Option(min=1, help="Evaluate every N steps (default: each epoch).")] = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed for the split, sampling and initialisation.")] = 0,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:1 … (default: cuda if present).")] = None,
    precision: Annotated[str, typer.Option(help="fp32 | fp16 | bf16 (GPU).")] = "fp32",
    threads: Annotated[Optional[int], typer.Option(min=1, help="CPU threads for torch (default: torch's choice). "
                                                   "Use 1 on cores shared with other busy processes.")] = None,
    gather: Annotated[bool, typer.Option("--gather-across-devices", help="Multi-GPU: use every device's "
                                         "batch as negatives.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite a non-empty --out folder.")] = False,
    tune: Annotated[bool, typer.Option("--tune/--no-tune", help="After training, choose the hybrid's fusion for "
                                       "the new model on validation pairs and save it in the model folder "
                                       "(fusion.json; indexes built with the model use it).")] = True,
    tune_on: Annotated[Optional[str], typer.Option("--tune-on", help="Dev set for that choice instead of the "
                                                   "held-out pairs: a built-in validation benchmark, a BEIR "
                                                   "folder or a generic JSONL (what `vfr tune` reads); the "
                                                   "images the model trained on are left out of its queries "
                                                   "and documents.")] = None,
    tune_metric: Annotated[str, typer.Option(help="What the fusion choice maximises (see `vfr tune`).")]
    = "mrr@10",
    tune_alpha: Annotated[float, typer.Option(min=0.0, max=1.0, help="Keep the built-in fusion unless the "
                                              "grid's best is significantly better on the dev queries at this "
                                              "level (see `vfr tune --alpha`); 1 = take the grid's best.")] = 0.2,
) -> None:
    """Fine-tune the dense encoder so short queries land near the long descriptions of their image.

    In-batch-negative contrastive loss, held-out split by image, an IR evaluation on the held-out images
    each epoch (R@1/5/10, MRR@10) with early stopping, and a saved model folder that `vfr index --encoder`
    and `vfr eval --encoder` accept. calibration.json in that folder records the run. CPU-friendly
    defaults: the packaged MiniLM calibrates on ~2k pairs in about five minutes on 2 cores (pass
    --threads 1 when other busy processes share them).
    """
    from vfr.retrieve.calibrate.pairs import (DESCRIPTION_CHOICES, PairError, by_source, caption_proxy_pairs,
                                              load_pool, load_sources, read_groups, split_by_group)
    from vfr.retrieve.tuning import METRICS, TuningError, check_alpha

    if tune_metric not in METRICS:
        fail(f"unknown --tune-metric {tune_metric!r}: use one of {', '.join(METRICS)}")
    try:
        check_alpha(tune_alpha, "--tune-alpha")
    except TuningError as e:
        fail(str(e))
    require_empty_out(out, force)
    if descriptions not in DESCRIPTION_CHOICES:
        fail(f"--descriptions must be one of {', '.join(DESCRIPTION_CHOICES)}, not {descriptions!r}")
    if hn_retriever not in ("bm25", "hybrid", "dense"):
        fail(f"--hn-retriever must be bm25, hybrid or dense, got {hn_retriever!r}")
    try:
        excluded = read_groups(exclude_groups) if exclude_groups else []
        all_pairs, counts = load_sources(pairs, fmt, descriptions=descriptions,  # type: ignore[arg-type]
                                         description_sources=source or (), max_pairs=max_pairs,
                                         exclude_groups=excluded, seed=seed)
        train, held = split_by_group(all_pairs, heldout, seed)
        pool = load_pool(hn_pool, {p.group for p in all_pairs} | set(excluded), joined=descriptions == "joined") \
            if hn_pool else []
        sources = by_source(all_pairs, counts)
        proxies = caption_proxy_pairs(sources, fmt)  # type: ignore[arg-type]
    except PairError as e:
        fail(str(e))
    per_source = ", ".join(f"{n} from {s}" for s, n in counts.items())
    if excluded:
        per_source += f"; without the images of the {counted(len(excluded), 'id')} in --exclude-groups"
    held_images = {p.group for p in held}
    console.print(f"{counted(len(all_pairs), 'pair')} ({per_source}): "
                  f"{len(train)} for training, {len(held)} held out ({counted(len(held_images), 'image')})",
                  highlight=False)
    described = {p.group for p in held if p not in proxies}
    if proxies and len(proxies) < len(all_pairs) and len(described) < len(held_images) / 2 and not dev:
        console.print(f"note: {len(described)} of the {counted(len(held_images), 'held-out image')} come "
                      "from description sources and the rest from caption proxies, so the held-out figures mostly "
                      "measure caption → caption: they cannot show a model that unlearnt descriptions (docs/"
                      "calibrate.md § A pool of unlabelled descriptions). Pass --dev coco-val (or your own dev "
                      "set of descriptions) to choose checkpoints on descriptions and be warned.", highlight=False)
    dev_set = _dev_set(dev, train, descriptions) if dev else None
    from vfr.retrieve.calibrate.train import CalibrateConfig, calibrate

    config = CalibrateConfig(base=base, loss=loss, epochs=epochs, batch_size=batch_size,  # type: ignore[arg-type]
                             mini_batch_size=mini_batch_size, learning_rate=lr, warmup_ratio=warmup, scale=scale,
                             freeze_layers=freeze_layers, max_seq_length=max_seq_length, seed=seed,
                             early_stopping=early_stopping, eval_steps=eval_steps, device=device, threads=threads,
                             precision=precision, gather_across_devices=gather,  # type: ignore[arg-type]
                             teacher=(teacher[0] if len(teacher) == 1 else list(teacher)) if teacher else None,
                             distil_weight=distil_weight, lexical_weight=lexical_weight)
    try:
        config.validate()
        from vfr.retrieve.encoder import clear_loaded, load_encoder, resolve_encoder

        # a wrong --base or --teacher, or teachers that cannot be cross-fitted, fail now, not after mining
        locations = {model: resolve_encoder(model).location
                     for model in [base, *(teacher or []), *([hn_guide] if hn_guide else [])]}
        if teacher and len(teacher) > 1:
            from vfr.retrieve.calibrate.distil import teacher_plan

            teacher_plan({t: locations[t] for t in teacher}, train)
        if teacher and not hard_negatives:
            console.print("--teacher: mining hard negatives (the teacher scores each pair against one)",
                          highlight=False)
            hard_negatives = True
        if (hn_guide or hn_pool) and not hard_negatives:
            console.print(f"{'--hn-guide' if hn_guide else '--hn-pool'}: mining hard negatives", highlight=False)
            hard_negatives = True
        offered = sum(p not in proxies for p in train)
        if pool and not offered:
            fail("--hn-pool: every training pair is a caption proxy (a Karpathy split), whose documents are captions; "
                 "description negatives would teach the encoder to reject every description. Add a source of "
                 "caption ↔ description pairs (a store or a COCO join), or leave --hn-pool out")
        if pool:
            console.print(f"--hn-pool: {counted(len(pool), 'document')} of images without pairs join the ranking "
                          f"for the {offered} training pairs of description sources"
                          + (f" (not for the {len(train) - offered} caption-proxy pairs: with description negatives "
                             "they would teach the encoder to reject every description)" if offered < len(train)
                             else ""), highlight=False)
        if hard_negatives:
            from vfr.retrieve.calibrate.mining import mine_hard_negatives

            search = None if hn_retriever == "bm25" else _engine_search(hn_retriever, base)
            train = mine_hard_negatives(train, depth=hn_depth, skip=hn_skip, seed=seed, search=search,
                                        count=hn_count, guide=load_encoder(hn_guide).encode if hn_guide else None,
                                        guide_ratio=hn_guide_ratio, pool=pool,
                                        pool_for=(lambda p: p not in proxies) if proxies else None,
                                        log=lambda m: console.print(m, highlight=False))
            if hn_guide:
                clear_loaded()  # the guide's weights are not needed while training
            console.print(f"mined {sum(p.negative is not None for p in train)} {hn_retriever} hard negatives")
        result = calibrate(train, held, out, config, log=lambda m: console.print(m, highlight=False),
                           record={"sources": counts, "excluded_groups": len(excluded),
                                   "hard_negative_retriever": hn_retriever if hard_negatives else None,
                                   "hard_negatives_per_pair": hn_count if hard_negatives else None,
                                   **({"hard_negative_pool": {"source": hn_pool, "documents": len(pool),
                                                              "pairs_offered": offered}}
                                      if pool else {}),
                                   **({"hard_negative_guide": hn_guide, "hard_negative_guide_ratio": hn_guide_ratio}
                                      if hn_guide else {}),
                                   **({"dev": dev_set[1]} if dev_set else {})},
                           dev=dev_set[0] if dev_set else None)
    except ValueError as e:
        fail(str(e))
    _check_dev(result, dev)
    if result.heldout_after and result.heldout_before:
        gain = result.heldout_after.get("R@1", 0) - result.heldout_before.get("R@1", 0)
        if gain < 0:
            console.print(f"[yellow]warning:[/] held-out R@1 fell by {-gain:.3f}; the base model may serve "
                          "better (try a lower --lr, --freeze-layers or more pairs)")
    if tune and os.environ.get("RANK", "0") == "0":
        _tune_fusion(out, held, train, tune_on, tune_metric, tune_alpha)
    console.print(f"calibrated model in {out}: use it with `vfr index --encoder {out}`")


def _dev_set(dev: str, train: list, descriptions: str) -> tuple:
    """The --dev retrieval task without the images `train` holds (queries and documents), and what it is."""
    from vfr.eval.datasets import BenchmarkError
    from vfr.eval.runner import without_trained
    from vfr.eval.tune import TuneInputError, dev_task

    try:
        name, task = dev_task(dev, source="concat" if descriptions == "joined" else "longest")
    except (BenchmarkError, TuneInputError, ValueError) as e:
        fail(f"--dev: {e}")
    clean, seen, dropped = without_trained(task, frozenset(p.group for p in train))
    if not clean.qrels or not clean.corpus:
        fail(f"--dev {dev}: every one of its queries asks for an image the model trains on; give a dev set of "
             "other images")
    console.print(f"dev set {name}: {counted(len(clean.queries), 'query')} over "
                  f"{counted(len(clean.corpus), 'document')}"
                  + (f" (without the {len(seen)} queries and {dropped} documents of images it trains on)"
                     if seen or dropped else ""), highlight=False)
    return clean, {"name": name, "queries": len(clean.queries), "documents": len(clean.corpus),
                   "queries_left_out": len(seen), "documents_left_out": dropped}


def _check_dev(result, dev: str | None) -> None:
    """Say so when the calibrated model ends below its base on the dev set."""
    if not (result.dev_before and result.dev_after):
        return
    was, now = result.dev_before.get("MRR@10", 0.0), result.dev_after.get("MRR@10", 0.0)
    if now < was:
        console.print(f"[yellow]warning:[/] on the dev set {dev} the calibrated model ranks worse than its base "
                      f"(dense MRR@10 {was:.3f} → {now:.3f}, R@1 {result.dev_before.get('R@1', 0):.3f} → "
                      f"{result.dev_after.get('R@1', 0):.3f}): serve the base, or change the recipe (docs/"
                      "calibrate.md § A pool of unlabelled descriptions shows how a recipe can unlearn "
                      "descriptions)", highlight=False)


def _engine_search(retriever: str, encoder: str):
    """Rank with the engine itself (a throw-away index over the documents, the built-in fusion): the
    hard negatives are then the documents the served hybrid would wrongly put first."""
    import shutil
    import tempfile

    from vfr.eval.cache import open_corpus_index
    from vfr.retrieve.types import Query
    from vfr.retrieve.writer import IndexConfig

    def search(texts: list[str], queries: list[str], k: int) -> dict[str, list[int]]:
        cache = Path(tempfile.mkdtemp(prefix="vfr-calibrate-mine-"))
        try:
            index, _ = open_corpus_index({str(i): t for i, t in enumerate(texts)}, encoder, IndexConfig(), cache,
                                         progress=True, fusion="fixed")
            try:
                backend, ranked = index.backend(retriever), {}
                for start in range(0, len(queries), 256):
                    chunk = queries[start:start + 256]
                    for q, hits in zip(chunk, backend.batch_search([Query(q) for q in chunk], k)):
                        ranked[q] = [int(h.id) for h in hits]
                return ranked
            finally:
                index.close()
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    return search


def _tune_fusion(model: Path, held: list, train: list, tune_on: str | None, metric: str, alpha: float) -> None:
    """Choose the fusion for the new model on validation data and keep it in the model folder: the best
    BM25 weight moves when the dense side gets better (docs/fusion.md). The held-out captions query every
    document of the pairs (training documents are distractors only, never relevant)."""
    import shutil
    import tempfile

    from vfr.eval.datasets import BenchmarkError
    from vfr.eval.tune import TuneInputError, dev_task, describe, pairs_task, tune_task
    from vfr.retrieve.encoder import EncoderError
    from vfr.retrieve.tuning import TuningError

    if tune_on is None and not held:
        console.print("note: no held-out pairs (--heldout 0) and no --tune-on: the fusion stays the built-in "
                      "default; run `vfr tune DEV --encoder MODEL` to choose one", highlight=False)
        return
    cache = Path(tempfile.mkdtemp(prefix="vfr-calibrate-tune-"))
    try:
        name, task = dev_task(tune_on) if tune_on else \
            ("calibration held-out pairs", pairs_task(held, distractors=train))
        tuned = tune_task(task, str(model), name, metric=metric, cache_dir=cache, progress=False,
                          log=lambda m: console.print(m, highlight=False), alpha=alpha)
    except (BenchmarkError, TuneInputError, TuningError, EncoderError, ValueError) as e:
        fail(f"the model is saved in {model}, but choosing its fusion failed: {e}")
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    c = tuned.choice
    console.print(f"fusion for the new model: {describe(tuned.result.best)} ({metric} {100 * c.value:.1f} on "
                  f"{c.dataset}, {counted(c.queries, 'query')}; built-in default {100 * c.baseline_value:.1f}); "
                  f"saved to {tuned.saved_to}", highlight=False)


if __name__ == "__main__":  # `torchrun --nproc_per_node 4 -m vfr.cmd_calibrate …` (multi-GPU training)
    typer.run(calibrate_cmd)
