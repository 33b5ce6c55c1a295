"""The `vfr` CLI as users and other tools drive it (real subprocesses, real Lucene and MiniLM)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vfr.demo import sample_path

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def vfr(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vfr", *args], cwd=cwd or REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, timeout=600)


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    db = root / "s.duckdb"
    r = vfr("import", str(sample_path()), "--db", str(db))
    assert r.returncode == 0, r.stderr
    r = vfr("index", "--db", str(db), "--quiet")
    assert r.returncode == 0, r.stderr
    assert "indexed 180 documents" in r.stderr
    return db


def test_help_teaches_every_command():
    r = vfr("--help")
    assert r.returncode == 0
    for cmd in ("import", "export", "stats", "index", "search", "demo", "delete", "compact"):
        assert cmd in r.stdout
    r = vfr("search", "--help")
    assert "--retriever" in r.stdout and "--queries" in r.stdout and "--format" in r.stdout


@pytest.mark.parametrize("retriever", ["bm25", "dense", "hybrid"])
def test_search_json_formats(db, retriever):
    r = vfr("search", "neon OPEN sign in a diner window", "--db", str(db), "--retriever", retriever, "-f", "jsonl", "-k", "3")
    assert r.returncode == 0, r.stderr
    line = json.loads(r.stdout.strip())
    assert line["query_id"] == "q1" and line["hits"][0]["id"] == "sample-126"
    assert [h["rank"] for h in line["hits"]] == [1, 2, 3]


def test_batch_queries_trec_and_table(db, tmp_path):
    q = tmp_path / "q.jsonl"
    q.write_text('{"id": "neon", "text": "neon OPEN sign diner"}\n{"id": "dogcat", "text": "a dog chasing a cat"}\n')
    r = vfr("search", "--queries", str(q), "--db", str(db), "-f", "trec", "-k", "2")
    assert r.returncode == 0, r.stderr
    rows = [l.split() for l in r.stdout.strip().splitlines()]
    assert len(rows) == 4 and rows[0][0] == "neon" and rows[0][1] == "Q0" and rows[0][3] == "1"
    r = vfr("search", "--queries", str(q), "--db", str(db), "-f", "jsonl", "-k", "2")
    assert [json.loads(l)["query_id"] for l in r.stdout.strip().splitlines()] == ["neon", "dogcat"]
    r = vfr("search", "a dog chasing a cat", "--db", str(db), "-k", "2")
    assert r.returncode == 0 and "rank" in r.stdout and "sample-" in r.stdout


def test_hostile_query_via_cli(db):
    for q in ['AND (', 'title:', '"\\*', "x" * 10_000, "😀"]:
        r = vfr("search", q, "--db", str(db), "-f", "jsonl")
        assert r.returncode == 0, r.stderr
        assert "Exception" not in r.stderr and "Traceback" not in r.stderr


def test_errors_are_one_clear_line(db, tmp_path):
    cases = [
        (("search", "x", "--db", str(tmp_path / "none.duckdb")), "vfr import"),
        (("search", "--db", str(db)), "give a QUERY"),
        (("search", "x", "--db", str(db), "--weights", "a,b"), "bad fusion"),
        (("import", str(tmp_path / "missing.jsonl"), "--db", str(db)), "no such file"),
        (("search", "--queries", str(tmp_path / "nope.txt"), "--db", str(db)), "no such file"),
    ]
    for args, needle in cases:
        r = vfr(*args)
        assert r.returncode != 0
        assert needle in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_stale_index_answers_with_a_note_then_updates(db, tmp_path):
    import shutil

    db2 = tmp_path / "s.duckdb"
    shutil.copy(db, db2)
    assert vfr("index", "--db", str(db2), "--quiet").returncode == 0  # all embeddings cached: fast
    extra = tmp_path / "extra.jsonl"
    extra.write_text('{"id": "giraffe", "text": "a purple giraffe riding a skateboard"}\n')
    assert vfr("import", str(extra), "--db", str(db2)).returncode == 0
    r = vfr("search", "purple giraffe", "--db", str(db2), "-f", "jsonl", "-k", "1")
    assert r.returncode == 0 and "1 added, 0 changed, 0 deleted" in r.stderr and "vfr index" in r.stderr
    assert json.loads(r.stdout)["hits"][0]["id"] != "giraffe"  # the index's committed state answers
    r = vfr("index", "--db", str(db2))
    assert r.returncode == 0 and "1 added, 0 changed, 0 deleted" in r.stderr, r.stderr
    r = vfr("search", "purple giraffe", "--db", str(db2), "-f", "jsonl", "-k", "1")
    assert json.loads(r.stdout)["hits"][0]["id"] == "giraffe" and "note" not in r.stderr


def test_delete_then_search_and_compact(db, tmp_path):
    import shutil

    db2 = tmp_path / "s.duckdb"
    shutil.copy(db, db2)
    assert vfr("index", "--db", str(db2), "--quiet").returncode == 0
    ids = tmp_path / "ids.txt"
    ids.write_bytes(b"\xef\xbb\xbfsample-126\nno-such-id\n")
    r = vfr("delete", "--ids-file", str(ids), "--db", str(db2))
    assert r.returncode == 0 and "deleted 1 image (1 id not in the store)" in r.stderr, r.stderr
    r = vfr("search", "neon OPEN sign in a diner window", "--db", str(db2), "-f", "jsonl", "-k", "20")
    assert "sample-126" not in r.stdout
    r = vfr("compact", "--db", str(db2), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["bytes_after"] > 0, r.stderr
    assert vfr("delete", "--db", str(db2)).returncode != 0  # nothing to delete: a clear error


def test_index_from_an_older_vfr_refused_then_rebuilt(db, tmp_path):
    import shutil

    db2 = tmp_path / "s.duckdb"
    shutil.copy(db, db2)
    legacy = tmp_path / "s.index"
    (legacy / "builds" / "x").mkdir(parents=True)
    (legacy / "current").symlink_to("builds/x")  # the rebuild-only layout of format 1-2
    r = vfr("search", "dog", "--db", str(db2))
    assert r.returncode != 0 and "older vfr" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = vfr("search", "dog", "--db", str(db2), "--rebuild", "-f", "jsonl", "-k", "1")
    assert r.returncode == 0, r.stderr


def test_export_and_stats(db, tmp_path):
    r = vfr("stats", "--db", str(db), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["documents"] == 180
    r = vfr("export", str(tmp_path / "out.parquet"), "--db", str(db))
    assert r.returncode == 0 and (tmp_path / "out.parquet").stat().st_size > 0


def test_vfr_db_env_var(db, tmp_path):
    r = vfr("stats", "--json", env={"VFR_DB": str(db)})
    assert r.returncode == 0 and json.loads(r.stdout)["database"] == str(db)
