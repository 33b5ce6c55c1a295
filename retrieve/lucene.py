"""Lucene through pyjnius: write, delete in, merge, open and garbage-collect the Lucene index of one
index segment (retrieve/segments.py), analyse text with the index's analyser, and run BM25 queries.

Each segment's Lucene directory holds one Lucene segment whose document numbers follow the order the
documents were added (one flush, LogByteSizeMergePolicy, forceMerge(1); merges of several segments use
addIndexes, which concatenates live documents in order). So a hit's document number maps to a row of the
segment, and the row to the id, with no stored-field read per hit; the order is verified on write.

Commits are kept (NoDeletionPolicy) until the index's garbage collector drops those no generation uses,
so a reader can open exactly the commit its generation names.
"""
from __future__ import annotations

import functools
import os
import threading
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Iterable, Iterator, Sequence

import numpy as np

from vfr.retrieve.jvm import ensure_jvm
from vfr.retrieve.types import clean_text

MAX_CLAUSES = 1 << 16  # distinct query terms kept (most frequent first); Lucene's default of 1,024 is lifted
_SEP = "vfrdocsep"  # joins a batch of documents for one analyser call; a batch that contains it goes one by one
_NO_COLLECTION = ""


class LuceneError(RuntimeError):
    """A Lucene segment is missing or damaged, or cannot be written (message says what to do)."""


def _java_message(e: Exception) -> str:
    name = (getattr(e, "classname", None) or "").rsplit(".", 1)[-1]
    text = (getattr(e, "innermessage", None) or str(e)).strip().splitlines()
    return f"{name}: {text[0][:300]}" if name and text else (text[0][:300] if text else type(e).__name__)


@contextmanager
def _java_errors(path: Path, writing: bool = False) -> Iterator[None]:
    """Java exceptions from Lucene become one LuceneError that says what the user can do."""
    ensure_jvm()  # importing jnius starts the JVM: it must start with our class path and options
    from jnius import JavaException

    try:
        yield
    except JavaException as e:
        if writing:
            raise LuceneError(f"cannot write the Lucene index in {path} ({_java_message(e)}); nothing was published: "
                              "fix the cause (e.g. free disk space) and run the command again") from None
        raise LuceneError(f"the Lucene index in {path} is damaged or unreadable ({_java_message(e)}); "
                          "run `vfr index --full` to rebuild the index") from None


@functools.cache
def J() -> SimpleNamespace:
    """The Java classes we use, loaded once."""
    ensure_jvm()
    from jnius import autoclass

    names = {
        "FSDirectory": "org.apache.lucene.store.FSDirectory", "Paths": "java.nio.file.Paths",
        "IWC": "org.apache.lucene.index.IndexWriterConfig", "IW": "org.apache.lucene.index.IndexWriter",
        "OpenMode": "org.apache.lucene.index.IndexWriterConfig$OpenMode",
        "NoDeletion": "org.apache.lucene.index.NoDeletionPolicy",
        "LogMP": "org.apache.lucene.index.LogByteSizeMergePolicy",
        "SerialMS": "org.apache.lucene.index.SerialMergeScheduler",
        "Document": "org.apache.lucene.document.Document", "StringField": "org.apache.lucene.document.StringField",
        "TextField": "org.apache.lucene.document.TextField", "Store": "org.apache.lucene.document.Field$Store",
        "Term": "org.apache.lucene.index.Term", "TermQuery": "org.apache.lucene.search.TermQuery",
        "DR": "org.apache.lucene.index.DirectoryReader", "MultiReader": "org.apache.lucene.index.MultiReader",
        "IndexSearcher": "org.apache.lucene.search.IndexSearcher",
        "BM25": "org.apache.lucene.search.similarities.BM25Similarity",
        "Collector": "org.apache.lucene.search.TopScoreDocCollector",
        "QueryParser": "org.apache.lucene.queryparser.classic.QueryParser",
        "Keyword": "org.apache.lucene.analysis.core.KeywordAnalyzer",
        "BQBuilder": "org.apache.lucene.search.BooleanQuery$Builder",
        "Occur": "org.apache.lucene.search.BooleanClause$Occur",
        "HashMap": "java.util.HashMap", "SlowCodec": "org.apache.lucene.index.SlowCodecReaderWrapper",
        "AnalyzerUtils": "io.anserini.analysis.AnalyzerUtils",
    }
    ns = SimpleNamespace(**{k: autoclass(v) for k, v in names.items()})
    ns.IndexSearcher.setMaxClauseCount(MAX_CLAUSES + 1)
    return ns


