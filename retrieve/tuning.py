"""Fusion that follows its encoder: the hybrid's weights and normalisation chosen on labelled validation
queries, kept with the model and keyed by its content fingerprint.

The best BM25 weight depends on how strong the dense side is (0.1 for the packaged MiniLM on COCO val,
lower after calibration: docs/fusion.md), so one fixed default serves one encoder only. `tune` scores each
validation query's candidates once on both sides (the hybrid's exact candidate scores), then compares a
grid of fusion settings on those same candidates. `save_choice` keeps the winner in `fusion.json` in the
model folder (for a folder vfr must not write, such as the packaged default in site-packages:
`$VFR_CACHE/fusion/<fingerprint>.json`), keyed by the encoder fingerprint and the index's scoring settings
(`IndexConfig.scoring()`): a retrained or different model, or an index scored differently, never picks it
up. `default_fusion` is what an index build records in its manifest (`fusion_default`, `fusion_source`),
so search uses the tuned fusion without options. `fusion.json` is not part of the model's fingerprint.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, ValidationError

from vfr.retrieve.fusion import FusionConfig, fuse_batch
from vfr.retrieve.types import Query, Run

FILE = "fusion.json"
FILE_FORMAT = 1
# metric name (CLI) → ranx measure; R@k is the hit rate (any relevant item in the top k)
METRICS = {"r@1": "hit_rate@1", "r@5": "hit_rate@5", "r@10": "hit_rate@10", "mrr@10": "mrr@10",
           "ndcg@10": "ndcg@10"}
DEFAULT_METRIC = "mrr@10"  # smoother than R@1 on a few hundred queries, and it rewards R@1 most
SPARSE_WEIGHTS = (0.0, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)
FEW_QUERIES = 300  # below this a choice among the grid is noisy: say so


class TuningError(ValueError):
    """A tuning input or a stored choice the user must fix (the message says what to do)."""


def grid(depth: int | None = None) -> list[FusionConfig]:
    """Convex fusion with z-score and min-max normalisation over SPARSE_WEIGHTS (w_dense = 1 − w_sparse;
    0 = dense alone, once: either normalisation ranks it alike), and RRF(60); all at one candidate depth."""
    depth = depth or FusionConfig().depth
    configs = [FusionConfig(weights=(w, round(1 - w, 6)), norm=n, depth=depth)  # type: ignore[arg-type]
               for n in ("zscore", "minmax") for w in SPARSE_WEIGHTS if w > 0 or n == "zscore"]
    return configs + [FusionConfig(method="rrf", depth=depth)]


@dataclass(frozen=True)
class TuneResult:
    metric: str
    best: FusionConfig
    baseline: FusionConfig                         # the built-in default, measured on the same queries
    table: list[tuple[FusionConfig, dict[str, float]]]  # every setting with every metric
    queries: int

    def value(self, config: FusionConfig) -> dict[str, float]:
        return next(m for c, m in self.table if c == config)


def collect(hybrid: Any, queries: Mapping[str, str], depth: int, batch: int = 500,
            progress: Callable[[int, int], None] | None = None
            ) -> tuple[list[str], list[dict[str, float]], list[dict[str, float]]]:
    """(query ids, sparse scores, dense scores): each query's candidates scored exactly on both sides."""
    qids = [q for q, text in queries.items() if text.strip()]
    sparse: list[dict[str, float]] = []
    dense: list[dict[str, float]] = []
    for start in range(0, len(qids), batch):
        chunk = [Query(queries[q], q) for q in qids[start:start + batch]]
        s, d = hybrid.candidate_scores(chunk, depth)
        sparse += s
        dense += d
        if progress:
            progress(len(chunk), len(qids))
    return qids, sparse, dense


