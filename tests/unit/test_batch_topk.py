"""The top-k selections of the batch paths: block-maxima bounds never drop a true top-k entry, ties go by
id (BM25) as `hits_from_scores` orders them, hidden (-inf) rows never come back (dense)."""
import numpy as np

from vfr.retrieve.bm25_batch import top_k
from vfr.retrieve.dense import top_rows
from vfr.retrieve.types import hits_from_scores


def test_bm25_top_k_equals_a_full_sort_with_ties_by_id():
    rng = np.random.default_rng(0)
    ids = np.asarray([f"d{i:05d}" for i in rng.permutation(5000)], dtype=object)
    scores = np.round(rng.random((6, 5000)), 2).astype(np.float32)  # many exact ties
    scores[rng.random((6, 5000)) < 0.6] = 0  # no match
    scores[5] = 0  # a query that matches nothing
    for k in (1, 10, 100, 4999, 6000):
        for row, (pos, vals) in zip(scores, top_k(scores, ids, k)):
            want = hits_from_scores({d: float(s) for d, s in zip(ids, row) if s > 0}, k)
            assert ids[pos].tolist() == [h.id for h in want]
            assert np.allclose(vals, [h.score for h in want])


def test_dense_top_rows_equals_a_full_sort_and_skips_hidden_rows():
    rng = np.random.default_rng(1)
    scores = rng.standard_normal((5, 3000)).astype(np.float32)
    scores[:, rng.choice(3000, 2990, replace=False)] = -np.inf  # only 10 visible rows
    scores[1:] = rng.standard_normal((4, 3000)).astype(np.float32)
    for k in (1, 10, 50):
        vals, rows = top_rows(scores.copy(), k)
        for q in range(5):
            finite = np.flatnonzero(np.isfinite(scores[q]))
            want = finite[np.argsort(-scores[q, finite], kind="stable")][:k]
            got = rows[q][rows[q] >= 0]
            assert np.allclose(np.sort(scores[q, got])[::-1], scores[q, want])
            assert len(got) == min(k, len(finite)) and np.all(np.isneginf(vals[q][len(got):]))


def test_block_bound_never_exceeds_the_kth_largest_entry():
    from vfr.retrieve.topk import BLOCK, block_bound

    rng = np.random.default_rng(2)
    for n in (BLOCK * 10, BLOCK * 10 + 7, 5):   # whole blocks, a short last block, fewer columns than a block
        scores = rng.standard_normal((4, n)).astype(np.float32)
        for k in (1, 3, 11):
            bound = block_bound(scores, k, floor=-np.inf)
            blocks = -(-n // BLOCK)
            for row, t in zip(scores, bound):
                if k > blocks:
                    assert np.isneginf(t)   # too few blocks: the floor
                else:
                    assert t <= np.sort(row)[::-1][k - 1] and t > -np.inf
    assert np.all(block_bound(scores, 1, floor=0.5, min_blocks=1000) == 0.5)
