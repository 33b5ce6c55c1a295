"""Sparse retrieval: Lucene BM25 (Pyserini's indexer, Lucene's IndexSearcher through pyjnius).

User text never reaches Lucene's query parser as written: the index's own analyser (Anserini's English
analyser: Porter stemming, stopwords) turns it into a bag of terms, each a quoted literal boosted by its
count (what Anserini's bag-of-words query generator builds), and Lucene's 1,024-clause limit is lifted,
so any string — Lucene syntax, NUL bytes, emoji, 10,000 characters — is safe.

Search asks Lucene's IndexSearcher for top-k (Lucene document number, score) pairs and maps numbers to
ids with a table written at build time, so no stored document is read per hit. `score()` (the hybrid's
exact BM25 of the dense side's candidates) uses the forward index beside it (retrieve/bm25_forward.py).
"""
from __future__ import annotations

import atexit
import json
import queue
import threading
from collections import Counter
from concurrent.futures import Future
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from vfr.retrieve.bm25_forward import FILE as FORWARD_FILE, ForwardBuilder, ForwardIndex
from vfr.retrieve.jvm import ensure_jvm
from vfr.retrieve.types import Document, Hit, Run, clean_text

MAX_CLAUSES = 1 << 16  # distinct query terms kept (most frequent first); Lucene's default of 1,024 is lifted
IDS_FILE = "docids.json"  # Lucene document number → document id
FORWARD_IDS_FILE = "forward_ids.json"  # forward-index row → document id (build order)
_INDEX_ARGS = ["-storePositions", "-threads", "1"]
_SEP = "vfrdocsep"  # joins a batch of documents for one analyser call; a batch that contains it goes one by one


class SparseIndexError(RuntimeError):
    """The sparse index folder is unusable (message says what to do)."""


def _analyzer():
    from pyserini.analysis import get_lucene_analyzer
    return get_lucene_analyzer()


def _analyse_batch(utils, analyzer, texts: list[str]) -> list[list[str]]:
    """The analyser's tokens of each text, with one JNI round trip for the whole batch when possible."""
    def tokens(text: str) -> list[str]:
        joined = utils.analyze(analyzer, text).toString()[1:-1]  # "[a, b, c]": tokens never contain spaces
        return joined.split(", ") if joined else []

    flat = tokens(f" {_SEP} ".join(texts))
    out: list[list[str]] = [[]]
    for tok in flat:
        if tok == _SEP:
            out.append([])
        else:
            out[-1].append(tok)
    if len(out) != len(texts) or any(_SEP in t for t in texts):
        return [tokens(t) for t in texts]
    return out


def build_sparse(docs: Iterable[Document], out_dir: Path, batch_size: int = 5000,
                 on_batch=None) -> int:
    """Write a Lucene index of `docs` into `out_dir` (which must not exist), plus the document-number
    table and the BM25 forward index. Returns the count."""
    ensure_jvm()
    from jnius import autoclass
    from pyserini.index.lucene import LuceneIndexer

    utils, analyzer = autoclass("io.anserini.analysis.AnalyzerUtils"), _analyzer()
    forward, order = ForwardBuilder(), []
    writer = LuceneIndexer(str(out_dir), args=["-index", str(out_dir), *_INDEX_ARGS])

    def flush(batch: list[dict]) -> None:
        writer.add_batch_dict(batch)
        for toks in _analyse_batch(utils, analyzer, [d["contents"] for d in batch]):
            forward.add(toks)
        order.extend(d["id"] for d in batch)
        on_batch and on_batch(len(batch))

    batch: list[dict] = []
    try:
        for doc in docs:
            batch.append({"id": doc.id, "contents": clean_text(doc.text)})
            if len(batch) >= batch_size:
                flush(batch)
                batch = []
        if batch:
            flush(batch)
    finally:
        writer.close()
    forward.save(out_dir)
    (out_dir / FORWARD_IDS_FILE).write_text(json.dumps(order))
    (out_dir / IDS_FILE).write_text(json.dumps(_lucene_ids(out_dir)))
    return len(order)


def _open_reader(index_dir: Path):
    from jnius import autoclass
    fs = autoclass("org.apache.lucene.store.FSDirectory")
    return autoclass("org.apache.lucene.index.DirectoryReader").open(
        fs.open(autoclass("java.nio.file.Paths").get(str(index_dir))))


def _lucene_ids(index_dir: Path) -> list[str]:
    reader = _open_reader(index_dir)
    try:
        fields = reader.storedFields()
        return [fields.document(i).get("id") for i in range(reader.maxDoc())]
    finally:
        reader.close()