def evaluate_configs(qids: Sequence[str], sparse: Sequence[dict[str, float]], dense: Sequence[dict[str, float]],
                     qrels: Mapping[str, Mapping[str, int]], configs: Sequence[FusionConfig],
                     to_target: Callable[[Run], Run] | None = None) -> list[dict[str, float]]:
    """Every metric of METRICS for each fusion setting, on the same candidates (ranx)."""
    from ranx import Qrels, Run as RanxRun, evaluate

    judged = Qrels({q: dict(r) for q, r in qrels.items() if q in set(qids)})
    out = []
    for config in configs:
        fused = fuse_batch(sparse, dense, config)
        run: Run = {q: dict(sorted(f.items(), key=lambda kv: (-kv[1], kv[0]))[:100]) for q, f in zip(qids, fused)}
        if to_target:
            run = to_target(run)
        run = {q: (r or {"__none__": 0.0}) for q, r in run.items()}
        res = evaluate(judged, RanxRun(run), list(METRICS.values()), make_comparable=True)
        out.append({name: float(res[measure]) for name, measure in METRICS.items()})
    return out


def tune(hybrid: Any, queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]],
         metric: str = DEFAULT_METRIC, configs: Sequence[FusionConfig] | None = None,
         to_target: Callable[[Run], Run] | None = None, progress: Callable[[int, int], None] | None = None
         ) -> TuneResult:
    """The grid's best fusion on these labelled queries (ties: the one nearest the built-in default)."""
    if metric not in METRICS:
        raise TuningError(f"unknown metric {metric!r}: use one of {', '.join(METRICS)}")
    configs = list(configs or grid())
    if len({c.depth for c in configs}) != 1:
        raise TuningError("every fusion setting compared must use the same candidate depth")
    judged = {q: t for q, t in queries.items() if qrels.get(q)}
    if not judged:
        raise TuningError("no query has a relevant document: nothing to tune on")
    baseline = FusionConfig(depth=configs[0].depth)
    if baseline not in configs:
        configs.append(baseline)
    qids, sparse, dense = collect(hybrid, judged, configs[0].depth, progress=progress)
    scores = evaluate_configs(qids, sparse, dense, qrels, configs, to_target)
    table = list(zip(configs, scores))

    def key(item: tuple[FusionConfig, dict[str, float]]) -> tuple:
        c, m = item
        near = -abs(c.weights[0] - baseline.weights[0]) if c.method == "convex" else -1.0
        return (round(m[metric], 9), c.method == baseline.method, c.norm == baseline.norm, near)

    best = max(table, key=key)[0]
    return TuneResult(metric, best, baseline, table, len(qids))


