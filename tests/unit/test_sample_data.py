"""The bundled sample scene descriptions (vfr/data/sample_descriptions.jsonl) are well-formed and schema-valid."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from vfr.describe.schema import SceneDescription

SAMPLE = Path(__file__).resolve().parents[2] / "vfr" / "data" / "sample_descriptions.jsonl"


@pytest.fixture(scope="module")
def records() -> list[dict]:
    with SAMPLE.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_enough_records(records):
    assert len(records) >= 150


def test_unique_ids(records):
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids))


def test_record_keys(records):
    for r in records:
        assert set(r) == {"id", "collection", "json", "caption"}, r.get("id")
        assert isinstance(r["collection"], str) and r["collection"]


def test_every_json_validates_and_renders(records):
    for r in records:
        desc = SceneDescription.model_validate(r["json"])
        text = desc.to_text()
        assert text.strip(), r["id"]
        assert len(text) < 2000, (r["id"], len(text))


def test_captions_present(records):
    for r in records:
        caps = r["caption"]
        assert isinstance(caps, list) and len(caps) >= 1, r["id"]
        assert all(isinstance(c, str) and c.strip() for c in caps), r["id"]


def test_collections_diverse(records):
    assert len({r["collection"] for r in records}) >= 12
