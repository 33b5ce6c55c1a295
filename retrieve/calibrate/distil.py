"""Distillation during calibration: a fast student learns a stronger teacher's score margins.

The calibrated mpnet ranks COCO test better than any calibrated MiniLM but encodes 6–7× slower
(docs/encoders.md). With `vfr calibrate --teacher DIR` the student trains on (query, positive, hard
negative) triples with two terms: the in-batch contrastive loss of plain calibration (the other pairs'
documents and every hard negative are candidates) and Margin-MSE (Hofstätter et al., 2020, "Improving
efficient neural ranking models with cross-architecture knowledge distillation"): the squared difference
between the student's and the teacher's margin cos(q, positive) − cos(q, negative), both multiplied by the
contrastive scale so the two terms are of one size. The teacher is only read (its margins are computed
once, before training); serving the student costs what the student costs.

A teacher calibrated on the student's own pairs passes on its fit to them more than better judgement
(docs/distillation.md). Cross-fitting (`--teacher A --teacher B`): each teacher was calibrated without some
of the student's images (`--exclude-groups`), and each triple's margin comes from a teacher that never
trained on its image (`assign_teachers`, from the `train_group_ids` each teacher's calibration.json records),
so every margin is a prediction, not a memory.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from vfr.retrieve.calibrate.card import trained_groups
from vfr.retrieve.calibrate.pairs import Pair

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer


def teacher_margins(teacher: "SentenceTransformer", pairs: Sequence[Pair], batch_size: int = 32) -> list[float]:
    """cos(query, document) − cos(query, negative) under the teacher, one per pair (each distinct text is
    encoded once)."""
    if any(p.negative is None for p in pairs):
        raise ValueError("distillation needs a hard negative on every pair (mine them: --hard-negatives)")
    texts = sorted({t for p in pairs for t in (p.query, p.document, p.negative)})  # type: ignore[misc]
    emb = teacher.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                         show_progress_bar=False)
    at = {t: i for i, t in enumerate(texts)}
    return [float(emb[at[p.query]] @ emb[at[p.document]] - emb[at[p.query]] @ emb[at[p.negative]])  # type: ignore[index]
            for p in pairs]


def assign_teachers(pairs: Sequence[Pair], trained: Mapping[str, set[str]]) -> dict[str, list[int]]:
    """{teacher: indices of the pairs it scores}: each pair goes to the first teacher (in the given order)
    that did not train on the pair's image. Raises if some image was trained on by every teacher."""
    out: dict[str, list[int]] = {t: [] for t in trained}
    missing: set[str] = set()
    for i, p in enumerate(pairs):
        t = next((t for t, groups in trained.items() if p.group not in groups), None)
        if t is None:
            missing.add(p.group)
        else:
            out[t].append(i)
    if missing:
        raise ValueError(f"cross-fitting: every --teacher trained on {len(missing)} of the student's images (e.g. "
                         f"{sorted(missing)[0]}); calibrate each teacher without part of the student's images "
                         "(--exclude-groups) so that every image has a teacher that never saw it")
    return out


def teacher_plan(locations: Mapping[str, str], pairs: Sequence[Pair]) -> dict[str, list[int]]:
    """{teacher: indices of the pairs whose margins it gives}. One teacher: all of them. Several: cross-fitted
    (`assign_teachers`), which needs every teacher's recorded training images (raises ValueError if one does
    not record them or some image has no teacher that never saw it)."""
    if len(locations) == 1:
        return {next(iter(locations)): list(range(len(pairs)))}
    trained = {name: trained_groups(loc) for name, loc in locations.items()}
    unknown = [name for name, groups in trained.items() if groups is None]
    if unknown:
        raise ValueError(f"cross-fitting needs each teacher's training images, and {unknown[0]} does not record "
                         "them (calibration.json train_group_ids, written by `vfr calibrate`): recalibrate it")
    return assign_teachers(pairs, trained)  # type: ignore[arg-type]


def contrastive_margin_loss(model: "SentenceTransformer", scale: float, weight: float):
    """The training loss of a distilled calibration (a torch module the sentence-transformers trainer
    calls with the (anchor, positive, negative) features and the teacher margins as labels)."""
    import torch
    import torch.nn.functional as F

    class ContrastiveMarginLoss(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.scale, self.weight = scale, weight

        def forward(self, sentence_features: Iterable[dict[str, Any]], labels: "torch.Tensor") -> "torch.Tensor":
            q, p, n = (F.normalize(self.model(f)["sentence_embedding"], dim=-1) for f in sentence_features)
            logits = self.scale * q @ torch.cat([p, n]).T
            contrast = F.cross_entropy(logits, torch.arange(len(q), device=logits.device))
            margin = (q * p).sum(-1) - (q * n).sum(-1)
            distil = F.mse_loss(self.scale * margin, self.scale * labels.to(margin.dtype))
            return contrast + self.weight * distil

        def get_config_dict(self) -> dict[str, Any]:
            return {"scale": self.scale, "distil_weight": self.weight}

    return ContrastiveMarginLoss()
