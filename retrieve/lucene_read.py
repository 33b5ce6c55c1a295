"""Reading the Lucene index of one index segment: open the commit a generation names, and run BM25 queries
over all of a generation's segments as one Lucene MultiReader (retrieve/snapshot.py)."""
from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from vfr.retrieve.lucene import J, LuceneError, cast, open_directory, find_commit, java_errors


class OpenSegmentReader:
    """A Lucene DirectoryReader of one commit, with the directory it holds open."""

    def __init__(self, path: Path, commit: str) -> None:
        self.path, self.commit = path, commit
        self.directory = open_directory(path)
        try:
            with java_errors(path):
                self.reader = J().DR.open(find_commit(self.directory, commit, path))
        except Exception:
            self.directory.close()
            raise
        self.max_doc = int(self.reader.maxDoc())

    def close(self) -> None:
        try:
            self.reader.close()
        finally:
            self.directory.close()


def open_reader(path: Path, commit: str) -> OpenSegmentReader:
    if not path.is_dir():
        raise LuceneError(f"Lucene segment {path} is missing: the index is damaged; run `vfr index --full`")
    return OpenSegmentReader(path, commit)


class MultiSearcher:
    """BM25 over several segment readers as one Lucene MultiReader; hits are (global doc number, score)."""

    def __init__(self, readers: Sequence[OpenSegmentReader], k1: float, b: float) -> None:
        j = J()
        subs = [cast("org.apache.lucene.index.IndexReader", r.reader) for r in readers]
        self._multi = j.MultiReader(subs, False)  # the segment readers are closed by their owner
        self._searcher = j.IndexSearcher(cast("org.apache.lucene.index.IndexReader", self._multi))
        self._searcher.setSimilarity(j.BM25(float(k1), float(b)))
        self._local = threading.local()

    def _parser(self):
        # Terms are already analysed, so the keyword analyser keeps each quoted literal as one term:
        # one parse call instead of hundreds of JNI object constructions per query.
        if not hasattr(self._local, "parser"):
            self._local.parser = J().QueryParser("contents", J().Keyword())
        return self._local.parser

    def build_query(self, terms: Counter[str], collections: Sequence[str] | None = None,
                    fields: Sequence[tuple[str, float]] = ()):
        """BM25 of the analysed terms over `contents`, plus each (Lucene field, weight) of `fields` with its
        term boosts multiplied by the weight (a sum of per-field BM25 scores); optionally filtered."""
        j = J()
        text = " ".join(_quote(t) + (f"^{c}" if c > 1 else "") for t, c in terms.items())
        for name, weight in fields:
            text += " " + " ".join(f"{name}:{_quote(t)}^{float(np.float32(c * weight))!r}" for t, c in terms.items())
        query = self._parser().parse(text)
        if collections is None:
            return query
        builder = j.BQBuilder()
        builder.add(query, j.Occur.MUST)
        if len(collections) == 1:
            builder.add(j.TermQuery(j.Term("collection", collections[0])), j.Occur.FILTER)
        else:
            either = j.BQBuilder()
            for c in collections:
                either.add(j.TermQuery(j.Term("collection", c)), j.Occur.SHOULD)
            builder.add(either.build(), j.Occur.FILTER)
        return builder.build()

    def top(self, query, n: int) -> tuple[list[int], list[float]]:
        """Lucene's top `n` (doc numbers, scores), counting hits only up to n so block-max WAND prunes."""
        collector = J().Collector.create(int(n), int(n))
        with java_errors(Path("(this generation's segments)")):  # a file damaged after the reader opened
            self._searcher.search(query, cast("org.apache.lucene.search.Collector", collector))
        docs, scores = [], []
        for h in collector.topDocs().scoreDocs:
            docs.append(h.doc)
            scores.append(h.score)
        return docs, scores

    def close(self) -> None:
        self._multi.close()


def _quote(text: str) -> str:
    """A quoted query-parser literal: only backslash and double quote need escaping inside quotes."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
