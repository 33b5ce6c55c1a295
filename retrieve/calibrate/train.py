"""Contrastive calibration of a sentence-transformers encoder on (query, document) pairs.

In-batch-negative loss (MultipleNegativesRankingLoss or its symmetric / cached variants), optional
mined hard negatives, a held-out split by group (image), an information-retrieval evaluator on the
held-out images each epoch, early stopping on its MRR@10, and a saved model folder that
`retrieve.encoder.load_encoder` (hence `vfr index --encoder DIR`) loads. Torch and sentence-transformers
are imported inside functions so importing this module stays cheap.
"""
from __future__ import annotations

import platform
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence

from vfr.retrieve.calibrate.pairs import Pair, group_free_batches, negative_groups
from vfr.store.textfiles import json_dumps

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

Loss = Literal["mnrl", "mnrl-sym", "cached-mnrl", "cached-mnrl-sym"]
LOSSES: tuple[str, ...] = ("mnrl", "mnrl-sym", "cached-mnrl", "cached-mnrl-sym")
BEST_METRIC = "heldout_cosine_mrr@10"
DEV_METRIC = "dev_cosine_mrr@10"      # with a dev set, checkpoints are chosen on it instead


@dataclass
class CalibrateConfig:
    """Every knob of one run; written into the output folder as calibration.json."""

    base: str = "default"
    loss: Loss = "mnrl"
    epochs: float = 1.0
    batch_size: int = 32
    mini_batch_size: int = 32          # cached losses only: the memory knob, results do not depend on it
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    scale: float = 20.0                # 1 / temperature of the softmax over in-batch candidates
    freeze_layers: int = 0             # freeze the embeddings and this many lowest transformer layers
    max_seq_length: int | None = None  # training-time truncation (cheaper on CPU); the saved model keeps its own
    seed: int = 0
    early_stopping: int = 2            # patience in evaluations without improvement; 0 = off
    eval_steps: int | None = None      # evaluate every N steps instead of every epoch
    device: str | None = None          # None: cuda if available, else cpu
    threads: int | None = None         # CPU threads for torch; 1 is ~10x faster on oversubscribed shared cores
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    gather_across_devices: bool = False  # multi-GPU: negatives from every device's batch
    teacher: str | list[str] | None = None  # distil: this model's margins; several: cross-fitted (distil.py)
    distil_weight: float = 1.0         # weight of the Margin-MSE term next to the contrastive one
    lexical_weight: float = 0.0        # > 0: train for the hybrid, BM25 in every logit at this fusion weight (residual.py)

    def validate(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        if self.batch_size < 2:
            raise ValueError("batch size must be >= 2: the other pairs of a batch are the negatives")
        if self.epochs <= 0 or self.learning_rate <= 0:
            raise ValueError("epochs and learning rate must be positive")
        if self.teacher and self.loss != "mnrl":
            raise ValueError("--teacher trains with its own loss (in-batch contrastive + Margin-MSE); "
                             "leave --loss at mnrl")
        if isinstance(self.teacher, list) and len(set(self.teacher)) < len(self.teacher):
            raise ValueError("the same --teacher is given twice: cross-fitting needs teachers calibrated on "
                             "different images")
        if self.teacher and self.gather_across_devices:
            raise ValueError("--teacher does not gather negatives across devices yet; drop --gather-across-devices")
        if self.distil_weight < 0:
            raise ValueError("the distillation weight must be >= 0")
        if not 0 <= self.lexical_weight < 1:
            raise ValueError("--lexical-weight is the fusion's BM25 weight: at least 0 and below 1 (e.g. 0.1)")
        if self.lexical_weight and (self.teacher or self.loss != "mnrl" or self.gather_across_devices):
            raise ValueError("--lexical-weight trains with its own in-batch loss: leave --loss at mnrl, and use it "
                             "without --teacher and --gather-across-devices")


@dataclass
class CalibrationResult:
    out_dir: str
    config: dict[str, Any]
    train_pairs: int
    heldout_pairs: int
    train_groups: int
    heldout_groups: int
    hard_negatives: int
    train_loss_before: float
    train_loss_after: float
    heldout_before: dict[str, float] = field(default_factory=dict)
    heldout_after: dict[str, float] = field(default_factory=dict)
    dev_before: dict[str, float] = field(default_factory=dict)   # the dev set's figures (--dev), when one is given
    dev_after: dict[str, float] = field(default_factory=dict)
    selected_on: str | None = None     # the figure checkpoints and early stopping were decided on
    best_checkpoint_metric: float | None = None
    steps: int = 0
    seconds: float = 0.0
    log_history: list[dict[str, Any]] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)      # where the pairs came from (sources, exclusions, mining)
    train_group_ids: list[str] = field(default_factory=list)  # the images trained on (cross-fitted distillation)


