"""`vfr tune`: choose the hybrid's fusion for an encoder on a labelled dev set and keep it with the model."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from vfr.common import console, counted, fail, out
from vfr.store.textfiles import json_dumps


def register(app: typer.Typer) -> None:
    app.command("tune")(tune_cmd)


def tune_cmd(
    dev: Annotated[str, typer.Argument(help="Labelled dev set: a built-in validation benchmark (coco-val, "
                                       "flickr30k-val, coco-5k-val), a BEIR folder or a JSONL of "
                                       '{"id", "document", "queries": [...]} lines (the formats `vfr eval` reads).')],
    encoder: Annotated[str, typer.Option("--encoder", "-e", help="The encoder to tune for: the packaged default, "
                                         "a model folder (e.g. from `vfr calibrate`) or an installed model.")]
    = "all-MiniLM-L6-v2",
    metric: Annotated[str, typer.Option(help="What to maximise: mrr@10, r@1, r@5, r@10 or ndcg@10.")] = "mrr@10",
    alpha: Annotated[float, typer.Option(min=0.0, max=1.0, help="Keep the built-in fusion unless the grid's "
                                         "best beats it on the dev queries at this significance level (a "
                                         "sign-flip test of the best of the whole grid, so picking the winner "
                                         "on the same queries is accounted for); 1 = take the grid's best "
                                         "whatever.")] = 0.2,
    task: Annotated[Optional[str], typer.Option(help="Which retrieval task of a built-in benchmark "
                                                "(default: the first, text→image).")] = None,
    source: Annotated[str, typer.Option("--description-source", "-s", help="Built-in benchmarks with machine "
                                        "descriptions: which description stands for an image.")] = "longest",
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Shared data folder (env VFR_DATA).")] = None,
    cache_dir: Annotated[Optional[Path], typer.Option("--cache-dir", help="Evaluation cache (default "
                                                      "~/.cache/vfr/eval).")] = None,
    save: Annotated[bool, typer.Option("--save/--dry-run", help="Keep the choice with the model (default), or "
                                       "only print it.")] = True,
    allow_test: Annotated[bool, typer.Option("--allow-test", help="Tune on a built-in *-test benchmark anyway "
                                             "(its results are then no longer held out).")] = False,
    bm25_fields: Annotated[str, typer.Option("--bm25-fields", help="Tune for indexes with field-aware BM25 "
                                             "(FIELD=WEIGHT,...; as `vfr index --bm25-fields`).")] = "none",
    parts: Annotated[str, typer.Option("--parts", help="Tune for multi-vector indexes ('sentences').")] = "",
    parts_weight: Annotated[float, typer.Option("--parts-weight", min=0.0, max=1.0, help="Their best-sentence weight.")] = 0.5,
    query_bank: Annotated[str, typer.Option("--query-bank", help="Tune for indexes with a hubness correction: "
                                            "a built-in bank (coco-val-captions) or a text file of queries (as "
                                            "`vfr index --query-bank`); texts the dev set scores are left out.")
                          ] = "",
    hubness: Annotated[float, typer.Option("--hubness", min=0.0, max=2.0, help="Its weight.")] = 0.5,
    keep_seen: Annotated[bool, typer.Option("--keep-seen", help="Tune on every dev query and document. By default "
                                            "the images the encoder was calibrated on (its calibration.json, or "
                                            "its soup's ingredients') are left out, as queries (they reward "
                                            "memorising) and as documents (distractors it has seen).")
                         ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON on stdout.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bars.")] = True,
) -> None:
    """Choose the hybrid's fusion (BM25/dense weights, normalisation, or RRF) for ENCODER on a labelled
    dev set, and store it with the model, keyed by the model's content fingerprint.

    Every dev query's candidates are scored once on both sides, then a grid of fusion settings is compared
    on them. The grid's best replaces the built-in fusion only if it is significantly better (--alpha): on a
    few hundred queries it usually is not, and a choice made on noise tends to help one description style
    and hurt another. A choice is kept per encoder and per index scoring settings (BM25 k1/b, --bm25-fields,
    --parts): tune with the options the index will have. The choice is written to fusion.json in the model folder (for the packaged default:
    ~/.cache/vfr/fusion/). New index builds with that encoder record it in their manifest and search
    with it by default; `vfr index` brings an existing index up to date. A different or retrained model
    never inherits it.

    A calibrated encoder is tuned only on the dev images it never trained on, as queries and as documents (a
    calibration that drew pairs from the dev set's images has memorised those; --keep-seen keeps them).
    """
    from vfr.eval.datasets import BenchmarkError
    from vfr.eval.tasks import index_descriptions
    from vfr.eval.tune import TuneInputError, dev_task, table_lines, tune_task
    from vfr.retrieve.encoder import EncoderError
    from vfr.retrieve.tuning import METRICS, TuningError, check_alpha

    if metric not in METRICS:
        fail(f"unknown metric {metric!r}: use one of {', '.join(METRICS)}")
    try:
        check_alpha(alpha, "--alpha")
    except TuningError as e:
        fail(str(e))
    from vfr.retrieve.fields import parse_weights
    from vfr.retrieve.hubness import bank_sha
    from vfr.retrieve.writer import IndexConfig

    try:
        fields = parse_weights(bm25_fields)
        IndexConfig(fields=fields, descriptions=index_descriptions(source))  # refused as `vfr index` refuses it
        name, dev_set = dev_task(dev, data_dir, source, task, allow_test)
        bank = _bank(query_bank, dev_set, data_dir)
        config = IndexConfig(fields=fields, parts=parts, parts_weight=parts_weight,
                             **({"hubness": hubness, "query_bank": bank_sha(bank)} if bank else {}))
        console.print(f"tuning the fusion for {encoder} on {name} ({dev_set.name}: "
                      f"{counted(len(dev_set.queries), 'query')}, {counted(len(dev_set.corpus), 'document')})",
                      highlight=False)
        tuned = tune_task(dev_set, encoder, name, metric=metric, cache_dir=cache_dir, save=save,
                          progress=progress, log=lambda m: console.print(m, highlight=False), index_config=config,
                          query_bank=bank, alpha=alpha, keep_seen=keep_seen)
    except (BenchmarkError, TuneInputError, TuningError, EncoderError, ValueError) as e:
        fail(str(e))
    if as_json:
        out.print_json(json_dumps({"choice": tuned.choice.model_dump(),
                                   "saved_to": str(tuned.saved_to) if tuned.saved_to else None}))
        return
    out.print("\n".join(table_lines(tuned.result)), highlight=False)
    c = tuned.choice
    verdict = "" if c.p_value is None else f"; p = {c.p_value:.3f} for the grid's best"
    console.print(f"chosen on {c.dataset} ({counted(c.queries, 'query')}): {metric} {100 * c.value:.1f} "
                  f"(built-in default {100 * c.baseline_value:.1f}{verdict})", highlight=False)
    if tuned.saved_to:
        console.print(f"saved to {tuned.saved_to}; new indexes built with this encoder use it; run `vfr index` "
                      "to bring an existing index up to date", highlight=False)


def _bank(spec: str, dev_set, data_dir: Optional[Path]) -> list[str]:
    """The query bank --query-bank names, less the dev set's own queries."""
    from vfr.eval import benchmarks

    if not spec:
        return []
    return benchmarks.without_scored([dev_set], benchmarks.query_bank(spec, data_dir), f"the query bank {spec}")
