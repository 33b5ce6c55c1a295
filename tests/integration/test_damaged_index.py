"""A damaged index (issue 11, item 6): every damage we could think of to the live index's files gives one line
that says what is damaged and that `vfr index --full` rebuilds it (no traceback), and both `vfr index --full`
and `vfr search --rebuild` work whatever state the index is in. In-process CLI runs (the JVM and the encoder
load once); a traceback shows up as an exception other than SystemExit."""
import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vfr.cli import app

pytestmark = pytest.mark.integration


def _seg(index: Path) -> Path:
    return sorted((index / "segments").iterdir())[0]


def _head_manifest(index: Path) -> Path:
    return index / "manifests" / f"{int((index / 'HEAD').read_text()):08d}.json"


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _each(index: Path, pattern: str, fn) -> None:
    """Apply `fn` to the first segment's files matching `pattern` (in its lucene/ folder, or the segment's)."""
    hits = list((_seg(index) / "lucene").glob(pattern)) or list(_seg(index).glob(pattern))
    assert hits, f"nothing matches {pattern}: the damage would be a no-op"
    for p in hits:
        fn(p)


DAMAGES = {
    "empty dense.faiss": lambda i: (_seg(i) / "dense.faiss").write_bytes(b""),
    "truncated dense.faiss": lambda i: _truncate(_seg(i) / "dense.faiss"),
    "garbage dense.faiss": lambda i: (_seg(i) / "dense.faiss").write_bytes(os.urandom(4096)),
    "deleted Lucene segments_N": lambda i: _each(i, "segments_*", Path.unlink),
    "garbage Lucene segments_N": lambda i: _each(i, "segments_*", lambda p: p.write_bytes(os.urandom(200))),
    "deleted Lucene .si": lambda i: _each(i, "*.si", Path.unlink),
    "deleted Lucene postings": lambda i: _each(i, "*.doc", Path.unlink),
    "garbage Lucene postings": lambda i: _each(i, "*.doc", lambda p: p.write_bytes(os.urandom(p.stat().st_size))),
    "truncated Lucene terms": lambda i: _each(i, "*.tim", _truncate),
    "deleted Lucene stored fields": lambda i: _each(i, "*.fdt", Path.unlink),
    "deleted Lucene live docs": lambda i: _each(i, "*.liv", Path.unlink),
    "deleted Lucene folder": lambda i: shutil.rmtree(_seg(i) / "lucene"),
    "corrupt manifest": lambda i: _head_manifest(i).write_text("{not json"),
    "manifest missing keys": lambda i: _head_manifest(i).write_text(json.dumps({"format": 3, "generation": 2})),
    "missing manifest": lambda i: _head_manifest(i).unlink(),
    "corrupt HEAD": lambda i: (i / "HEAD").write_text("garbage"),
    "empty HEAD": lambda i: (i / "HEAD").write_text(""),
    "binary HEAD": lambda i: (i / "HEAD").write_bytes(b"\xff\xfe\x00"),
    "HEAD names a missing generation": lambda i: (i / "HEAD").write_text("99"),
    "missing segment folder": lambda i: shutil.rmtree(_seg(i)),
    "truncated docs.jsonl": lambda i: _truncate(_seg(i) / "docs.jsonl"),
    "truncated rows.json": lambda i: _truncate(_seg(i) / "rows.json"),
    "truncated forward.npz": lambda i: _truncate(_seg(i) / "forward.npz"),
    "truncated docs.offsets.npy": lambda i: _truncate(_seg(i) / "docs.offsets.npy"),
    "missing tombstone file": lambda i: _each(i, "del-*.npy", Path.unlink),
    "truncated tombstone file": lambda i: _each(i, "del-*.npy", _truncate),
}


@pytest.fixture(scope="module")
def base(template_store, tmp_path_factory) -> Path:
    """A store and index with two generations (a delete left a tombstone file and a Lucene deletion)."""
    root = tmp_path_factory.mktemp("damage")
    shutil.copy(template_store, root / "s.duckdb")
    shutil.copytree(template_store.with_name("t.index"), root / "s.index")
    r = CliRunner().invoke(app, ["delete", "sample-001", "--db", str(root / "s.duckdb")])
    assert r.exit_code == 0, r.output
    return root


def _cli(*args: str):
    r = CliRunner().invoke(app, list(args))
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise AssertionError(f"vfr {' '.join(args)} raised {r.exception!r} (a traceback for the user)")
    return r


def _one_error_line(r, index: Path) -> str:
    errors = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert r.exit_code == 1 and len(errors) == 1 and "Traceback" not in r.output, r.output
    assert str(index) in errors[0] and "vfr index --full" in errors[0], errors[0]
    return errors[0]


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_index_says_what_and_rebuilds(base, tmp_path, damage):
    for copy in ("a", "b"):
        shutil.copytree(base, tmp_path / copy)
        DAMAGES[damage](tmp_path / copy / "s.index")
    db, index = str(tmp_path / "a" / "s.duckdb"), tmp_path / "a" / "s.index"
    for args in (["search", "dog", "-f", "json", "--retriever", "bm25"], ["search", "dog", "-f", "jsonl"],
                 ["stats"]):
        _one_error_line(_cli(*args, "--db", db), index)
    r = _cli("index", "--full", "--db", db, "-q")
    assert r.exit_code == 0 and "indexed 179 documents" in r.output, r.output
    r = _cli("search", "a dog", "--db", db, "-f", "jsonl", "-k", "200")
    hits = [h["id"] for h in json.loads(r.output.strip().splitlines()[-1])["hits"]]
    assert r.exit_code == 0 and len(hits) == 179 and "sample-001" not in hits  # the acknowledged delete holds
    r = _cli("search", "a dog", "--db", str(tmp_path / "b" / "s.duckdb"), "-f", "jsonl", "--rebuild", "-k", "200")
    assert r.exit_code == 0, r.output
    assert sorted(h["id"] for h in json.loads(r.output.strip().splitlines()[-1])["hits"]) == sorted(hits)


def test_an_index_path_that_is_a_file_is_named(base, tmp_path):
    shutil.copy(base / "s.duckdb", tmp_path / "s.duckdb")
    (tmp_path / "s.index").write_text("not an index")
    for args in (["search", "dog"], ["index", "--full", "-q"], ["search", "dog", "--rebuild"]):
        r = _cli(*args, "--db", str(tmp_path / "s.duckdb"))
        assert r.exit_code == 1 and "is a file, not an index folder" in r.output, r.output
    assert (tmp_path / "s.index").read_text() == "not an index"  # a user's file is never removed