def calibrate(train: Sequence[Pair], heldout: Sequence[Pair], out_dir: str | Path,
              config: CalibrateConfig, log: Callable[[str], None] = print,
              record: dict[str, Any] | None = None, dev: Any = None) -> CalibrationResult:
    """Train, keep the best held-out checkpoint, save a loadable model folder, and say what happened
    (`record`: what the caller knows about the pairs, kept in calibration.json as "data"). `dev`: a labelled
    dev set (a retrieval task, see `dev_evaluator`) scored beside the held-out pairs; checkpoints are then
    chosen on it (a held-out split drawn mostly from caption proxies cannot see a model unlearn descriptions)."""
    config.validate()
    if len({p.group for p in train}) < 2:
        raise ValueError("need pairs from at least 2 groups (images) to train with in-batch negatives")
    import torch
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from transformers import EarlyStoppingCallback, set_seed

    from vfr.retrieve.calibrate.sampler import group_batch_sampler
    from vfr.retrieve.encoder import resolve_encoder

    set_seed(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    out_dir = Path(out_dir)
    model = _load_model(resolve_encoder(config.base).location, config.device)
    saved_len = model.max_seq_length
    if config.max_seq_length:
        model.max_seq_length = config.max_seq_length
    frozen = freeze_lower_layers(model, config.freeze_layers)
    if frozen:
        log(f"froze {frozen} parameter tensors (embeddings + {config.freeze_layers} lowest layers)")

    hard = sum(p.negative is not None for p in train)
    evaluator = heldout_evaluator(heldout, config.batch_size) if heldout else None
    dev_eval = dev_evaluator(dev, config.batch_size) if dev is not None else None
    if config.lexical_weight:
        labels, loss = _residual(model, config, train, hard == len(train), log)
    else:
        labels = _teacher_margins(config, train, evaluator, hard, log) if config.teacher else None
        loss = _loss(model, config)
    dataset = _dataset(train, with_negatives=hard == len(train), labels=labels)
    loss_before = pair_loss(model, train, config.batch_size, config.scale)
    before = _metrics(evaluator(model)) if evaluator else {}
    if evaluator:
        log(f"held-out before: {_fmt(before)}")
    dev_before = _metrics(dev_eval(model)) if dev_eval else {}
    if dev_eval:
        log(f"dev before:      {_fmt(dev_before)}")

    ckpt = Path(tempfile.mkdtemp(prefix="vfr-calibrate-"))
    evaluators = [e for e in (evaluator, dev_eval) if e is not None]
    use_eval = bool(evaluators)
    selected_on = (DEV_METRIC if dev_eval else BEST_METRIC) if use_eval else None
    strategy = "steps" if config.eval_steps else "epoch"
    args = SentenceTransformerTrainingArguments(
        output_dir=str(ckpt), num_train_epochs=config.epochs, per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate, warmup_steps=config.warmup_ratio,  # a float < 1 is a ratio (transformers 5)
        weight_decay=config.weight_decay,
        seed=config.seed, data_seed=config.seed, fp16=config.precision == "fp16",
        bf16=config.precision == "bf16", use_cpu=(config.device == "cpu") or not torch.cuda.is_available(),
        batch_sampler=group_batch_sampler([p.group for p in train], negative_groups(train) if hard else None),
        eval_strategy=strategy if use_eval else "no", save_strategy=strategy if use_eval else "no",
        eval_steps=config.eval_steps, save_steps=config.eval_steps,
        load_best_model_at_end=use_eval, metric_for_best_model=f"eval_{selected_on}" if use_eval else None,
        greater_is_better=True, save_total_limit=2, save_only_model=True,
        logging_steps=max(1, min(50, len(train) // config.batch_size // 4)), report_to="none",
        disable_tqdm=True, dataloader_drop_last=False)
    callbacks = [EarlyStoppingCallback(config.early_stopping)] if use_eval and config.early_stopping else []
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss,
                                         evaluator=_one(evaluators), callbacks=callbacks)
    start = time.perf_counter()
    try:
        trainer.train()
        seconds = time.perf_counter() - start
        after = _metrics(evaluator(model)) if evaluator else {}
        dev_after = _metrics(dev_eval(model)) if dev_eval else {}
        loss_after = pair_loss(model, train, config.batch_size, config.scale)
        model.max_seq_length = saved_len
        result = CalibrationResult(
            out_dir=str(out_dir), config=asdict(config), train_pairs=len(train), heldout_pairs=len(heldout),
            train_groups=len({p.group for p in train}), heldout_groups=len({p.group for p in heldout}),
            hard_negatives=hard, train_loss_before=loss_before, train_loss_after=loss_after,
            heldout_before=before, heldout_after=after, dev_before=dev_before, dev_after=dev_after,
            selected_on=selected_on, best_checkpoint_metric=trainer.state.best_metric,
            steps=trainer.state.global_step, seconds=round(seconds, 1),
            log_history=trainer.state.log_history, versions=_versions(), data=dict(record or {}),
            train_group_ids=sorted({p.group for p in train}))
        if trainer.is_world_process_zero():
            _save(model, out_dir, result)
    finally:
        shutil.rmtree(ckpt, ignore_errors=True)
    if evaluator:
        log(f"held-out after:  {_fmt(after)}")
    if dev_eval:
        log(f"dev after:       {_fmt(dev_after)}")
    log(f"training loss {loss_before:.4f} → {loss_after:.4f}; {result.steps} steps in {seconds:.0f} s; "
        f"saved {out_dir}")
    return result


def _one(evaluators: list[Any]) -> Any:
    """The trainer's evaluator: none, one, or all in sequence (each one's figures keep its name's prefix)."""
    if len(evaluators) < 2:
        return evaluators[0] if evaluators else None
    from sentence_transformers.sentence_transformer.evaluation import SequentialEvaluator

    return SequentialEvaluator(evaluators)


def pair_loss(model: "SentenceTransformer", pairs: Sequence[Pair], batch_size: int, scale: float,
              limit: int = 512) -> float:
    """Mean in-batch InfoNCE (query → documents) over fixed batches, without gradients.

    Deterministic (same batches before and after training), so "did training lower the loss" is answerable.
    """
    import torch
    import torch.nn.functional as F

    batches = group_free_batches(list(pairs)[:limit], batch_size, key=lambda p: p.group)
    total, n = 0.0, 0
    with torch.no_grad():
        for batch in batches:
            if len(batch) < 2:
                continue
            q = model.encode([p.query for p in batch], convert_to_tensor=True, normalize_embeddings=True)
            d = model.encode([p.document for p in batch], convert_to_tensor=True, normalize_embeddings=True)
            logits = scale * q @ d.T
            total += float(F.cross_entropy(logits, torch.arange(len(batch), device=logits.device))) * len(batch)
            n += len(batch)
    return total / max(n, 1)


def heldout_evaluator(pairs: Sequence[Pair], batch_size: int = 32):
    """IR evaluation on held-out images: each distinct query must find a document of its own image."""
    docs: dict[str, str] = {}
    doc_groups: dict[str, set[str]] = {}
    for p in pairs:
        did = docs.setdefault(p.document, f"d{len(docs)}")
        doc_groups.setdefault(did, set()).add(p.group)
    by_group: dict[str, set[str]] = {}
    for did, groups in doc_groups.items():
        for g in groups:
            by_group.setdefault(g, set()).add(did)
    queries: dict[str, str] = {}
    relevant: dict[str, set[str]] = {}
    for p in pairs:
        qid = queries.setdefault(p.query, f"q{len(queries)}")
        relevant.setdefault(qid, set()).update(by_group[p.group])
    return _ir_evaluator({v: k for k, v in queries.items()}, {v: k for k, v in docs.items()}, relevant, "heldout",
                         batch_size)


def dev_evaluator(task: Any, batch_size: int = 32):
    """IR evaluation on a labelled dev set (a retrieval task as `vfr eval` reads one: corpus, queries, qrels
    naming targets, and `doc_target` when several documents stand for one target)."""
    targets: dict[str, set[str]] = {}
    for did, target in (task.doc_target or {d: d for d in task.corpus}).items():
        if did in task.corpus:
            targets.setdefault(target, set()).add(did)
    relevant = {q: {d for t, grade in rel.items() if grade > 0 for d in targets.get(t, ())}
                for q, rel in task.qrels.items() if q in task.queries}
    relevant = {q: docs for q, docs in relevant.items() if docs}
    if not relevant:
        raise ValueError("the dev set has no query whose answer is in its corpus")
    return _ir_evaluator({q: task.queries[q] for q in relevant}, dict(task.corpus), relevant, "dev", batch_size)


def _ir_evaluator(queries: dict[str, str], corpus: dict[str, str], relevant: dict[str, set[str]], name: str,
                  batch_size: int):
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
    from sentence_transformers.util import cos_sim

    return InformationRetrievalEvaluator(
        queries=queries, corpus=corpus, relevant_docs=relevant, name=name, batch_size=batch_size,
        score_functions={"cosine": cos_sim}, accuracy_at_k=[1, 5, 10], precision_recall_at_k=[10], mrr_at_k=[10],
        ndcg_at_k=[10], map_at_k=[10], write_csv=False)


def freeze_lower_layers(model: "SentenceTransformer", n_layers: int) -> int:
    """Freeze token embeddings and the `n_layers` lowest transformer blocks (BERT-style names).

    On a few thousand pairs this limits how far the encoder drifts from its general-purpose start.
    """
    if n_layers <= 0:
        return 0
    import re

    named = list(model.named_parameters())
    layer_ids = {int(m.group(1)) for name, _ in named if (m := re.search(r"\.layers?\.(\d+)\.", name))}
    if not layer_ids:
        raise ValueError("--freeze-layers: this model has no recognisable transformer layers (*.layer.N.*)")
    if n_layers > len(layer_ids):
        raise ValueError(f"--freeze-layers {n_layers}: the model has only {len(layer_ids)} layers")
    frozen = 0
    for name, param in named:
        m = re.search(r"\.layers?\.(\d+)\.", name)
        if ".embeddings." in name or (m and int(m.group(1)) < n_layers):
            param.requires_grad_(False)
            frozen += 1
    return frozen


def _load_model(path: str, device: str | None) -> "SentenceTransformer":
    """A fresh (uncached) copy: training mutates it, so `load_encoder`'s shared instance must not be used."""
    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device=device)


def _teacher_margins(config: CalibrateConfig, train: Sequence[Pair], evaluator: Any, hard: int,
                     log: Callable[[str], None]) -> list[float]:
    """The teacher's margin for every training triple; its held-out scores are logged as the ceiling."""
    from vfr.retrieve.calibrate.distil import teacher_margins, teacher_plan, trained_groups
    from vfr.retrieve.encoder import resolve_encoder

    if hard < len(train):
        raise ValueError(f"--teacher needs a hard negative on every training pair ({hard} of {len(train)} have "
                         "one): mine them with --hard-negatives")
    names = [config.teacher] if isinstance(config.teacher, str) else list(config.teacher or [])
    locations = {name: resolve_encoder(name).location for name in names}
    share = teacher_plan(locations, train)
    seen = trained_groups(locations[names[0]]) if len(names) == 1 else None
    groups = {p.group for p in train}
    if seen and groups & seen:
        log(f"note: the teacher trained on {len(groups & seen)} of the {len(groups)} images of these pairs; its "
            "margins there are partly its fit to them (docs/distillation.md): give several --teacher, each "
            "calibrated without part of the images, to cross-fit")
    margins = [0.0] * len(train)
    for name, idx in share.items():
        if not idx:
            continue
        teacher = _load_model(locations[name], config.device)
        if evaluator:
            log(f"held-out, teacher{'' if len(names) == 1 else ' ' + name}: {_fmt(_metrics(evaluator(teacher)))}")
        for i, m in zip(idx, teacher_margins(teacher, [train[i] for i in idx], config.batch_size)):
            margins[i] = m
        log(f"teacher {name}: margins on {len(idx)} triples" + (" (images it never trained on)"
                                                              if len(names) > 1 else ""))
        del teacher
    log(f"teacher margins on {len(margins)} triples: mean {sum(margins) / len(margins):.3f}")
    return margins


def _residual(model: "SentenceTransformer", config: CalibrateConfig, train: Sequence[Pair], negatives: bool,
              log: Callable[[str], None]) -> tuple[list[list[float]], Any]:
    """Labels and loss of a calibration for the hybrid (`residual.py`)."""
    from vfr.retrieve.calibrate.residual import bm25_z, cosine_spread, residual_loss, to_cosine_units

    pairs = train if negatives else [Pair(p.query, p.document, p.group) for p in train]
    z, labels = bm25_z(pairs)
    spread = cosine_spread(model, pairs, config.batch_size)
    weight = to_cosine_units(config.lexical_weight, spread)
    log(f"training for the hybrid: BM25 of {z.shape[0]} queries × {z.shape[1]} documents; fusion weight "
        f"{config.lexical_weight} = {weight:.4f} in cosine units (cosine spread {spread:.3f})")
    return labels, residual_loss(model, config.scale, weight, z)


def _dataset(pairs: Sequence[Pair], with_negatives: bool, labels: Sequence[Any] | None = None):
    from datasets import Dataset

    cols: dict[str, list[Any]] = {"anchor": [p.query for p in pairs], "positive": [p.document for p in pairs]}
    if with_negatives:
        cols["negative"] = [p.negative for p in pairs]
    if labels is not None:
        cols["label"] = list(labels)
    return Dataset.from_dict(cols)


def _loss(model: "SentenceTransformer", config: CalibrateConfig):
    from sentence_transformers.sentence_transformer import losses

    if config.teacher:
        from vfr.retrieve.calibrate.distil import contrastive_margin_loss

        return contrastive_margin_loss(model, config.scale, config.distil_weight)
    common = {"scale": config.scale, "gather_across_devices": config.gather_across_devices}
    if config.loss == "mnrl":
        return losses.MultipleNegativesRankingLoss(model, **common)
    if config.loss == "mnrl-sym":
        return losses.MultipleNegativesSymmetricRankingLoss(model, **common)
    cls = (losses.CachedMultipleNegativesRankingLoss if config.loss == "cached-mnrl"
           else losses.CachedMultipleNegativesSymmetricRankingLoss)
    return cls(model, mini_batch_size=config.mini_batch_size, **common)


def _metrics(raw: dict[str, float]) -> dict[str, float]:
    """Short names: R@1/5/10 (a document of the right image in the top k), MRR@10, nDCG@10."""
    names = {"accuracy@1": "R@1", "accuracy@5": "R@5", "accuracy@10": "R@10", "mrr@10": "MRR@10",
             "ndcg@10": "nDCG@10"}
    out = {}
    for key, value in raw.items():
        for suffix, short in names.items():
            if key.endswith("_cosine_" + suffix):
                out[short] = round(float(value), 4)
    return out


def _fmt(m: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.3f}" for k, v in m.items())


def _save(model: "SentenceTransformer", out_dir: Path, result: CalibrationResult) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(str(out_dir))
    (out_dir / "calibration.json").write_text(json_dumps(asdict(result), indent=1, default=str) + "\n")


def _versions() -> dict[str, str]:
    import sentence_transformers
    import torch
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "sentence_transformers": sentence_transformers.__version__}
