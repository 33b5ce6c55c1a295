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

The grid's best on a few hundred queries is often within noise of the built-in default, and a choice made on
noise moves weight between BM25 and dense in ways that help one description style and hurt another
(docs/fusion.md § Tuning on few queries). So `tune` keeps the built-in default unless the grid's best beats it
significantly on the dev queries (`alpha`, default 0.2), by a paired sign-flip test of the *largest* gain
over the whole grid (`selection_test`): the winner of a grid is chosen on the same queries it is tested on,
and testing it alone against the default would overstate its evidence.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
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
# the grid's best replaces the built-in default only if significant at this level; chosen on validation data
# (benchmarks/guard_check.py, docs/fusion.md § Tuning on few queries)
DEFAULT_ALPHA = 0.2
PERMUTATIONS = 2000   # sign flips of the selection test (p floor 1/2001)


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
    best: FusionConfig                             # the choice: the grid's best if significant, else baseline
    baseline: FusionConfig                         # the built-in default, measured on the same queries
    table: list[tuple[FusionConfig, dict[str, float]]]  # every setting with every metric
    queries: int
    grid_best: FusionConfig | None = None          # the grid's best on the dev queries (None: = best)
    p_value: float | None = None                   # selection test of grid_best over the baseline (None: not run)
    alpha: float = 1.0                             # the level it had to pass (1: no guard)

    def value(self, config: FusionConfig) -> dict[str, float]:
        return next(m for c, m in self.table if c == config)

    @property
    def top(self) -> FusionConfig:
        """The grid's best, whether or not the guard kept it."""
        return self.grid_best or self.best

    @property
    def guarded(self) -> bool:
        """True when the grid's best was not significantly better and the built-in default was kept."""
        return self.top != self.best


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


def per_query_configs(qids: Sequence[str], sparse: Sequence[dict[str, float]], dense: Sequence[dict[str, float]],
                      qrels: Mapping[str, Mapping[str, int]], configs: Sequence[FusionConfig],
                      to_target: Callable[[Run], Run] | None = None) -> list[dict[str, np.ndarray]]:
    """Every metric of METRICS per judged query (one fixed query order) for each fusion setting, on the same
    candidates (ranx)."""
    from ranx import Qrels, Run as RanxRun, evaluate

    judged = Qrels({q: dict(r) for q, r in qrels.items() if q in set(qids)})
    out = []
    for config in configs:
        fused = fuse_batch(sparse, dense, config)
        run: Run = {q: dict(sorted(f.items(), key=lambda kv: (-kv[1], kv[0]))[:100]) for q, f in zip(qids, fused)}
        if to_target:
            run = to_target(run)
        run = {q: (r or {"__none__": 0.0}) for q, r in run.items()}
        res = evaluate(judged, RanxRun(run), list(METRICS.values()), make_comparable=True, return_mean=False)
        out.append({name: np.asarray(res[measure], dtype=float) for name, measure in METRICS.items()})
    return out


def _means(values: Mapping[str, np.ndarray]) -> dict[str, float]:
    return {name: float(v.mean()) if v.size else 0.0 for name, v in values.items()}


def selection_test(gains: np.ndarray, permutations: int = PERMUTATIONS, seed: int = 0) -> float:
    """One-sided p-value that the best of several settings beats a baseline only by chance.

    `gains[i, q]`: setting i's metric minus the baseline's on query q. The statistic is the largest mean gain
    over the settings; its null distribution comes from flipping the sign of every query's gains (all settings
    at once, so their correlation is kept), the max-statistic randomisation test of Westfall & Young (1993)
    behind the paired test of Smucker et al. (2007). Picking the best of the grid on these same queries is
    thereby accounted for, which a paired test of the winner alone would not. Counted as (hits + 1) /
    (permutations + 1) (Phipson & Smyth 2010); seeded, so the same gains always give the same p.
    """
    d = np.atleast_2d(np.asarray(gains, dtype=float))
    if d.size == 0 or d.shape[1] == 0:
        return 1.0
    observed = d.sum(axis=1).max()
    if observed <= 0:
        return 1.0
    tolerance = 1e-9 * np.abs(d).sum(axis=1).max()  # sums in another order may differ in the last bits
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, permutations, 250):  # bounded memory on large query sets
        signs = (rng.integers(0, 2, size=(min(250, permutations - start), d.shape[1]), dtype=np.int8) * 2 - 1)
        hits += int(np.count_nonzero((signs @ d.T).max(axis=1) >= observed - tolerance))
    return (hits + 1) / (permutations + 1)


def preference(config: FusionConfig, value: float, baseline: FusionConfig) -> tuple:
    """Sort key of a setting scoring `value`: the higher the better; ties go to the built-in's method and
    normalisation, then to the weight nearest the built-in's."""
    near = -abs(config.weights[0] - baseline.weights[0]) if config.method == "convex" else -1.0
    return (round(value, 9), config.method == baseline.method, config.norm == baseline.norm, near)


def check_alpha(alpha: float, name: str = "alpha") -> None:
    """The guard's level must be a probability in (0, 1]."""
    if not 0 < alpha <= 1:
        raise TuningError(f"{name} must be in (0, 1], not {alpha}: 0.2 keeps the built-in fusion unless the "
                          "grid's best is significantly better; 1 takes the grid's best whatever")


def tune(hybrid: Any, queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]],
         metric: str = DEFAULT_METRIC, configs: Sequence[FusionConfig] | None = None,
         to_target: Callable[[Run], Run] | None = None, progress: Callable[[int, int], None] | None = None,
         alpha: float = DEFAULT_ALPHA, permutations: int = PERMUTATIONS) -> TuneResult:
    """The grid's best fusion on these labelled queries (ties: the one nearest the built-in default), kept only
    if `selection_test` finds it better than the built-in default at level `alpha` (else the default is the
    choice; `alpha` = 1 takes the grid's best whatever)."""
    if metric not in METRICS:
        raise TuningError(f"unknown metric {metric!r}: use one of {', '.join(METRICS)}")
    check_alpha(alpha)
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
    values = per_query_configs(qids, sparse, dense, qrels, configs, to_target)
    table = list(zip(configs, [_means(v) for v in values]))

    best = max(table, key=lambda item: preference(item[0], item[1][metric], baseline))[0]
    if best == baseline or alpha >= 1:
        return TuneResult(metric, best, baseline, table, len(qids), alpha=alpha)
    base = values[configs.index(baseline)][metric]
    p = selection_test(np.stack([v[metric] - base for v in values]), permutations)
    chosen = best if p < alpha else baseline
    return TuneResult(metric, chosen, baseline, table, len(qids), grid_best=best, p_value=p, alpha=alpha)


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
    p_value: float | None = None          # the selection test of the grid's best over the built-in default
    alpha: float | None = None            # the level it had to pass (None: chosen before the guard existed)
    grid_best: dict[str, Any] | None = None  # the grid's best when the guard kept the built-in default

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
                   created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   p_value=result.p_value, alpha=result.alpha,
                   grid_best=result.top.to_dict() if result.guarded else None)


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
                             "queries": choice.queries, "file": str(path), "created_at": choice.created_at,
                             "p_value": choice.p_value, "alpha": choice.alpha, "grid_best": choice.grid_best}


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
