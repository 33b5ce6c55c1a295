"""Exact BM25 from forward indexes, with live statistics: the score Lucene would give on a fresh build of
exactly the live documents in scope.

Lucene counts deleted documents in its collection statistics until segments merge, and it has no notion
of a tenant's statistics; so the sparse backend takes Lucene's top candidates and rescores them here. Each
index segment keeps a forward index (term counts per row) written from the same analyser's tokens; the
formula is Lucene's BM25Similarity:

    score(d, q) = Σ_t boost_t · idf_t · (1 − 1 / (1 + tf_{t,d} · normInv_d))
    idf_t       = ln(1 + (docCount − df_t + 0.5) / (df_t + 0.5))
    normInv_d   = 1 / (k1 · ((1 − b) + b · L(d) / avgdl)),   avgdl = Σ tf / docCount

with docCount, df and Σ tf over the live documents in scope, and L(d) the length after Lucene's one-byte
norm encoding (SmallFloat.intToByte4, ported below and checked against Lucene in the tests).
Files: `forward.npz` (CSR term counts, raw lengths, vocabulary; no pickle).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import sparse as sp

FILE = "forward.npz"


# -- Lucene's SmallFloat (org.apache.lucene.util.SmallFloat), for document-length norms ---------------
def _long_to_int4(i: int) -> int:
    bits = i.bit_length()
    if bits < 4:
        return i
    shift = bits - 4
    return ((i >> shift) & 0x07) | ((shift + 1) << 3)


def _int4_to_long(i: int) -> int:
    bits, shift = i & 0x07, (i >> 3) - 1
    return bits if shift == -1 else (bits | 0x08) << shift


_NUM_FREE_VALUES = 255 - _long_to_int4(2**31 - 1)


def int_to_byte4(i: int) -> int:
    return i if i < _NUM_FREE_VALUES else _NUM_FREE_VALUES + _long_to_int4(i - _NUM_FREE_VALUES)


def byte4_to_int(b: int) -> int:
    return b if b < _NUM_FREE_VALUES else min(_NUM_FREE_VALUES + _int4_to_long(b - _NUM_FREE_VALUES), 2**31 - 1)


_LENGTH_TABLE = np.array([byte4_to_int(b) for b in range(256)], dtype=np.float32)


def quantise(lengths: np.ndarray) -> np.ndarray:
    """Document lengths as Lucene's norms see them (one byte each, decoded)."""
    distinct, inverse = np.unique(np.asarray(lengths, dtype=np.int64), return_inverse=True)
    codes = np.array([int_to_byte4(int(n)) for n in distinct], dtype=np.int64)
    return _LENGTH_TABLE[codes][inverse] if len(distinct) else np.zeros(0, dtype=np.float32)


# -- one segment's forward index -----------------------------------------------------------------------
def field_file(field: str | None) -> str:
    """The forward index file of the whole text (None) or of one BM25 field (retrieve/fields.py)."""
    return FILE if field is None else f"forward-{field}.npz"


def save_forward(folder: Path, token_lists: Sequence[Sequence[str]], file: str = FILE) -> None:
    vocab: dict[str, int] = {}
    indptr, indices, counts, lengths = [0], [], [], []
    for tokens in token_lists:
        for term, count in Counter(tokens).items():
            indices.append(vocab.setdefault(term, len(vocab)))
            counts.append(count)
        indptr.append(len(indices))
        lengths.append(len(tokens))
    terms = sorted(vocab, key=vocab.__getitem__)
    np.savez(folder / file, indptr=np.asarray(indptr, dtype=np.int64), indices=np.asarray(indices, dtype=np.int32),
             counts=np.asarray(counts, dtype=np.float32), lengths=np.asarray(lengths, dtype=np.int64),
             vocab=np.asarray(terms, dtype=str))


class ForwardSegment:
    """Term counts of one segment's rows (immutable once written)."""

    def __init__(self, folder: Path, file: str = FILE) -> None:
        with np.load(folder / file, allow_pickle=False) as z:
            self.lengths = z["lengths"]
            vocab = z["vocab"].tolist()
            self.tf = sp.csr_matrix((z["counts"], z["indices"], z["indptr"]), shape=(len(self.lengths), len(vocab)))
        self.vocab = {t: i for i, t in enumerate(vocab)}
        self.qlengths = quantise(self.lengths)
        self.rows = len(self.lengths)

    def terms_of(self, rows: np.ndarray) -> list[Counter[str]]:
        """The term counts of these rows (for merging segments)."""
        inv = {i: t for t, i in self.vocab.items()}
        out = []
        for r in rows:
            start, end = self.tf.indptr[r], self.tf.indptr[r + 1]
            out.append(Counter({inv[int(c)]: int(n) for c, n in zip(self.tf.indices[start:end], self.tf.data[start:end])}))
        return out

    def subset_stats(self, mask: np.ndarray) -> "SegmentStats":
        """docCount, Σ length and per-term document frequency over the rows where `mask` is True."""
        lengths = self.lengths[mask]
        sub = self.tf[np.flatnonzero(mask)]
        df = np.bincount(sub.indices, minlength=self.tf.shape[1]).astype(np.int64)
        return SegmentStats(int((lengths > 0).sum()), int(lengths.sum()), df)


