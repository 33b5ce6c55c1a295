"""Exact BM25 from forward indexes (hand-computed Lucene BM25 on toy segments; Lucene itself is compared
in tests/integration), live statistics over masks, the candidate bound, and the SmallFloat port. No JVM."""
import math
from collections import Counter

import numpy as np
import pytest

from vfr.retrieve import bm25


def lucene_bm25(tf: int, dl: int, df: int, n: int, avgdl: float, k1=0.9, b=0.4, boost=1.0) -> float:
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    return boost * idf * (1 - 1 / (1 + tf / (k1 * ((1 - b) + b * dl / avgdl))))


def segment(tmp_path, name, docs):
    folder = tmp_path / name
    folder.mkdir()
    bm25.save_forward(folder, docs)
    return bm25.ForwardSegment(folder)


def score(terms, segs, masks, rows):
    stats = bm25.term_stats(list(terms), segs, [s.subset_stats(m) for s, m in zip(segs, masks)])
    return bm25.Bm25Scorer(0.9, 0.4).score(terms, segs, stats, rows)


def test_scores_match_lucene_formula_across_segments(tmp_path):
    a = segment(tmp_path, "a", [["dog", "cat"], ["dog", "dog", "bird"]])
    b = segment(tmp_path, "b", [[], ["fish"]])
    live = [np.ones(2, bool), np.ones(2, bool)]
    avgdl = 6 / 3  # the empty document is not counted, as in Lucene's docCount
    (sa, sb) = score(Counter({"dog": 1}), [a, b], live, [np.array([0, 1]), np.array([0, 1])])
    assert sa[0] == pytest.approx(lucene_bm25(1, 2, 2, 3, avgdl), rel=1e-6)
    assert sa[1] == pytest.approx(lucene_bm25(2, 3, 2, 3, avgdl), rel=1e-6)
    assert sb.tolist() == [0.0, 0.0]


def test_texts_bm25_scores_a_list_of_texts_as_one_segment_would():
    texts = [["dog", "cat"], ["dog", "dog", "bird"], ["fish"]]
    scorer = bm25.TextsBm25(texts, 0.9, 0.4)
    got = scorer.score(Counter({"dog": 1, "fish": 2}))
    avgdl = 6 / 3
    assert got[0] == pytest.approx(lucene_bm25(1, 2, 2, 3, avgdl), rel=1e-6)
    assert got[1] == pytest.approx(lucene_bm25(2, 3, 2, 3, avgdl), rel=1e-6)
    assert got[2] == pytest.approx(lucene_bm25(1, 1, 1, 3, avgdl, boost=2.0), rel=1e-6)
    assert scorer.score(Counter()).tolist() == [0.0, 0.0, 0.0]


def test_deleted_rows_leave_the_statistics(tmp_path):
    """Live statistics: a tombstoned row counts for neither docCount, df nor avgdl (Lucene's would)."""
    a = segment(tmp_path, "a", [["dog", "cat"], ["dog", "dog", "bird"], ["dog"] * 9])
    mask = np.array([True, True, False])
    (s,) = score(Counter({"dog": 1}), [a], [mask], [np.array([0])])
    assert s[0] == pytest.approx(lucene_bm25(1, 2, 2, 2, 5 / 2), rel=1e-6)


def test_boost_and_unknown_terms(tmp_path):
    a = segment(tmp_path, "a", [["dog", "cat"], ["dog", "dog", "bird"]])
    (s,) = score(Counter({"dog": 2, "bird": 1, "zebra": 3}), [a], [np.ones(2, bool)], [np.array([1])])
    expected = lucene_bm25(2, 3, 2, 2, 2.5, boost=2) + lucene_bm25(1, 3, 1, 2, 2.5)
    assert s[0] == pytest.approx(expected, rel=1e-6)
    (s,) = score(Counter({"zebra": 1}), [a], [np.ones(2, bool)], [np.array([0])])
    assert s.tolist() == [0.0]


def test_quantised_lengths_are_used(tmp_path):
    a = segment(tmp_path, "a", [["a"] * 3 + ["b"] * 997, ["a"]])
    assert a.qlengths.tolist() == [984.0, 1.0]  # 1000 tokens: Lucene's one-byte norm stores 984


def test_small_float_round_trip_is_monotone():
    decoded = [bm25.byte4_to_int(bm25.int_to_byte4(n)) for n in range(5000)]
    assert decoded[:24] == list(range(24))  # small lengths are exact
    assert all(x <= y for x, y in zip(decoded, decoded[1:]))
    assert all(d <= n for n, d in enumerate(decoded))


def test_bound_ratio_covers_every_document(tmp_path):
    """exact ≤ R · lucene for every document, where 'lucene' statistics also count deleted rows."""
    rng = np.random.default_rng(0)
    vocab = [f"t{i}" for i in range(30)]
    docs = [list(rng.choice(vocab, size=rng.integers(1, 40))) for _ in range(200)]
    a = segment(tmp_path, "a", docs)
    live = rng.random(200) > 0.4
    everything = np.ones(200, bool)
    for _ in range(20):
        terms = Counter(rng.choice(vocab, size=3).tolist())
        names = list(terms)
        exact_stats = bm25.term_stats(names, [a], [a.subset_stats(live)])
        lucene_stats = bm25.term_stats(names, [a], [a.subset_stats(everything)])
        scorer = bm25.Bm25Scorer(0.9, 0.4)
        rows = np.flatnonzero(live)
        exact = scorer.score(terms, [a], exact_stats, [rows])[0]
        lucene = scorer.score(terms, [a], lucene_stats, [rows])[0]
        ratio = bm25.bound_ratio(exact_stats, lucene_stats)
        assert np.all(exact <= ratio * lucene + 1e-6)
