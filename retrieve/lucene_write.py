"""Writing the Lucene index of one index segment (retrieve/segments.py): write, merge, delete in and
garbage-collect.

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
from pathlib import Path
from typing import Iterable, Sequence

from vfr.retrieve.lucene import J, LuceneError, analyzer, cast, find_commit, java_errors, open_directory
from vfr.retrieve.lucene_read import open_reader
from vfr.retrieve.types import clean_text

_NO_COLLECTION = ""  # the collection term of a document that belongs to none


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
    with java_errors(path, writing=True):
        return _write_segment(path, docs, generation)


def _write_segment(path: Path, docs: Iterable[tuple], generation: int) -> str:
    j = J()
    directory = open_directory(path)
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
    with java_errors(path, writing=True):
        return _merge_segments(path, sources, expected_ids, generation)


def _merge_segments(path: Path, sources: Sequence[tuple[Path, str]], expected_ids: Sequence[str],
                    generation: int) -> str:
    j = J()
    opened = [open_reader(p, c) for p, c in sources]
    directory = open_directory(path)
    try:
        codecs = [cast("org.apache.lucene.index.CodecReader", j.SlowCodec.wrap(leaf.reader()))
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
    cast(_writer_add_class(), writer).addIndexes(*codecs)


def delete_documents(path: Path, base_commit: str, ids: Iterable[str], generation: int) -> str:
    """Delete `ids` (by id term) in the segment at `path`, starting from `base_commit` (a crashed writer
    may have left a later, unpublished commit); returns the new commit's name."""
    if not path.is_dir():
        raise LuceneError(f"Lucene segment {path} is missing: the index is damaged; run `vfr index --full`")
    with java_errors(path, writing=True):
        return _delete_documents(path, base_commit, ids, generation)


def _delete_documents(path: Path, base_commit: str, ids: Iterable[str], generation: int) -> str:
    j = J()
    directory = open_directory(path)
    try:
        writer = j.IW(directory, _config(create=False, commit=find_commit(directory, base_commit, path)))
        try:
            for doc_id in ids:
                writer.deleteDocuments(j.TermQuery(j.Term("id", doc_id)))
            _commit(writer, generation)
        finally:
            writer.close()
        return _latest_commit_name(directory)
    finally:
        directory.close()


def _verify_order(directory, path: Path, commit: str, ids: Sequence[str]) -> None:
    """The first, middle and last documents must be the ids in the order we gave (rows == doc numbers)."""
    reader = J().DR.open(find_commit(directory, commit, path))
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
    directory = open_directory(path)
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