# -- the stored choice --------------------------------------------------------------------------------
class FusionChoice(BaseModel):
    """One tuned fusion, for one encoder (fingerprint) and one set of index scoring settings."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    encoder_fingerprint: str
    scoring: dict[str, Any]
    fusion: dict[str, Any]
    metric: str
    value: float
    baseline_value: float
    dataset: str
    queries: int
    documents: int = 0
    created_at: str = ""

    def config(self) -> FusionConfig:
        return FusionConfig(**{**self.fusion, "weights": tuple(self.fusion["weights"])})

    def matches(self, fingerprint: str, scoring: Mapping[str, Any]) -> bool:
        return self.encoder_fingerprint == fingerprint and _same(self.scoring, scoring)

    @classmethod
    def from_result(cls, result: TuneResult, fingerprint: str, scoring: Mapping[str, Any], dataset: str,
                    documents: int = 0) -> "FusionChoice":
        return cls(encoder_fingerprint=fingerprint, scoring=dict(scoring), fusion=result.best.to_dict(),
                   metric=result.metric, value=result.value(result.best)[result.metric],
                   baseline_value=result.value(result.baseline)[result.metric], dataset=dataset,
                   queries=result.queries, documents=documents,
                   created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return json.dumps(dict(a), sort_keys=True) == json.dumps(dict(b), sort_keys=True)


def cache_path(fingerprint: str) -> Path:
    """Where choices for a model folder vfr must not write go: `$VFR_FUSION_DIR` (tests point it at an
    empty folder), else `$VFR_CACHE/fusion` (default ~/.cache/vfr/fusion)."""
    from vfr.retrieve.encoder_fingerprint import vfr_cache_dir

    folder = Path(os.environ["VFR_FUSION_DIR"]) if os.environ.get("VFR_FUSION_DIR") else vfr_cache_dir() / "fusion"
    return folder / f"{fingerprint.split(':')[-1][:32]}.json"


def choice_path(spec: Any) -> Path:
    """Where a choice for this encoder is saved: its own folder if vfr may write there, else the cache."""
    from vfr.retrieve.encoder_backends import ours_to_write

    folder = Path(spec.location)
    return folder / FILE if ours_to_write(folder) else cache_path(spec.fingerprint)


def read_choices(path: Path) -> list[FusionChoice]:
    if not path.is_file():
        return []
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or doc.get("format") != FILE_FORMAT:
            raise ValueError(f"not a fusion file of format {FILE_FORMAT}")
        return [FusionChoice.model_validate(c) for c in doc.get("choices", [])]
    except (ValueError, ValidationError, UnicodeDecodeError) as e:
        first = str(e).splitlines()[0]
        raise TuningError(f"{path} is damaged ({first}); delete it, or run `vfr tune` again to rewrite it") from None


def save_choice(spec: Any, choice: FusionChoice, path: Path | None = None) -> Path:
    """Add `choice` to the encoder's fusion file, replacing one for the same fingerprint and scoring (and,
    in the model's own folder, any for weights the folder no longer holds). Atomic."""
    path = path or choice_path(spec)
    kept = [c for c in read_choices(path)
            if not c.matches(choice.encoder_fingerprint, choice.scoring)
            and c.encoder_fingerprint == choice.encoder_fingerprint]
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"format": FILE_FORMAT, "note": "fusion tuned for this encoder by `vfr tune` / `vfr calibrate`; "
           "not part of the model's fingerprint", "choices": [c.model_dump() for c in [*kept, choice]]}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def find_choice(spec: Any, scoring: Mapping[str, Any]) -> tuple[FusionChoice, Path] | None:
    """The stored choice for this encoder content and scoring: the model folder's, then the cache's."""
    for path in (Path(spec.location) / FILE, cache_path(spec.fingerprint)):
        for choice in reversed(read_choices(path)):
            if choice.matches(spec.fingerprint, scoring):
                return choice, path
    return None


def default_fusion(spec: Any, scoring: Mapping[str, Any]) -> tuple[FusionConfig, dict[str, Any]]:
    """The fusion an index over this encoder and scoring uses by default, and where it came from
    (`fusion_source` in the manifest): the tuned choice if one matches, else the built-in default."""
    found = find_choice(spec, scoring)
    if found is None:
        return FusionConfig(), {"kind": "built-in"}
    choice, path = found
    return choice.config(), {"kind": "tuned", "encoder_fingerprint": choice.encoder_fingerprint,
                             "scoring": choice.scoring, "dataset": choice.dataset, "metric": choice.metric,
                             "value": choice.value, "baseline_value": choice.baseline_value,
                             "queries": choice.queries, "file": str(path), "created_at": choice.created_at}


def manifest_fusion(manifest: Mapping[str, Any]) -> FusionConfig:
    """The default fusion a manifest records, used only if it was tuned for the index's own encoder and
    scoring settings (a stale or foreign choice falls back to the built-in default)."""
    stored = manifest.get("fusion_default")
    source = manifest.get("fusion_source") or {}
    if not stored:
        return FusionConfig()
    if source.get("kind") == "tuned":
        from vfr.retrieve.writer import IndexConfig

        fingerprint = (manifest.get("encoder") or {}).get("fingerprint")
        try:
            scoring = IndexConfig(**manifest.get("config", {})).scoring()
        except (TypeError, ValueError):
            return FusionConfig()
        if source.get("encoder_fingerprint") != fingerprint or not _same(scoring, source.get("scoring") or {}):
            return FusionConfig()
    return FusionConfig(**{**stored, "weights": tuple(stored["weights"])})
