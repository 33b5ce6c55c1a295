"""Pair sources, their validation errors, the split by image and group-free batching (no model, no JVM)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from vfr.retrieve.calibrate.pairs import (Pair, PairError, group_free_batches, load_pairs, split_by_group,
                                      write_jsonl)


def write(path: Path, lines: list) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    return path


JOIN = [
    {"coco_id": 1, "captions": ["a dog on a couch", "brown dog resting"],
     "descriptions": {"halc/llava": "A brown dog lies on a grey couch.", "opera/shikra": "A dog. Couch."}},
    {"coco_id": 2, "captions": ["two cats"], "descriptions": {"halc/llava": "Two cats sleep on a bed."}},
]


def test_generic_jsonl_groups_by_document_unless_given(tmp_path):
    f = write(tmp_path / "p.jsonl", [{"query": "q1", "document": "d1"}, {"query": "q2", "document": "d1"},
                                      {"query": "q3", "document": "d2", "group": 7, "negative": "d1"}, ""])
    pairs = load_pairs(str(f))
    assert pairs == [Pair("q1", "d1", "d1"), Pair("q2", "d1", "d1"), Pair("q3", "d2", "7", "d1")]


def test_coco_join_all_longest_and_source_filter(tmp_path):
    f = write(tmp_path / "join.jsonl", JOIN)
    assert len(load_pairs(str(f))) == 2 * 2 + 1
    longest = load_pairs(str(f), descriptions="longest")
    assert [p.document for p in longest] == ["A brown dog lies on a grey couch."] * 2 + ["Two cats sleep on a bed."]
    only = load_pairs(str(f), description_sources=["opera/"])
    assert {p.document for p in only} == {"A dog. Couch."} and {p.group for p in only} == {"1"}


def test_round_trip_through_write_jsonl(tmp_path):
    pairs = [Pair("q", "d", "g", "n"), Pair("q2", "d2", "h")]
    write_jsonl(pairs, tmp_path / "o.jsonl")
    assert load_pairs(str(tmp_path / "o.jsonl")) == pairs


@pytest.mark.parametrize("lines, message", [
    ([{"query": "q", "document": "d"}, "{not json"], r"p\.jsonl:2: not valid JSON"),
    ([{"query": "q", "document": "d"}, {"query": "q"}], r"p\.jsonl:2: missing \"document\""),
    ([{"query": " ", "document": "d"}], r"p\.jsonl:1: \"query\" must be a non-empty string"),
    ([{"query": "q", "document": 3}], r"p\.jsonl:1: \"document\" must be a non-empty string"),
    ([{"query": "q", "document": "d"}, [1, 2]], r"p\.jsonl:2: expected a JSON object, got list"),
    ([{"query": "q", "document": "d", "negative": ""}], r"p\.jsonl:1: \"negative\" must be"),
    ([{"text": "x"}], r"p\.jsonl:1: cannot tell the pair format"),
    (["", ""], r"p\.jsonl: empty file"),
])
def test_bad_pair_files_name_file_and_line(tmp_path, lines, message):
    f = write(tmp_path / "p.jsonl", lines)
    with pytest.raises(PairError, match=message):
        load_pairs(str(f))


def test_bad_join_line_and_non_utf8(tmp_path):
    f = write(tmp_path / "j.jsonl", [JOIN[0], {"coco_id": 3, "captions": "not a list", "descriptions": {}}])
    with pytest.raises(PairError, match=r"j\.jsonl:2: a COCO join line needs"):
        load_pairs(str(f))
    b = tmp_path / "b.jsonl"
    b.write_bytes(b'{"query": "q", "document": "d"}\n\xff\xfe\n')
    with pytest.raises(PairError, match=r"b\.jsonl:2: not UTF-8"):
        load_pairs(str(b))


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(PairError, match="no such file"):
        load_pairs(str(tmp_path / "nope.jsonl"))
    f = write(tmp_path / "p.jsonl", [{"query": "q", "document": "d"}])
    with pytest.raises(PairError, match="unknown pair format"):
        load_pairs(str(f), "csv")  # type: ignore[arg-type]


def test_store_source(tmp_path):
    from vfr.store.store import DescriptionRow, ImageRow, Store

    db = tmp_path / "s.duckdb"
    with Store(db) as s:
        s.upsert([ImageRow("a"), ImageRow("b"), ImageRow("c")],
                 [DescriptionRow("a", "A dog on a couch."), DescriptionRow("b", "Two cats.")],
                 captions=[("a", "dog"), ("a", "a brown dog"), ("b", "cats"), ("c", "no description")])
    pairs = load_pairs(str(db))
    assert set(pairs) == set([Pair("dog", "A dog on a couch.", "a"), Pair("a brown dog", "A dog on a couch.", "a"),
                                    Pair("cats", "Two cats.", "b")])
    empty = tmp_path / "e.duckdb"
    Store(empty).close()
    with pytest.raises(PairError, match="no pairs found"):
        load_pairs(str(empty))


def test_split_is_by_group_and_seeded():
    pairs = [Pair(f"q{i}{j}", f"d{i}", str(i)) for i in range(20) for j in range(3)]
    train, held = split_by_group(pairs, 0.2, seed=1)
    assert {p.group for p in train}.isdisjoint({p.group for p in held})
    assert len({p.group for p in held}) == 4 and len(train) + len(held) == len(pairs)
    assert split_by_group(pairs, 0.2, seed=1) == (train, held)
    assert split_by_group(pairs, 0.0, seed=1) == (pairs, [])
    with pytest.raises(PairError, match="too few"):
        split_by_group(pairs[:6], 0.2, seed=0)


def test_group_free_batches_never_repeat_a_group():
    items = [(g, k) for g in range(5) for k in range(g + 1)]  # group 4 has 5 items
    batches = group_free_batches(items, 3, key=lambda x: x[0])
    assert sorted(x for b in batches for x in b) == sorted(items)
    assert all(len(b) <= 3 and len({x[0] for x in b}) == len(b) for b in batches)
