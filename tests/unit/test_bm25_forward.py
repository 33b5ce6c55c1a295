"""The forward-index BM25 (hand-computed Lucene BM25 on a toy corpus; Lucene itself is compared in
tests/integration) and the index-format staleness rule. No JVM, no model."""
import math
from collections import Counter

import numpy as np
import pytest

from vfr.retrieve.bm25_forward import ForwardBuilder, ForwardIndex
from vfr.retrieve.index import INDEX_FORMAT, is_stale


def lucene_bm25(tf: int, dl: int, df: int, n: int, avgdl: float, k1=0.9, b=0.4, boost=1.0) -> float:
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    return boost * idf * (1 - 1 / (1 + tf / (k1 * ((1 - b) + b * dl / avgdl))))


@pytest.fixture
def forward(tmp_path):
    fb = ForwardBuilder()
    for toks in (["dog", "cat"], ["dog", "dog", "bird"], [], ["fish"]):
        fb.add(toks)
    fb.save(tmp_path)
    return ForwardIndex(tmp_path, ["d1", "d2", "empty", "d4"], 0.9, 0.4, quantise=lambda x: x)


def test_scores_match_lucene_formula(forward):
    avgdl = 6 / 3  # the empty document is not counted, as in Lucene's docCount
    s = forward.score(Counter({"dog": 1}), ["d1", "d2", "empty", "d4"])
    assert s["d1"] == pytest.approx(lucene_bm25(1, 2, 2, 3, avgdl), rel=1e-6)
    assert s["d2"] == pytest.approx(lucene_bm25(2, 3, 2, 3, avgdl), rel=1e-6)
    assert s["empty"] == 0.0 and s["d4"] == 0.0


def test_boost_unknown_terms_and_ids(forward):
    s = forward.score(Counter({"dog": 2, "bird": 1, "zebra": 3}), ["d2", "nope"])
    expected = lucene_bm25(2, 3, 2, 3, 2.0, boost=2) + lucene_bm25(1, 3, 1, 3, 2.0)
    assert s["d2"] == pytest.approx(expected, rel=1e-6)
    assert s["nope"] == 0.0
    assert forward.score(Counter({"zebra": 1}), ["d1"]) == {"d1": 0.0}
    assert forward.score(Counter(), []) == {}


def test_quantised_lengths_are_used(tmp_path):
    fb = ForwardBuilder()
    fb.add(["a"] * 3 + ["b"] * 37)
    fb.add(["a"])
    fb.save(tmp_path)
    exact = ForwardIndex(tmp_path, ["x", "y"], 0.9, 0.4, quantise=lambda x: x)
    coarse = ForwardIndex(tmp_path, ["x", "y"], 0.9, 0.4, quantise=lambda x: np.where(x > 24, 40 - 8, x))
    assert coarse.score(Counter({"a": 1}), ["x"])["x"] > exact.score(Counter({"a": 1}), ["x"])["x"]


def test_ids_must_match_rows(tmp_path):
    fb = ForwardBuilder()
    fb.add(["a"])
    fb.save(tmp_path)
    with pytest.raises(ValueError, match="rebuild the index"):
        ForwardIndex(tmp_path, ["x", "y"], 0.9, 0.4, quantise=lambda x: x)


def test_index_from_an_older_format_is_stale():
    fp = {"digest": "abc", "documents": 3}
    manifest = {"store": dict(fp)}
    assert is_stale(manifest, fp)  # no index_format: built before the forward index existed
    assert not is_stale({**manifest, "index_format": INDEX_FORMAT}, fp)
    assert is_stale({**manifest, "index_format": INDEX_FORMAT}, {**fp, "digest": "changed"})
