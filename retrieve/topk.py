"""The bound both batch paths (batch BM25, exact dense) use to rank only a few entries of each score row."""
from __future__ import annotations

import numpy as np

BLOCK = 32  # block maxima give a useful bound when there are well over k blocks


def block_bound(scores: np.ndarray, k: int, floor: float, min_blocks: int = 0) -> np.ndarray:
    """Per row of `scores`, a lower bound of its k-th largest entry: the k-th largest of its blocks' maxima
    (blocks of BLOCK columns, the last one possibly shorter; k blocks each hold an entry at least that large).
    Rows of fewer than max(k, min_blocks) blocks get `floor` (no bound worth the work)."""
    n_q, n = scores.shape
    whole = n - n % BLOCK  # full blocks as a view, the rest as one more block
    nb = whole // BLOCK + (whole < n)
    if k <= 0 or nb < max(k, min_blocks):
        return np.full(n_q, floor, dtype=np.float32)
    maxima = [scores[:, :whole].reshape(n_q, -1, BLOCK).max(axis=2)] if whole else []
    if whole < n:
        maxima.append(scores[:, whole:].max(axis=1, keepdims=True))
    maxima = np.concatenate(maxima, axis=1)
    return np.partition(maxima, nb - k, axis=1)[:, nb - k].astype(np.float32, copy=False)