class LuceneSearcher:
    """BM25 over a Lucene index. `search`, `batch_search` and `score` share one query builder."""

    def __init__(self, index_dir: Path, k1: float, b: float) -> None:
        ensure_jvm()
        from jnius import autoclass, cast
        from pyserini.analysis import Analyzer

        missing = [f for f in (IDS_FILE, FORWARD_IDS_FILE, FORWARD_FILE) if not (index_dir / f).exists()]
        if missing:
            raise SparseIndexError(f"{index_dir} lacks {', '.join(missing)} (built by an older vfr): "
                                   "run `vfr index` again")
        self._reader = _open_reader(index_dir)
        self._java = autoclass("org.apache.lucene.search.IndexSearcher")(
            cast("org.apache.lucene.index.IndexReader", self._reader))
        self._java.setSimilarity(autoclass("org.apache.lucene.search.similarities.BM25Similarity")(
            float(k1), float(b)))
        autoclass("org.apache.lucene.search.IndexSearcher").setMaxClauseCount(MAX_CLAUSES + 1)
        self._analyzer = Analyzer(_analyzer())
        self._local = threading.local()  # QueryParser is not thread-safe: one per thread
        self._worker: _JvmWorker | None = None
        self._collector = autoclass("org.apache.lucene.search.TopScoreDocCollector")
        self.ids: list[str] = json.loads((index_dir / IDS_FILE).read_text())
        self.num_docs = len(self.ids)
        small_float = autoclass("org.apache.lucene.util.SmallFloat")
        length_table = np.array([small_float.byte4ToInt(i if i < 128 else i - 256) for i in range(256)])
        encode = np.vectorize(lambda n: small_float.intToByte4(int(n)) & 0xFF, otypes=[np.int64])

        def quantise(lengths: np.ndarray) -> np.ndarray:  # Lucene's one-byte norm, decoded
            distinct, inverse = np.unique(lengths, return_inverse=True)
            return length_table[encode(distinct)][inverse] if len(distinct) else lengths

        self.forward = ForwardIndex(index_dir, json.loads((index_dir / FORWARD_IDS_FILE).read_text()),
                                    k1, b, quantise)

    def terms(self, query: str) -> Counter[str]:
        """Analysed query terms with their counts, capped at MAX_CLAUSES distinct terms."""
        terms = Counter(self._analyzer.analyze(clean_text(query)))
        if len(terms) > MAX_CLAUSES:
            terms = Counter(dict(terms.most_common(MAX_CLAUSES)))
        return terms

    def _parser(self):
        # Terms are already analysed, so the keyword analyser keeps each quoted literal as one term:
        # one parse call instead of hundreds of JNI object constructions per query.
        if not hasattr(self._local, "parser"):
            from jnius import autoclass
            self._local.parser = autoclass("org.apache.lucene.queryparser.classic.QueryParser")(
                "contents", autoclass("org.apache.lucene.analysis.core.KeywordAnalyzer")())
        return self._local.parser

    def _query(self, terms: Counter[str]):
        """BM25 over `terms`, each boosted by its count (as Anserini's bag-of-words query)."""
        return self._parser().parse(" ".join(f"{_quote(t)}" + (f"^{c}" if c > 1 else "") for t, c in terms.items()))

    def search(self, query: str, k: int = 10) -> list[Hit]:
        terms = self.terms(query) if k > 0 else Counter()
        if not terms:
            return []
        from jnius import cast
        # Count hits only up to k (not Lucene's default 1,000), so block-max WAND skips non-competitive
        # documents from the start: same top k, ~1.5x faster for common-word queries at 100k documents.
        collector = self._collector.create(int(k), int(k))
        self._java.search(self._query(terms), cast("org.apache.lucene.search.Collector", collector))
        return [Hit(self.ids[h.doc], float(h.score), i + 1) for i, h in enumerate(collector.topDocs().scoreDocs)]

    def search_in_background(self, query: str, k: int = 10) -> Callable[[], list[Hit]]:
        """Start `search` on this searcher's Lucene thread; returns a function that waits for the hits.

        The JVM runs it while the caller does other work (the hybrid encodes the query meanwhile). One
        long-lived thread: attaching a fresh thread to the JVM per query would cost more than it saves."""
        if self._worker is None:
            with _WORKER_LOCK:
                if self._worker is None:
                    self._worker = _JvmWorker()
        return self._worker.submit(self.search, query, k).result

    def search_many_in_background(self, texts: Sequence[str], k: int = 10, ahead: int = 256
                                  ) -> Iterator[list[Hit]]:
        """Hits of each text, in order, searched on a thread of its own up to `ahead` texts in advance,
        so the caller's per-query Python work overlaps Lucene's (a batch's pipeline)."""
        results: queue.Queue = queue.Queue(maxsize=ahead)
        stop = threading.Event()

        def put(item) -> bool:
            while not stop.is_set():
                try:
                    results.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def run() -> None:
            from jnius import detach
            try:
                for text in texts:
                    if not put(("hits", self.search(text, k))):
                        return
            except BaseException as e:  # re-raised in the caller's thread
                put(("error", e))
            finally:
                detach()

        def consume() -> Iterator[list[Hit]]:
            try:
                for _ in texts:
                    kind, value = results.get()
                    if kind == "error":
                        raise value
                    yield value
            finally:
                stop.set()
                thread.join()

        thread = threading.Thread(target=run, name="vfr-bm25-batch", daemon=True)
        thread.start()  # now, not at the first next(): the caller works meanwhile
        return consume()

    def batch_search(self, queries: dict[str, str], k: int = 10) -> Run:
        return {qid: {h.id: h.score for h in self.search(text, k)} for qid, text in queries.items()}

    def score(self, query: str, doc_ids: Sequence[str]) -> dict[str, float]:
        """BM25 score of each given document for `query` (0 for a document that matches no term)."""
        return self.forward.score(self.terms(query), doc_ids)


_WORKER_LOCK = threading.Lock()


class _JvmWorker:
    """A daemon thread that runs submitted calls in order; it detaches from the JVM when closed (at exit
    at the latest), as pyjnius requires of threads that called Java."""

    def __init__(self) -> None:
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="vfr-lucene", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def _loop(self) -> None:
        from jnius import detach
        try:
            while (task := self._tasks.get()) is not None:
                fn, args, future = task
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn(*args))
                    except BaseException as e:  # re-raised by future.result() in the caller's thread
                        future.set_exception(e)
        finally:
            detach()

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        self._tasks.put((fn, args, future))
        return future

    def close(self) -> None:
        if self._thread.is_alive():
            self._tasks.put(None)
            self._thread.join(timeout=10)


def _quote(text: str) -> str:
    """A quoted query-parser literal: only backslash and double quote need escaping inside quotes."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
