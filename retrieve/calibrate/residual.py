"""Calibration for the hybrid: the dense side learns what BM25 does not already get right.

Plain calibration trains the encoder to rank alone, but it is served inside the fusion, beside BM25. With
`vfr calibrate --lexical-weight W` every candidate's logit in the in-batch contrastive loss is the hybrid's
score instead of the cosine alone: cos(q, d) + w · z_bm25(q, d), where z_bm25 is the query's BM25 score of d
standardised over the training documents (as the fusion standardises each side), and w puts W on the
fusion's scale: the fusion adds W · z_bm25 to (1 − W) · z_dense, so in cosine units w = W / (1 − W) · σ,
σ the spread of the base encoder's cosines of a query over the documents. A document BM25 already ranks
far above the negatives then needs little help from the encoder, and one BM25 puts below a negative needs
more: the residual idea of CLEAR (Gao et al. 2021, "Complement lexical retrieval model with semantic
residual embeddings"). BM25 is computed once, before training, with the engine's analyser and parameters.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from vfr.retrieve.calibrate.pairs import Pair

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer


def bm25_z(pairs: Sequence[Pair]) -> tuple[np.ndarray, list[list[float]]]:
    """(Z, labels): Z[i, j] the BM25 of distinct query i for distinct document j (every positive and
    negative text of `pairs`), standardised per query; each pair's label is [its query row, its positive's
    column, its negative's column or -1] (floats, as the trainer passes labels)."""
    from vfr.retrieve import lucene
    from vfr.retrieve.bm25 import TextsBm25
    from vfr.retrieve.writer import IndexConfig

    queries = list(dict.fromkeys(p.query for p in pairs))
    docs = list(dict.fromkeys([*(p.document for p in pairs), *(p.negative for p in pairs if p.negative)]))
    config = IndexConfig()
    bm25 = TextsBm25(lucene.analyse(docs), config.k1, config.b)
    z = standardise(np.vstack([bm25.score(terms) for terms in lucene.query_terms_batch(queries)]))
    q_at, d_at = {q: i for i, q in enumerate(queries)}, {d: j for j, d in enumerate(docs)}
    labels = [[float(q_at[p.query]), float(d_at[p.document]), float(d_at[p.negative]) if p.negative else -1.0]
              for p in pairs]
    return z, labels


def standardise(scores: np.ndarray) -> np.ndarray:
    """Each row minus its mean over its standard deviation; a constant row (no query term in any document)
    is all zeros."""
    std = scores.std(axis=1, keepdims=True)
    return np.where(std > 0, (scores - scores.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1), 0
                    ).astype(np.float32)


def cosine_spread(model: "SentenceTransformer", pairs: Sequence[Pair], batch_size: int = 64) -> float:
    """σ: the mean over queries of the standard deviation of a query's cosines with the documents."""
    queries = list(dict.fromkeys(p.query for p in pairs))
    docs = list(dict.fromkeys(p.document for p in pairs))
    enc = [model.encode(t, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                        show_progress_bar=False) for t in (queries, docs)]
    return float((enc[0] @ enc[1].T).std(axis=1).mean())


def to_cosine_units(weight: float, spread: float) -> float:
    """The fusion's BM25 weight W (of W · z_bm25 + (1 − W) · z_dense) as a cosine offset per unit of z_bm25."""
    if not 0 <= weight < 1:
        raise ValueError("the lexical weight is the fusion's BM25 weight: at least 0 and below 1")
    return weight / (1 - weight) * spread


def residual_loss(model: "SentenceTransformer", scale: float, weight: float, z: np.ndarray):
    """In-batch contrastive loss over hybrid scores, cos + `weight` · Z (a torch module the trainer calls with
    the (anchor, positive[, negative]) features and `bm25_z`'s labels)."""
    import torch
    import torch.nn.functional as F

    table = torch.from_numpy(z)

    class ResidualLoss(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model, self.scale, self.weight = model, scale, weight

        def forward(self, sentence_features: Iterable[dict[str, Any]], labels: "torch.Tensor") -> "torch.Tensor":
            emb = [F.normalize(self.model(f)["sentence_embedding"], dim=-1) for f in sentence_features]
            q, candidates = emb[0], torch.cat(emb[1:])
            idx = labels.long()
            cols = idx[:, 1] if len(emb) == 2 else torch.cat([idx[:, 1], idx[:, 2]])
            lexical = table[idx[:, 0]][:, cols].to(q.device, q.dtype)
            logits = self.scale * (q @ candidates.T + self.weight * lexical)
            return F.cross_entropy(logits, torch.arange(len(q), device=logits.device))

        def get_config_dict(self) -> dict[str, Any]:
            return {"scale": self.scale, "lexical_weight_cosine_units": self.weight}

    return ResidualLoss()
