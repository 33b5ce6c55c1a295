"""The defects found by trying vfr as a hostile user (issue 11), through the CLI as a user meets them: search
with the store locked by another process (1), batch search that streams (3), a BOM in a query file (5),
non-finite fusion weights (7), the stale-index note (10), empty queries (11). The CLI runs in-process (the JVM
and encoder load once); a traceback shows up as an exception other than SystemExit."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vfr.cli import app
from vfr.demo import sample_path

pytestmark = pytest.mark.integration

LOCKER = """
import duckdb, sys, time
con = duckdb.connect(sys.argv[1])   # a writer: DuckDB lets no other process open the file meanwhile
print("locked", flush=True)
time.sleep(600)
"""


def vfr(*args: str, env: dict | None = None):
    old = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        r = CliRunner().invoke(app, list(args))
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise AssertionError(f"vfr {' '.join(args)} raised {r.exception!r}: a traceback for the user")
    return r


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("defects")
    db = root / "s.duckdb"
    assert vfr("import", str(sample_path()), "--db", str(db)).exit_code == 0
    r = vfr("index", "--db", str(db), "-q")
    assert r.exit_code == 0, r.output
    return root


@pytest.fixture
def db(built, tmp_path) -> Path:
    shutil.copytree(built, tmp_path / "w")
    return tmp_path / "w" / "s.duckdb"


def _queries(path: Path, n: int) -> Path:
    texts = ["a dog chasing a cat", "red car next to a blue truck", "neon sign", "snowy mountain lake", "ramen"]
    path.write_text("".join(f"{texts[i % len(texts)]} {i}\n" for i in range(n)))
    return path


@pytest.mark.parametrize("fmt", ["json", "table"])
def test_batch_search_with_the_store_locked_by_another_process(db, tmp_path, fmt):
    """Item 1: search used to reopen the store for hit texts and crash when another process held it."""
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout.readline().strip() == "locked"
        r = vfr("search", "--queries", str(_queries(tmp_path / "q.txt", 300)), "--db", str(db), "-f", fmt, "-k", "3",
                env={"VFR_LOCK_TIMEOUT": "3"})
    finally:
        locker.kill()
        locker.wait()
    assert r.exit_code == 0, r.output
    if fmt == "json":
        results = json.loads(r.stdout, parse_constant=lambda c: pytest.fail(f"{c} in JSON output"))
        assert len(results) == 300 and all(len(hits) == 3 and all(h["text"] for h in hits) for hits in results.values())
    else:
        assert all(f"q{i}" in r.stdout for i in (1, 150, 300)) and r.stdout.count("sample-") >= 900


def test_batch_search_prints_results_before_the_file_is_read(db, tmp_path):
    """Item 3: results of the first chunks are on stdout before a bad line at the end is even read."""
    q = _queries(tmp_path / "q.txt", 600)
    q.write_bytes(q.read_bytes() + b"bad \xff line\n")  # line 601 is not UTF-8
    r = vfr("search", "--queries", str(q), "--db", str(db), "-f", "jsonl", "--retriever", "bm25", "-k", "1")
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.exit_code == 1 and len(errors) == 1 and ":601: not UTF-8" in errors[0], r.output
    printed = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(printed) >= 256 and printed[0]["query_id"] == "q1"


@pytest.mark.parametrize("retriever", ["bm25", "dense", "hybrid"])
def test_empty_queries_and_a_bom(db, tmp_path, retriever):
    """Items 11 and 5: an empty query is an error alone and an empty hit list in a batch, for every retriever;
    a byte-order mark does not turn the first JSONL line into plain text."""
    for q in ("", "   ", "\t\n"):
        r = vfr("search", q, "--db", str(db), "--retriever", retriever, "-f", "jsonl")
        assert r.exit_code == 1 and "the query is empty" in r.output and not r.stdout.strip(), r.output
    f = tmp_path / "q.jsonl"
    f.write_bytes(b"\xef\xbb\xbf" + b'{"id": "blank", "text": "   "}\n{"id": "dog", "text": "a dog chasing a cat"}\n')
    r = vfr("search", "--queries", str(f), "--db", str(db), "--retriever", retriever, "-f", "jsonl", "-k", "2")
    assert r.exit_code == 0, r.output
    got = {d["query_id"]: d["hits"] for d in map(json.loads, r.stdout.splitlines())}
    assert set(got) == {"blank", "dog"} and got["blank"] == [] and len(got["dog"]) == 2


def test_non_finite_fusion_weights_are_refused(db):
    """Item 7: `--weights nan,1` printed "score": NaN, which is not JSON."""
    for w in ("nan,1", "1,inf", "-inf,1"):
        r = vfr("search", "dog", "--db", str(db), "--weights", w, "-f", "json")
        assert r.exit_code == 1 and "finite" in r.output and not r.stdout.strip(), r.output
    r = vfr("search", "dog", "--db", str(db), "--weights", "0.3,0.7", "-f", "json")
    assert r.exit_code == 0 and json.loads(r.stdout, parse_constant=lambda c: pytest.fail(c))


def test_the_stale_index_note_says_what_changed(db, tmp_path):
    """Item 10: after one changed text it said "200 documents changed since it was built (200 then)"."""
    f = tmp_path / "change.jsonl"
    f.write_text(json.dumps({"id": "sample-002", "text": "a quokka on a skateboard"}) + "\n"
                 + json.dumps({"id": "brand-new", "text": "a purple giraffe"}) + "\n")
    assert vfr("import", str(f), "--db", str(db)).exit_code == 0
    r = vfr("search", "quokka", "--db", str(db), "--retriever", "bm25", "-f", "jsonl")
    assert r.exit_code == 0 and "1 added, 1 changed, 0 deleted" in r.stderr, r.output
    r = vfr("search", "quokka", "--db", str(db), "--retriever", "bm25", "-f", "jsonl", "--update")
    assert r.exit_code == 0 and "lacks store changes" not in r.stderr
    assert json.loads(r.stdout)["hits"][0]["id"] == "sample-002"


def test_search_is_not_held_up_by_a_busy_index_writer(db, tmp_path):
    """A delete that never reached the index makes search apply it first; with another process writing the
    index, search must answer anyway rather than wait VFR_LOCK_TIMEOUT (here an hour) for the writer."""
    from vfr.retrieve.generations import writer_lock
    from vfr.store.store import Store

    with Store(db) as s:
        s.delete(["sample-003"])  # in the store only, as if `vfr delete` died before the index
    with writer_lock(db.with_name("s.index"), 1.0):  # another writer holds the index
        r = subprocess.run([sys.executable, "-m", "vfr", "search", "dog", "--db", str(db), "-f", "jsonl"],
                           capture_output=True, text=True, timeout=300,  # a hang guard, not a speed limit
                           env={**os.environ, "VFR_LOCK_TIMEOUT": "3600"})
    assert r.returncode == 0 and len(json.loads(r.stdout)["hits"]) == 10, r.stderr
    r = vfr("search", "a dog", "--db", str(db), "-f", "jsonl", "-k", "200")  # the writer is gone: applied now
    assert r.exit_code == 0 and "sample-003" not in {h["id"] for h in json.loads(r.stdout)["hits"]}