_local = threading.local()


def analyzer():
    """The index's analyser (English, Porter stemming, stopwords), one instance per thread: concurrent
    first use of a shared instance raised NullPointerExceptions inside Anserini's analysis code."""
    if not hasattr(_local, "analyzer"):
        ensure_jvm()
        from pyserini.analysis import get_lucene_analyzer

        _local.analyzer = get_lucene_analyzer()
    return _local.analyzer


def _cast(name: str, obj):
    from jnius import cast

    return cast(name, obj)


# -- analysis -------------------------------------------------------------------------------------
_ANALYSE_LOCK = threading.Lock()


def analyse(texts: Sequence[str]) -> list[list[str]]:
    """The analyser's tokens of each text, with one JNI round trip for the whole batch when possible.
    Calls are serialised: concurrent calls of AnalyzerUtils.analyze through pyjnius intermittently fail with
    a NullPointerException (measured: a few in 10,000 from 8 threads; none with the lock, at the same speed)."""
    utils, an = J().AnalyzerUtils, analyzer()

    def tokens(text: str) -> list[str]:
        with _ANALYSE_LOCK:
            joined = utils.analyze(an, clean_text(text)).toString()[1:-1]  # "[a, b]": tokens have no spaces
        return joined.split(", ") if joined else []

    if not texts:
        return []
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


def query_terms(text: str) -> Counter[str]:
    """Analysed query terms with their counts (the boost), capped at MAX_CLAUSES distinct terms."""
    return query_terms_batch([text])[0]


def query_terms_batch(texts: Sequence[str]) -> list[Counter[str]]:
    """`query_terms` of many texts with one analyser call."""
    live = [i for i, t in enumerate(texts) if t.strip()]
    out = [Counter() for _ in texts]
    for i, tokens in zip(live, analyse([texts[i] for i in live]) if live else []):
        terms = Counter(tokens)
        out[i] = terms if len(terms) <= MAX_CLAUSES else Counter(dict(terms.most_common(MAX_CLAUSES)))
    return out


# -- writing ---------------------------------------------------------------------------------------
def _directory(path: Path):
    # absolute: the JVM resolves relative paths against its start-up directory, not Python's current one
    return J().FSDirectory.open(J().Paths.get(os.path.abspath(path)))


def _config(create: bool, commit=None):
    j = J()
    cfg = j.IWC(analyzer())
    cfg.setIndexDeletionPolicy(j.NoDeletion.INSTANCE)
    cfg.setMergePolicy(j.LogMP())  # merges adjacent segments only: document order is kept
    # merges in the calling thread: a failing merge (disk full) raises in the write that caused it, as one
    # error, instead of a background merge thread printing a Java stack trace to stderr
    cfg.setMergeScheduler(j.SerialMS())
    cfg.setRAMBufferSizeMB(512.0)
    cfg.setOpenMode(j.OpenMode.CREATE if create else j.OpenMode.APPEND)
    if commit is not None:
        cfg.setIndexCommit(commit)
    return cfg


def _commit(writer, generation: int) -> None:
    data = J().HashMap()
    data.put("vfr_generation", str(generation))
    writer.setLiveCommitData(data.entrySet())
    writer.commit()


def _latest_commit_name(directory) -> str:
    commits = J().DR.listCommits(directory)  # sorted by generation
    return commits.get(commits.size() - 1).getSegmentsFileName()


def write_segment(path: Path, docs: Iterable[tuple], generation: int) -> str:
    """A new Lucene index at `path` of (id, collection, text[, {field: text}]) in order (fields: the BM25
    fields of retrieve/fields.py, each its own Lucene field); returns its commit's name."""
    with _java_errors(path, writing=True):
        return _write_segment(path, docs, generation)


