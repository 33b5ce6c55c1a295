import json

import duckdb
import pytest

from vfr.describe.schema import RENDERER
from vfr.store.io import ImportError_, export, import_file, parse_file
from vfr.store.migrations import MIGRATIONS
from vfr.store.store import SCHEMA_VERSION, DescriptionRow, ImageRow, Store, StoreError


def _write(path, lines):
    path.write_text("\n".join(l if isinstance(l, str) else json.dumps(l) for l in lines) + "\n")
    return path


def test_migrations_apply_once_and_record_version(tmp_path):
    db = tmp_path / "s.duckdb"
    with Store(db) as s:
        assert s.schema_version() == SCHEMA_VERSION == MIGRATIONS[-1][0]
        assert s.migrate() == []  # idempotent
    con = duckdb.connect(str(db))
    assert con.execute("SELECT count(*) FROM schema_version").fetchone()[0] == len(MIGRATIONS)
    con.close()


def test_migration_numbers_are_increasing():
    versions = [v for v, _, _ in MIGRATIONS]
    assert versions == sorted(set(versions)) and versions[0] == 1


def test_read_only_missing_db_says_what_to_do(tmp_path):
    with pytest.raises(StoreError, match="vfr import"):
        Store(tmp_path / "missing.duckdb", read_only=True)


def test_import_is_idempotent_and_updates(tmp_path):
    f = _write(tmp_path / "a.jsonl", [{"id": "x", "text": "a red bus"}, {"id": "y", "text": "a cat", "caption": ["c1", "c2"]}])
    with Store(tmp_path / "s.duckdb") as s:
        assert len(import_file(s, f, RENDERER).records) == 2
        assert len(import_file(s, f, RENDERER).records) == 2
        assert s.count_documents() == 2 and s.stats()["captions"] == 2
        _write(f, [{"id": "x", "text": "a blue bus"}])
        import_file(s, f, RENDERER)
        assert s.get(["x"])["x"].text == "a blue bus"
        assert s.count_documents() == 2


@pytest.mark.parametrize("line,needle", [
    ('{"id": "a", "text": "ok"}\n{"id": "b"', ":2: not valid JSON"),
    ('{"id": "a", "text": "ok"}\n[1, 2]', ":2: expected a JSON object"),
    ('{"text": "no id"}', ":1: id: Field required"),
    ('{"id": "a", "text": ""}', ":1:"),
    ('{"id": "a"}', "needs 'text'"),
    ('{"id": "a", "text": "x", "bogus": 1}', "bogus"),
    ('{"id": "a", "json": {"caption": "x"}}', "setting"),
    ('{"id": 5, "text": "x"}', ":1: id:"),
    ('{"id": "a", "text": "ok"}\n{"id": "b", "text": "a \\ud800 b"}', ":2: contains a lone surrogate"),
])
def test_bad_record_names_file_and_line_and_imports_nothing(tmp_path, line, needle):
    f = tmp_path / "bad.jsonl"
    f.write_text(line)
    with Store(tmp_path / "s.duckdb") as s:
        with pytest.raises(ImportError_) as e:
            import_file(s, f, RENDERER)
        assert str(f) in str(e.value) and needle in str(e.value)
        assert s.count_documents() == 0


def test_missing_file_folder_and_empty(tmp_path):
    for p, needle in [(tmp_path / "nope.jsonl", "no such file"), (tmp_path, "is a folder")]:
        with pytest.raises(ImportError_, match=needle):
            parse_file(p, RENDERER)
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(ImportError_, match="no records"):
        parse_file(tmp_path / "empty.jsonl", RENDERER)


def test_json_only_record_is_rendered(tmp_path):
    desc = {"caption": "two dogs on a beach", "objects": [{"name": "dog", "count": 2}], "setting": {"scene": "beach"}}
    f = _write(tmp_path / "a.jsonl", [{"id": "d", "json": desc}])
    with Store(tmp_path / "s.duckdb") as s:
        import_file(s, f, RENDERER)
        doc = s.get(["d"])["d"]
        assert "two dog" in doc.text and doc.json["caption"] == "two dogs on a beach"


