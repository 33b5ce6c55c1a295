"""Distillation during calibration: a fast student learns a stronger teacher's score margins.

The calibrated mpnet ranks COCO test better than any calibrated MiniLM but encodes 6–7× slower
(docs/encoders.md). With `vfr calibrate --teacher DIR` the student trains on (query, positive, hard
negative) triples with two terms: the in-batch contrastive loss of plain calibration (the other pairs'
documents and every hard negative are candidates) and Margin-MSE (Hofstätter et al., 2020, "Improving
efficient neural ranking models with cross-architecture knowledge distillation"): the squared difference
between the student's and the teacher's margin cos(q, positive) − cos(q, negative), both multiplied by the
contrastive scale so the two terms are of one size. The teacher is only read (its margins are computed
once, before training); serving the student costs what the student costs.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Sequence

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