def _write_segment(path: Path, docs: Iterable[tuple], generation: int) -> str:
    j = J()
    directory = _directory(path)
    ids: list[str] = []
    try:
        writer = j.IW(directory, _config(create=True))
        try:
            for doc_id, collection, text, *extra in docs:
                doc = j.Document()
                doc.add(j.StringField("id", doc_id, j.Store.YES))
                doc.add(j.StringField("collection", collection or _NO_COLLECTION, j.Store.NO))
                doc.add(j.TextField("contents", clean_text(text), j.Store.NO))
                for name, value in (extra[0] if extra else {}).items():
                    if value.strip():
                        doc.add(j.TextField(name, clean_text(value), j.Store.NO))
                writer.addDocument(doc)
                ids.append(doc_id)
            writer.forceMerge(1)
            _commit(writer, generation)
        finally:
            writer.close()
        name = _latest_commit_name(directory)
        _verify_order(directory, path, name, ids)
        return name
    finally:
        directory.close()


def merge_segments(path: Path, sources: Sequence[tuple[Path, str]], expected_ids: Sequence[str],
                   generation: int) -> str:
    """A new Lucene index at `path` holding the live documents of `sources` ((dir, commit) pairs), in
    order; `expected_ids` is that order (checked). Returns the commit name."""
    with _java_errors(path, writing=True):
        return _merge_segments(path, sources, expected_ids, generation)


def _merge_segments(path: Path, sources: Sequence[tuple[Path, str]], expected_ids: Sequence[str],
                    generation: int) -> str:
    j = J()
    opened = [open_reader(p, c) for p, c in sources]
    directory = _directory(path)
    try:
        codecs = [_cast("org.apache.lucene.index.CodecReader", j.SlowCodec.wrap(leaf.reader()))
                  for r in opened for leaf in r.reader.leaves().toArray()]
        writer = j.IW(directory, _config(create=True))
        try:
            if codecs:
                _add_indexes(writer, codecs)
            writer.forceMerge(1)
            _commit(writer, generation)
        finally:
            writer.close()
        name = _latest_commit_name(directory)
        _verify_order(directory, path, name, list(expected_ids))
        return name
    finally:
        directory.close()
        for r in opened:
            r.close()


@functools.cache
def _writer_add_class():
    """IndexWriter with only addIndexes(CodecReader...): pyjnius would pick the Directory overload."""
    from jnius import JavaClass, JavaMethod, MetaJavaClass

    class _WriterAdd(JavaClass, metaclass=MetaJavaClass):
        __javaclass__ = "org/apache/lucene/index/IndexWriter"
        addIndexes = JavaMethod("([Lorg/apache/lucene/index/CodecReader;)J", varargs=True)
    return _WriterAdd


def _add_indexes(writer, codecs: list) -> None:
    from jnius import cast

    cast(_writer_add_class(), writer).addIndexes(*codecs)


def delete_documents(path: Path, base_commit: str, ids: Iterable[str], generation: int) -> str:
    """Delete `ids` (by id term) in the segment at `path`, starting from `base_commit` (a crashed writer
    may have left a later, unpublished commit); returns the new commit's name."""
    if not path.is_dir():
        raise LuceneError(f"Lucene segment {path} is missing: the index is damaged; run `vfr index --full`")
    with _java_errors(path, writing=True):
        return _delete_documents(path, base_commit, ids, generation)


def _delete_documents(path: Path, base_commit: str, ids: Iterable[str], generation: int) -> str:
    j = J()
    directory = _directory(path)
    try:
        writer = j.IW(directory, _config(create=False, commit=_find_commit(directory, base_commit, path)))
        try:
            for doc_id in ids:
                writer.deleteDocuments(j.TermQuery(j.Term("id", doc_id)))
            _commit(writer, generation)
        finally:
            writer.close()
        return _latest_commit_name(directory)
    finally:
        directory.close()