def test_export_roundtrip_parquet_and_jsonl(tmp_path):
    f = _write(tmp_path / "a.jsonl", [{"id": f"i{i}", "text": f"doc {i}", "caption": "c", "collection": "k",
                                      "meta": {"n": i}} for i in range(4)])
    with Store(tmp_path / "s.duckdb") as s:
        import_file(s, f, RENDERER)
        for name in ("o.parquet", "o.jsonl"):
            assert export(s, tmp_path / name) == 4
    with Store(tmp_path / "t.duckdb") as t:
        import_file(t, tmp_path / "o.parquet", RENDERER)
        import_file(t, tmp_path / "o.jsonl", RENDERER)
        assert t.fingerprint() == Store(tmp_path / "s.duckdb", read_only=True).fingerprint()
        assert t.get(["i2"])["i2"].meta == {"n": 2}


def test_fingerprint_changes_with_content(tmp_path):
    with Store(tmp_path / "s.duckdb") as s:
        s.upsert([ImageRow("a")], [DescriptionRow("a", "one")])
        f1 = s.fingerprint()
        s.upsert([ImageRow("a")], [DescriptionRow("a", "two")])
        f2 = s.fingerprint()
        s.upsert([ImageRow("a")], [DescriptionRow("a", "two")])
        assert f1 != f2 == s.fingerprint()
        assert s.delete(["a"]) == ["a"] and s.fingerprint()["documents"] == 0


def test_embedding_cache_roundtrip(tmp_path):
    import numpy as np

    with Store(tmp_path / "s.duckdb") as s:
        v = np.arange(6, dtype="float32").reshape(2, 3)
        s.cache_embeddings("m", ["h1", "h2"], v)
        s.cache_embeddings("m", ["h1"], v[:1] + 100)  # first write wins: same text, same model
        got = s.cached_embeddings("m", ["h1", "h2", "h3"])
        assert set(got) == {"h1", "h2"} and got["h2"].tolist() == [3.0, 4.0, 5.0]
        assert s.cached_embeddings("other", ["h1"]) == {}


def test_reopened_store_serves_cache_after_single_row_reads(tmp_path):
    """DuckDB 2 blocks register() after an unfinished fetchone(); the store must never leave one."""
    import numpy as np

    db = tmp_path / "s.duckdb"
    with Store(db) as s:
        s.cache_embeddings("m", ["h"], np.ones((1, 2), dtype="float32"))
    with Store(db) as s:
        s.count_documents()
        s.fingerprint()
        assert s.cached_embeddings("m", ["h"])["h"].tolist() == [1.0, 1.0]
        s.upsert([ImageRow("a")], [DescriptionRow("a", "x")])
        assert s.export_relation().fetchall()


def _hold_lock(db, seconds: float):
    """Another process that opens `db` for writing, says so on stdout, and keeps it for `seconds`."""
    import subprocess
    import sys

    code = ("import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('locked', flush=True); "
            "time.sleep(float(sys.argv[2])); c.close()")
    proc = subprocess.Popen([sys.executable, "-c", code, str(db), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_writer_waits_for_the_lock_then_proceeds(tmp_path):
    db = tmp_path / "w.duckdb"
    Store(db).close()
    holder = _hold_lock(db, 1.5)
    try:
        with Store(db, lock_timeout=120) as store:  # waits until the holder lets go
            assert store.count_documents() == 0
        assert holder.poll() is not None, "opened while another process held the write lock"
    finally:
        holder.wait(timeout=120)


def test_writer_gives_up_after_the_timeout_with_a_clear_message(tmp_path):
    db = tmp_path / "w.duckdb"
    Store(db).close()
    holder = _hold_lock(db, 30)
    try:
        with pytest.raises(StoreError, match="in use by another process.*VFR_LOCK_TIMEOUT"):
            Store(db, lock_timeout=0.3)
    finally:
        holder.kill()
        holder.wait()
