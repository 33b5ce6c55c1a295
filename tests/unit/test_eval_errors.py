"""A bad benchmark file fails with a message naming the file and the line (or item)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from vfr.eval import datasets as ds


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_generic_jsonl_bad_json_names_the_line(tmp_path: Path) -> None:
    p = _write(tmp_path / "b.jsonl", ['{"id": "a", "document": "x", "queries": ["q"]}', "", "{oops"])
    with pytest.raises(ds.BenchmarkError, match=rf"{p}:3: not a JSON object"):
        ds.load_generic_jsonl(p)


@pytest.mark.parametrize("line,message", [
    ('{"document": "x", "queries": ["q"]}', "missing field 'id'"),
    ('{"id": "a", "document": "", "queries": ["q"]}', "field 'document' is empty"),
    ('{"id": "a", "document": "x", "queries": "q"}', "'queries' must be a list"),
    ('["not", "an", "object"]', "expected a JSON object"),
])
def test_generic_jsonl_bad_records(tmp_path: Path, line: str, message: str) -> None:
    p = _write(tmp_path / "b.jsonl", ['{"id": "z", "document": "y", "queries": ["q"]}', line])
    with pytest.raises(ds.BenchmarkError, match=rf"{p}:2: .*{message}"):
        ds.load_generic_jsonl(p)


def test_generic_jsonl_duplicate_id(tmp_path: Path) -> None:
    rec = json.dumps({"id": "a", "document": "x", "queries": ["q"]})
    with pytest.raises(ds.BenchmarkError, match=r":2: id 'a' appears twice"):
        ds.load_generic_jsonl(_write(tmp_path / "b.jsonl", [rec, rec]))


def test_joined_missing_field(tmp_path: Path) -> None:
    p = _write(tmp_path / "j.jsonl", [json.dumps({"image_name": "COCO_val2014_000000000001.jpg", "coco_id": 1,
                                                  "captions": ["a"], "descriptions": {}})])
    with pytest.raises(ds.BenchmarkError, match=rf"{p}:1: 'descriptions' is empty"):
        ds.load_joined(p)


def test_json_syntax_error_names_the_line(tmp_path: Path) -> None:
    p = tmp_path / "k.json"
    p.write_text('[\n  {"image_name": "1.jpg",\n   "captions": ["a"]\n  ,,\n]')
    with pytest.raises(ds.BenchmarkError, match=rf"{p}:4: invalid JSON"):
        ds.load_karpathy(p)


def test_karpathy_bad_item(tmp_path: Path) -> None:
    p = tmp_path / "k.json"
    p.write_text(json.dumps([{"image_name": "1.jpg", "captions": ["a"]}, {"image_name": "2.jpg", "captions": []}]))
    with pytest.raises(ds.BenchmarkError, match=rf"{p} item 1: 'captions' must be a non-empty list"):
        ds.load_karpathy(p)


def test_sugarcrepe_bad_filename(tmp_path: Path) -> None:
    (tmp_path / "swap_obj.json").write_text(json.dumps({"0": {"filename": "cat.png", "caption": "a",
                                                              "negative_caption": "b"}}))
    with pytest.raises(ds.BenchmarkError, match=r"swap_obj.json item '0': not a COCO image name"):
        ds.load_sugarcrepe(tmp_path)


def test_beir_qrels_errors(tmp_path: Path) -> None:
    _write(tmp_path / "corpus.jsonl", ['{"_id": "d1", "title": "", "text": "hello"}'])
    _write(tmp_path / "queries.jsonl", ['{"_id": "q1", "text": "hi"}'])
    (tmp_path / "qrels").mkdir()
    _write(tmp_path / "qrels" / "test.tsv", ["query-id\tcorpus-id\tscore", "q1\td1\t1", "q1\td9\t1"])
    with pytest.raises(ds.BenchmarkError, match=r"test.tsv:3: document 'd9' is not in corpus.jsonl"):
        ds.load_beir(tmp_path)
    _write(tmp_path / "qrels" / "test.tsv", ["q1\td1\tone"])
    with pytest.raises(ds.BenchmarkError, match=r"test.tsv:1: score 'one' is not an integer"):
        ds.load_beir(tmp_path)
    _write(tmp_path / "qrels" / "test.tsv", ["q1\td1\t1"])
    bm = ds.load_beir(tmp_path)
    assert bm.qrels == {"q1": {"d1": 1}} and bm.corpus == {"d1": "hello"}


def test_missing_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ds.BenchmarkError, match="no such file.*VFR_DATA"):
        ds.load_joined(tmp_path / "nope.jsonl")
