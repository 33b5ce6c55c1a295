"""Lucene through pyjnius, the shared part: the Java classes, Java errors turned into LuceneError, the index's
analyser (tokens of documents and queries), a segment's directory and commits, and the pool of JVM threads.

Writing a segment's Lucene index (write, merge, delete in, garbage-collect) is retrieve/lucene_write.py;
opening a commit and running BM25 queries is retrieve/lucene_read.py.
"""
from __future__ import annotations

import functools
import os
import threading
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator, Sequence

from vfr.retrieve.jvm import ensure_jvm
from vfr.retrieve.types import clean_text

MAX_CLAUSES = 1 << 16  # distinct query terms kept (most frequent first); Lucene's default of 1,024 is lifted
_SEP = "vfrdocsep"  # joins a batch of documents for one analyser call; a batch that contains it goes one by one


class LuceneError(RuntimeError):
    """A Lucene segment is missing or damaged, or cannot be written (message says what to do)."""


def _java_message(e: Exception) -> str:
    name = (getattr(e, "classname", None) or "").rsplit(".", 1)[-1]
    text = (getattr(e, "innermessage", None) or str(e)).strip().splitlines()
    return f"{name}: {text[0][:300]}" if name and text else (text[0][:300] if text else type(e).__name__)


@contextmanager
def java_errors(path: Path, writing: bool = False) -> Iterator[None]:
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


def cast(name: str, obj):
    """`obj` as the Java class `name` (pyjnius picks methods by the declared class)."""
    from jnius import cast as jcast

    return jcast(name, obj)


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


# -- directories and commits ------------------------------------------------------------------------
def open_directory(path: Path):
    # absolute: the JVM resolves relative paths against its start-up directory, not Python's current one
    return J().FSDirectory.open(J().Paths.get(os.path.abspath(path)))


def find_commit(directory, name: str, path: Path):
    with java_errors(path):
        commits = J().DR.listCommits(directory)
    for i in range(commits.size()):
        if commits.get(i).getSegmentsFileName() == name:
            return cast("org.apache.lucene.index.IndexCommit", commits.get(i))
    raise LuceneError(f"Lucene commit {name} is missing in {path}: the index is damaged; "
                      "run `vfr index --full` to rebuild it")



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
