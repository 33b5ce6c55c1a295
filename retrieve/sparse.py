"""Sparse retrieval: Lucene BM25 through Pyserini.

User text never reaches Lucene's query parser: Anserini's bag-of-words generator analyses it with
the index's own analyser (Porter stemming, stopwords) into term queries, and we lift Lucene's
1,024-clause limit, so any string — Lucene syntax, NUL bytes, emoji, 10,000 characters — is safe.
`score()` builds the same bag of terms itself, filtered to the given documents.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from retrieve.jvm import ensure_jvm
from retrieve.types import Document, Hit, Run, clean_text

MAX_CLAUSES = 1 << 16  # distinct query terms kept (most frequent first); Lucene's default of 1,024 is lifted
_ID_CHUNK = 512  # documents per filtered scoring query
_INDEX_ARGS = ["-storeRaw", "-storePositions", "-storeDocvectors", "-threads", "1"]


def build_sparse(docs: Iterable[Document], out_dir: Path, batch_size: int = 5000,
                 on_batch=None) -> int:
    """Write a Lucene index of `docs` into `out_dir` (which must not exist). Returns the count."""
    ensure_jvm()
    from pyserini.index.lucene import LuceneIndexer

    writer = LuceneIndexer(str(out_dir), args=["-index", str(out_dir), *_INDEX_ARGS])
    n, batch = 0, []
    try:
        for doc in docs:
            batch.append({"id": doc.id, "contents": clean_text(doc.text)})
            if len(batch) >= batch_size:
                writer.add_batch_dict(batch)
                n += len(batch)
                on_batch and on_batch(len(batch))
                batch = []
        if batch:
            writer.add_batch_dict(batch)
            n += len(batch)
            on_batch and on_batch(len(batch))
    finally:
        writer.close()
    return n


class LuceneSearcher:
    """BM25 over a Lucene index. `search`, `batch_search` and `score` share one query builder."""

    def __init__(self, index_dir: Path, k1: float, b: float) -> None:
        ensure_jvm()
        from jnius import autoclass
        from pyserini.analysis import Analyzer, get_lucene_analyzer
        # Anserini's searcher directly: pyserini.search.lucene would import torch and transformers (~5 s).
        self._java = autoclass("io.anserini.search.SimpleSearcher")(str(index_dir))
        self._java.set_bm25(float(k1), float(b))
        self._analyzer = Analyzer(get_lucene_analyzer())
        autoclass("org.apache.lucene.search.IndexSearcher").setMaxClauseCount(MAX_CLAUSES + _ID_CHUNK + 1)
        # score() parses one query string (terms already analysed, so the keyword analyser keeps them as is):
        # one JNI call instead of hundreds of object constructions per query.
        self._parser = autoclass("org.apache.lucene.queryparser.classic.QueryParser")(
            "contents", autoclass("org.apache.lucene.analysis.core.KeywordAnalyzer")())
        self.num_docs = int(self._java.get_total_num_docs())

    def terms(self, query: str) -> Counter[str]:
        """Analysed query terms with their counts, capped at MAX_CLAUSES distinct terms."""
        terms = Counter(self._analyzer.analyze(clean_text(query)))
        if len(terms) > MAX_CLAUSES:
            terms = Counter(dict(terms.most_common(MAX_CLAUSES)))
        return terms

    def _scoring_query(self, terms: Counter[str], doc_ids: Sequence[str]):
        """BM25 over `terms` (boosted by count, like the search path), restricted to `doc_ids` at zero weight."""
        bag = " ".join(f'contents:{_quote(t)}' + (f"^{c}" if c > 1 else "") for t, c in terms.items())
        ids = " ".join(f"id:{_quote(d)}" for d in doc_ids)
        return self._parser.parse(f"+({bag}) +({ids})^0")

    def search(self, query: str, k: int = 10) -> list[Hit]:
        text = clean_text(query)
        if k <= 0 or not text.strip():
            return []
        return [Hit(h.docid, float(h.score), i + 1) for i, h in enumerate(self._java.search(text, k))]

    def batch_search(self, queries: dict[str, str], k: int = 10) -> Run:
        return {qid: {h.id: h.score for h in self.search(text, k)} for qid, text in queries.items()}

    def score(self, query: str, doc_ids: Sequence[str]) -> dict[str, float]:
        """BM25 score of each given document for `query` (0 for a document that matches no term)."""
        scores = dict.fromkeys(doc_ids, 0.0)
        terms = self.terms(query)
        if not terms:
            return scores
        for start in range(0, len(doc_ids), _ID_CHUNK):
            chunk = doc_ids[start:start + _ID_CHUNK]
            for h in self._java.search(self._scoring_query(terms, chunk), len(chunk)):
                scores[h.docid] = float(h.score)
        return scores


def _quote(text: str) -> str:
    """A quoted query-parser literal: only backslash and double quote need escaping inside quotes."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