def _find_commit(directory, name: str, path: Path):
    with _java_errors(path):
        commits = J().DR.listCommits(directory)
    for i in range(commits.size()):
        if commits.get(i).getSegmentsFileName() == name:
            return _cast("org.apache.lucene.index.IndexCommit", commits.get(i))
    raise LuceneError(f"Lucene commit {name} is missing in {path}: the index is damaged; "
                      "run `vfr index --full` to rebuild it")


def _verify_order(directory, path: Path, commit: str, ids: Sequence[str]) -> None:
    """The first, middle and last documents must be the ids in the order we gave (rows == doc numbers)."""
    reader = J().DR.open(_find_commit(directory, commit, path))
    try:
        if reader.maxDoc() != len(ids):
            raise LuceneError(f"Lucene holds {reader.maxDoc()} documents, expected {len(ids)}")
        fields = reader.storedFields()
        for i in {0, len(ids) // 2, len(ids) - 1} if ids else ():
            got = fields.document(i).get("id")
            if got != ids[i]:
                raise LuceneError(f"Lucene document {i} is {got!r}, expected {ids[i]!r}: order not kept")
    finally:
        reader.close()


def collect_garbage(path: Path, keep: set[str]) -> int:
    """Delete the files of every commit at `path` that is not in `keep` (and files no commit uses).
    Only while no IndexWriter is open there (the index writer lock guarantees it). Returns files removed."""
    directory = _directory(path)
    try:
        commits = J().DR.listCommits(directory)
        wanted = {"write.lock"}
        for i in range(commits.size()):
            c = commits.get(i)
            if c.getSegmentsFileName() in keep:
                wanted.update(c.getFileNames().toArray())
    finally:
        directory.close()
    removed = 0
    for name in os.listdir(path):
        if name not in wanted:
            os.remove(path / name)
            removed += 1
    return removed


# -- reading ---------------------------------------------------------------------------------------
class OpenSegmentReader:
    """A Lucene DirectoryReader of one commit, with the directory it holds open."""

    def __init__(self, path: Path, commit: str) -> None:
        self.path, self.commit = path, commit
        self.directory = _directory(path)
        try:
            with _java_errors(path):
                self.reader = J().DR.open(_find_commit(self.directory, commit, path))
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
        subs = [_cast("org.apache.lucene.index.IndexReader", r.reader) for r in readers]
        self._multi = j.MultiReader(subs, False)  # the segment readers are closed by their owner
        self._searcher = j.IndexSearcher(_cast("org.apache.lucene.index.IndexReader", self._multi))
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
        with _java_errors(Path("(this generation's segments)")):  # a file damaged after the reader opened
            self._searcher.search(query, _cast("org.apache.lucene.search.Collector", collector))
        docs, scores = [], []
        for h in collector.topDocs().scoreDocs:
            docs.append(h.doc)
            scores.append(h.score)
        return docs, scores

    def close(self) -> None:
        self._multi.close()


class JvmPool:
    """Long-lived threads for Lucene calls made off the caller's thread (the hybrid's BM25 side runs while
    the caller encodes the query; a server's concurrent queries run side by side). Threads that called
    Java detach from the JVM when the pool closes, as pyjnius requires."""

    def __init__(self, size: int = 4) -> None:
        import queue

        ensure_jvm()
        import jnius  # noqa: F401  (starts the JVM here with our class path, before a pool thread imports it)

        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._loop, name=f"vfr-lucene-{i}", daemon=True)
                         for i in range(size)]
        for t in self._threads:
            t.start()

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

    def submit(self, fn, *args):
        from concurrent.futures import Future

        future: Future = Future()
        self._tasks.put((fn, args, future))
        return future

    def close(self) -> None:
        for _ in self._threads:
            self._tasks.put(None)
        for t in self._threads:
            t.join(timeout=10)


@functools.cache
def pool() -> JvmPool:
    import atexit

    from vfr.store.env import EnvError, env_number

    try:
        size = int(env_number("VFR_LUCENE_THREADS", 4, minimum=1, maximum=256, integer=True))
    except EnvError as e:
        raise LuceneError(f"{e} (threads for Lucene searches)") from None
    p = JvmPool(size)
    atexit.register(p.close)
    return p


def _quote(text: str) -> str:
    """A quoted query-parser literal: only backslash and double quote need escaping inside quotes."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
