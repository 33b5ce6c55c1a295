"""Import and export as a user relies on them (issue 11, items 2, 5, 8, 9, 13): an export re-imports into
an identical store, duplicates are refused with both lines, captions are replaced, BOM and gzip files read,
and JSON errors name the file's line only."""
import gzip
import json
import re
from datetime import datetime

import pytest
from typer.testing import CliRunner

from vfr.describe.schema import RENDERER
from vfr.store.io import ImportError_, export, import_file
from vfr.store.store import DescriptionRow, ImageRow, Store


def _write(path, records, prefix: bytes = b"", compress: bool = False):
    data = prefix + "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records).encode("utf-8")
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def _dump(db) -> dict:
    """Everything a user put into a store: images, descriptions (every column, JSON parsed), captions,
    and each image's current document."""
    with Store(db, read_only=True) as s:
        q = lambda sql: s.con.execute(sql).fetchall()  # noqa: E731
        images = q("SELECT id, path, collection, size, width, height FROM images ORDER BY id")
        descs = [(*r[:4], json.loads(r[4]) if r[4] else None, *r[5:7], json.loads(r[7]) if r[7] else None, *r[8:])
                 for r in q("SELECT image_id, model, prompt_version, renderer_version, json, text, caption, meta, "
                            "text_hash, created_at FROM descriptions ORDER BY ALL")]
        captions = q("SELECT image_id, text, source FROM captions ORDER BY ALL")
        current = {i: (r.text, r.model, r.json, r.caption, r.meta) for i, r in s.get([i for i, *_ in images]).items()}
    return {"images": images, "descriptions": descs, "captions": captions, "current": current}


@pytest.fixture
def rich_store(tmp_path):
    """Two models for one image imported one after the other (the issue's reproduction), a describe-like
    row with path/size/width/height/JSON/caption/meta, captions, collections."""
    db = tmp_path / "orig.duckdb"
    with Store(db) as s:
        import_file(s, _write(tmp_path / "b.jsonl", [{"id": "k1", "text": "zebra B", "model": "model-b"}]))
        import_file(s, _write(tmp_path / "a.jsonl", [
            {"id": "k1", "text": "giraffe A newer", "model": "model-a", "caption": ["two giraffes", "a zoo"]},
            {"id": "k2", "text": "a red bus", "collection": "streets", "meta": {"n": 2}, "caption": "bus"}]))
        desc = {"caption": "a cat on a mat", "objects": [{"name": "cat", "count": 1}], "setting": {"scene": "room"}}
        s.upsert([ImageRow("k3", "/photos/cat.jpg", "pets", 12345, 640, 480)],
                 [DescriptionRow("k3", RENDERER(desc), "qwen-vl", "p1", RENDERER.version, json.dumps(desc),
                                 "a cat on a mat", json.dumps({"job": "1", "engine": "offline"}))])
    return db


@pytest.mark.parametrize("name", ["out.jsonl", "out.parquet"])
def test_export_then_import_gives_an_identical_store(rich_store, tmp_path, name):
    with Store(rich_store, read_only=True) as s:
        assert export(s, tmp_path / name) == 4
    with Store(tmp_path / "copy.duckdb") as t:
        import_file(t, tmp_path / name, RENDERER)
    want, got = _dump(rich_store), _dump(tmp_path / "copy.duckdb")
    assert got == want
    assert got["current"]["k1"][0] == "giraffe A newer" and len([d for d in got["descriptions"] if d[0] == "k1"]) == 2
    assert got["images"][2] == ("k3", "/photos/cat.jpg", "pets", 12345, 640, 480)
    with Store(tmp_path / "copy.duckdb") as t:  # importing the export again changes nothing
        import_file(t, tmp_path / name, RENDERER)
    assert _dump(tmp_path / "copy.duckdb") == want


def test_the_current_document_is_one_description_whole(tmp_path):
    """The newest description is the document, all of it: not its text with an older one's JSON and caption."""
    with Store(tmp_path / "s.duckdb") as s:
        desc = {"caption": "a dog", "objects": [{"name": "dog", "count": 1}], "setting": {"scene": "park"}}
        s.upsert([ImageRow("x")], [DescriptionRow("x", RENDERER(desc), "vlm", "p1", json=json.dumps(desc),
                                                  caption="a dog", meta='{"job": 1}')])
        import_file(s, _write(tmp_path / "t.jsonl", [{"id": "x", "text": "hand-written text", "model": "human"}]))
        doc = s.get(["x"])["x"]
        assert (doc.text, doc.model, doc.json, doc.caption, doc.meta) == ("hand-written text", "human", None, None, None)
        rec = s.document_records(["x"])["x"]  # what the index is built from
    assert (rec.text, rec.model, rec.json, rec.caption, rec.meta) == ("hand-written text", "human", None, None, None)


def test_later_lines_of_one_file_are_newer(tmp_path):
    f = _write(tmp_path / "t.jsonl", [{"id": "x", "text": "first", "model": "m2"}, {"id": "x", "text": "second", "model": "m1"}])
    with Store(tmp_path / "s.duckdb") as s:
        import_file(s, f)
        assert s.get(["x"])["x"].text == "second" and s.stats()["descriptions"] == 2


def test_duplicate_ids_in_one_file_are_refused_with_both_lines(tmp_path):
    lines = [{"id": f"d{i}", "text": f"doc {i}"} for i in range(10)]
    lines.insert(8, {"id": "d2", "text": "doc 2 again"})  # 11 lines, 10 distinct ids: line 9 repeats line 3
    f = _write(tmp_path / "dup.jsonl", lines)
    with Store(tmp_path / "s.duckdb") as s:
        with pytest.raises(ImportError_) as e:
            import_file(s, f)
        assert f"{f}:9: duplicate of line 3" in str(e.value) and "--allow-duplicates" in str(e.value)
        assert s.count_documents() == 0
        parsed = import_file(s, f, allow_duplicates=True)
        assert (len(parsed.records), parsed.replaced) == (10, 1) and s.get(["d2"])["d2"].text == "doc 2 again"


