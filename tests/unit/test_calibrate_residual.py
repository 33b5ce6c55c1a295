"""The arithmetic of calibration for the hybrid (retrieve/calibrate/residual.py): standardised BM25, the
fusion weight in cosine units, and the loss over hybrid scores (a fake encoder returning fixed vectors)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vfr.retrieve.calibrate.residual import residual_loss, standardise, to_cosine_units


def test_standardise_rows_and_constant_rows():
    z = standardise(np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]], dtype=np.float32))
    assert np.allclose(z[0].mean(), 0, atol=1e-6) and np.allclose(z[0].std(), 1, atol=1e-6)
    assert np.array_equal(z[1], np.zeros(3))


def test_fusion_weight_in_cosine_units():
    assert to_cosine_units(0.0, 0.1) == 0.0
    assert math.isclose(to_cosine_units(0.5, 0.1), 0.1) and math.isclose(to_cosine_units(0.1, 0.09), 0.01)
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="BM25 weight"):
            to_cosine_units(bad, 0.1)


class FixedEncoder:
    """Returns the vectors a feature dict carries, as a sentence-transformers model returns embeddings."""

    def __call__(self, features):
        return {"sentence_embedding": features["v"]}


def _batch():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[0.6, 0.8], [0.8, 0.6]])  # each query's positive is the less similar document
    return [{"v": q}, {"v": p}]


def test_without_bm25_it_is_the_in_batch_contrastive_loss():
    features = _batch()
    z = np.zeros((2, 2), dtype=np.float32)
    loss = residual_loss(FixedEncoder(), 20.0, 0.5, z)(features, torch.tensor([[0, 0, -1], [1, 1, -1]]))
    q, p = (f["v"] for f in features)
    assert torch.isclose(loss, F.cross_entropy(20.0 * q @ p.T, torch.arange(2)))


def test_bm25_that_separates_the_positive_lowers_the_loss_and_one_against_it_raises_it():
    features, labels = _batch(), torch.tensor([[0, 0, -1], [1, 1, -1]])
    favours = np.array([[1.0, -1.0], [-1.0, 1.0]], dtype=np.float32)  # BM25 ranks each query's positive first
    plain = residual_loss(FixedEncoder(), 20.0, 0.0, favours)(features, labels)
    helped = residual_loss(FixedEncoder(), 20.0, 0.05, favours)(features, labels)
    hurt = residual_loss(FixedEncoder(), 20.0, 0.05, -favours)(features, labels)
    assert helped < plain < hurt


def test_hard_negatives_are_candidates_with_their_own_bm25():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[0.8, 0.6], [0.6, 0.8]])
    n = torch.tensor([[0.9, 0.1], [0.1, 0.9]])
    n = F.normalize(n, dim=-1)
    z = np.array([[2.0, 0.0, -2.0, 0.0], [0.0, 2.0, 0.0, -2.0]], dtype=np.float32)  # columns: p0 p1 n0 n1
    labels = torch.tensor([[0, 0, 2], [1, 1, 3]])
    loss = residual_loss(FixedEncoder(), 20.0, 0.05, z)([{"v": q}, {"v": p}, {"v": n}], labels)
    expected = F.cross_entropy(20.0 * (q @ torch.cat([p, n]).T + 0.05 * torch.from_numpy(z)), torch.arange(2))
    assert torch.isclose(loss, expected)