@dataclass(frozen=True)
class SegmentStats:
    doc_count: int
    total_length: int
    df: np.ndarray  # per local vocabulary column


@dataclass(frozen=True)
class TermStats:
    """Statistics for one query over a set of segments: docCount, avgdl and df of each query term."""

    doc_count: int
    avgdl: float
    df: np.ndarray  # aligned with the query's term list

    def idf(self) -> np.ndarray:
        return np.log(1 + (self.doc_count - self.df + 0.5) / (self.df + 0.5))


def term_stats(names: Sequence[str], segments: Sequence[ForwardSegment], stats: Sequence[SegmentStats]) -> TermStats:
    doc_count = sum(s.doc_count for s in stats)
    total = sum(s.total_length for s in stats)
    df = np.zeros(len(names), dtype=np.int64)
    for seg, st in zip(segments, stats):
        cols = np.array([seg.vocab.get(t, -1) for t in names], dtype=np.int64)
        if len(st.df):  # a segment whose field is empty everywhere has no vocabulary
            df += np.where(cols >= 0, st.df[np.maximum(cols, 0)], 0)
    return TermStats(doc_count, float(np.float32(total / doc_count)) if doc_count else 0.0, df)


class Bm25Scorer:
    """Exact BM25 over rows of several segments, given the statistics of the live documents in scope."""

    def __init__(self, k1: float, b: float) -> None:
        self.k1, self.b = np.float32(k1), np.float32(b)

    def score(self, terms: Counter[str], segments: Sequence[ForwardSegment], stats: TermStats,
              rows: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Scores of `rows[i]` of `segments[i]` (float32) for analysed query terms (term → boost), where
        `stats` was computed for `list(terms)`."""
        return [c.sum(axis=1, dtype=np.float32) for c in self.contributions(terms, segments, stats, rows)]

    def contributions(self, terms: Counter[str], segments: Sequence[ForwardSegment], stats: TermStats,
                      rows: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Per segment, a (rows × query terms) float32 matrix: each term's part of each row's score (what
        "why it matched" shows; the score is the row sum)."""
        out = [np.zeros((len(r), len(terms)), dtype=np.float32) for r in rows]
        if not terms or stats.doc_count == 0:
            return out
        names = list(terms)
        avgdl = np.float32(stats.avgdl)
        weight = np.array([terms[t] for t in names], dtype=np.float32) * stats.idf().astype(np.float32)
        for i, (seg, r) in enumerate(zip(segments, rows)):
            cols = np.array([seg.vocab.get(t, -1) for t in names], dtype=np.int64)
            present = np.flatnonzero(cols >= 0)
            if not len(r) or not len(present):
                continue
            tf = seg.tf[r][:, cols[present]].toarray().astype(np.float32)
            norm_inv = (np.float32(1) / (self.k1 * ((np.float32(1) - self.b)
                                                    + self.b * seg.qlengths[r] / avgdl))).astype(np.float32)
            w = weight[present]
            per_term = w - w / (np.float32(1) + tf * norm_inv[:, None])
            out[i][:, present] = np.where(tf > 0, per_term, np.float32(0))
        return out


class TextsBm25:
    """Exact BM25 over a list of analysed texts held in memory, without an index (the engine's formula and
    statistics: calibration for the hybrid, the estimate scripts)."""

    def __init__(self, token_lists: Sequence[Sequence[str]], k1: float, b: float) -> None:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:  # the forward format is the segments' own
            save_forward(Path(tmp), token_lists)
            self.segment = ForwardSegment(Path(tmp))
        self.stats = self.segment.subset_stats(np.ones(self.segment.rows, dtype=bool))
        self.rows = np.arange(self.segment.rows)
        self.scorer = Bm25Scorer(k1, b)

    def score(self, terms: Counter[str]) -> np.ndarray:
        """Every text's BM25 (float32) for analysed query terms (term → boost); zeros for no terms."""
        if not terms:
            return np.zeros(self.segment.rows, dtype=np.float32)
        stats = term_stats(list(terms), [self.segment], [self.stats])
        return self.scorer.score(terms, [self.segment], stats, [self.rows])[0]


def bound_ratio(exact: TermStats, lucene: TermStats) -> float:
    """A factor R with exact_score(d) ≤ R · lucene_score(d) for every document, where Lucene scored with
    `lucene` statistics (all rows, deleted ones included, any scope): per term the idf ratio, times the
    avgdl ratio (a term's tf part x/(1+x) grows at most linearly when its length norm shrinks), plus float
    slack. Tells when Lucene's top candidates provably contain the exact top k."""
    if exact.doc_count == 0 or lucene.doc_count == 0:
        return 1.0
    seen = lucene.df > 0
    ratio = 1.0
    if seen.any():
        ratio = float(np.max(exact.idf()[seen] / lucene.idf()[seen], initial=1.0))
    return ratio * max(1.0, exact.avgdl / lucene.avgdl) * (1 + 1e-4)