def test_an_image_with_two_collections_in_one_file_is_refused(tmp_path):
    f = _write(tmp_path / "c.jsonl", [{"id": "x", "text": "a", "model": "m1", "collection": "one"},
                                      {"id": "x", "text": "b", "model": "m2", "collection": "two"}])
    with Store(tmp_path / "s.duckdb") as s, pytest.raises(ImportError_, match=r":2: image 'x' has collection 'two' "
                                                                            r"here but 'one' at line 1"):
        import_file(s, f)


def test_cli_import_refuses_duplicates_and_allows_them_with_the_flag(tmp_path):
    from vfr.cli import app

    f = _write(tmp_path / "dup.jsonl", [{"id": "a", "text": "one"}, {"id": "b", "text": "two"}, {"id": "a", "text": "three"}])
    db = tmp_path / "s.duckdb"
    r = CliRunner().invoke(app, ["import", str(f), "--db", str(db)])
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit)
    assert ":3: duplicate of line 1" in r.output
    r = CliRunner().invoke(app, ["import", str(f), "--db", str(db), "--allow-duplicates"])
    assert r.exit_code == 0, r.output
    assert "imported 2 records (2 images)" in r.output and "1 duplicate line replaced" in r.output


def test_reimport_replaces_captions(tmp_path):
    with Store(tmp_path / "s.duckdb") as s:
        import_file(s, _write(tmp_path / "1.jsonl", [{"id": "x", "text": "t", "caption": ["old one", "old two"]}]))
        import_file(s, _write(tmp_path / "2.jsonl", [{"id": "x", "text": "t", "caption": ["new"]}]))
        assert s.captions() == [("x", "new")]
        import_file(s, _write(tmp_path / "3.jsonl", [{"id": "x", "text": "t2"}]))  # no caption field: kept
        assert s.captions() == [("x", "new")]
        import_file(s, _write(tmp_path / "4.jsonl", [{"id": "x", "text": "t2", "caption": []}]))  # empty: cleared
        assert s.captions() == []


@pytest.mark.parametrize("name,bom,compress", [("bom.jsonl", True, False), ("plain.jsonl.gz", False, True),
                                                ("bom.jsonl.gz", True, True), ("noext", False, True)])
def test_bom_and_gzip_files_import(tmp_path, name, bom, compress):
    f = _write(tmp_path / name, [{"id": "a", "text": "first"}, {"id": "b", "text": "second"}],
               prefix=b"\xef\xbb\xbf" if bom else b"", compress=compress)
    with Store(tmp_path / "s.duckdb") as s:
        import_file(s, f)
        assert s.count_documents() == 2 and s.get(["a"])["a"].text == "first"


def test_malformed_json_names_the_files_line_only(tmp_path):
    f = _write(tmp_path / "bad.jsonl", [{"id": f"i{i}", "text": "x"} for i in range(5)] + ['{"id": "a", "text": "x"'])
    with Store(tmp_path / "s.duckdb") as s, pytest.raises(ImportError_) as e:
        import_file(s, f)
    msg = str(e.value)
    assert re.fullmatch(re.escape(str(f)) + r":6: not valid JSON \([^()]* at column \d+\)", msg), msg
    assert "line" not in msg.split(":6:")[1]


def test_created_at_with_a_time_zone_is_stored_as_local_time(tmp_path):
    f = _write(tmp_path / "t.jsonl", [{"id": "x", "text": "t", "created_at": "2024-05-01T12:00:00+00:00"}])
    with Store(tmp_path / "s.duckdb") as s:
        import_file(s, f)
        got = s.con.execute("SELECT created_at FROM descriptions").fetchone()[0]
    assert got == datetime.fromisoformat("2024-05-01T12:00:00+00:00").astimezone().replace(tzinfo=None)


def test_engine_upsert_refuses_duplicate_records(tmp_path):
    from vfr.engine import Engine, EngineError

    eng = Engine.open(tmp_path / "s.duckdb", create=True)
    with pytest.raises(EngineError, match="record 2: duplicate of record 1"):
        eng.upsert([{"id": "a", "text": "one"}, {"id": "a", "text": "two"}])
    with Store(tmp_path / "s.duckdb", read_only=True) as s:
        assert s.count_documents() == 0


@pytest.mark.parametrize("line", ['{"id": "a", "text": "x", "meta": {"v": NaN}}', '{"id": "a", "text": "x", "meta": {"v": -Infinity}}'])
def test_nan_and_infinity_are_not_json(tmp_path, line):
    """Python's json module reads NaN and Infinity; an import must not, or `vfr export` would write invalid JSON."""
    f = _write(tmp_path / "n.jsonl", [line])
    with Store(tmp_path / "s.duckdb") as s, pytest.raises(ImportError_, match=r":1: not valid JSON \(.* is not a JSON number\)"):
        import_file(s, f)


def test_cli_import_and_export_count_one_in_the_singular(tmp_path):
    from vfr.cli import app

    f = _write(tmp_path / "one.jsonl", [{"id": "a", "text": "a red kite over a beach"}])
    db = tmp_path / "s.duckdb"
    r = CliRunner().invoke(app, ["import", str(f), "--db", str(db)])
    assert r.exit_code == 0, r.output
    assert "imported 1 record (1 image)" in r.output
    r = CliRunner().invoke(app, ["export", str(tmp_path / "out.jsonl"), "--db", str(db)])
    assert r.exit_code == 0, r.output
    assert "exported 1 description to" in r.output
