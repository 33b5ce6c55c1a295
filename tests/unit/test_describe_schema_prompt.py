"""Schema bounds, renderer, prompt versioning and redaction."""
from __future__ import annotations

import json

import pytest

from vfr.describe import prompt
from vfr.describe.prompt import redact, redact_text
from vfr.describe.schema import RENDERER_VERSION, SceneDescription


def _walk(node, defs, path="$"):
    if "$ref" in node:
        yield from _walk(defs[node["$ref"].split("/")[-1]], defs, path)
        return
    for key in ("anyOf", "oneOf", "allOf"):
        for i, sub in enumerate(node.get(key, [])):
            yield from _walk(sub, defs, f"{path}|{i}")
    t = node.get("type")
    yield path, node, t
    for name, sub in node.get("properties", {}).items():
        yield from _walk(sub, defs, f"{path}.{name}")
    if "items" in node:
        yield from _walk(node["items"], defs, f"{path}[]")


def test_every_string_and_array_is_bounded():
    schema = SceneDescription.json_schema()
    defs = schema.get("$defs", {})
    for path, node, t in _walk(schema, defs):
        if t == "string":
            assert "maxLength" in node or "enum" in node or "const" in node, path
        if t == "array":
            assert "maxItems" in node, path
        if t == "integer":
            assert "maximum" in node, path
        if t == "object":
            assert node.get("additionalProperties") is False, path


def test_required_fields_and_names_stay():
    schema = SceneDescription.json_schema()
    assert set(schema["properties"]) >= {"caption", "objects", "relations", "actions", "setting", "visible_text", "style"}
    assert set(schema["required"]) == {"caption", "setting"}


def test_renderer_words_for_bm25_and_caption_first():
    d = SceneDescription.model_validate({
        "caption": "two red buses on a street",
        "objects": [{"name": "bus", "count": 2, "colors": ["red"], "size": "large", "states": ["parked"],
                     "position": "left"}],
        "relations": [{"subject": "bus", "predicate": "parked beside", "object": "curb"}],
        "actions": ["people waiting"], "setting": {"scene": "city street", "indoor": False, "time_of_day": "day",
                                                   "weather": "rainy"},
        "visible_text": ["No 11"], "style": "wide shot"})
    text = d.to_text()
    assert text.startswith("Two red buses on a street.")
    for words in ("two large red bus", "parked", "Bus parked beside curb.", "outdoors", "at day", "rainy",
                  '"No 11"', "Style: wide shot"):
        assert words in text
    assert RENDERER_VERSION


def test_unknown_fields_and_overlong_values_are_rejected():
    ok = {"caption": "x", "setting": {"scene": "y"}}
    SceneDescription.model_validate(ok)
    with pytest.raises(ValueError):
        SceneDescription.model_validate({**ok, "name_of_person": "Bob"})
    with pytest.raises(ValueError):
        SceneDescription.model_validate({**ok, "caption": "x" * 201})
    with pytest.raises(ValueError):
        SceneDescription.model_validate({**ok, "objects": [{"name": "a"}] * 17})


@pytest.mark.parametrize("text, expected", [
    ("mail john.doe@example.com now", "mail [email] now"),
    ("see https://shop.example.org/a?b=1 today", "see [url] today"),
    ("www.example.de", "[url]"),
    ("call +44 (0)20 7946 0958", "call [phone]"),
    ("tel 555-123-4567", "tel [phone]"),
    ("plate AB12 CDE", "plate [plate]"),
    ("7ABC123", "[plate]"),
    ("M-AB 1234", "[plate]"),
    ("account 123456789", "account [phone]"),
    ("id 12345", "id [number]"),
    ("EXIT 12", "EXIT 12"),
    ("SALE 50%", "SALE 50%"),
    ("Route 66", "Route 66"),
    ("since 1999", "since 1999"),
    ("STOP", "STOP"),
])
def test_redact_text(text, expected):
    assert redact_text(text) == expected


def test_redact_description_keeps_bounds_and_other_fields():
    d = SceneDescription.model_validate({
        "caption": "a van with phone 0301234567 painted on it" + " x" * 75,
        "setting": {"scene": "street"}, "visible_text": ["bob@example.com", "OPEN"], "actions": ["driving"]})
    r = redact(d)
    assert "[phone]" in r.caption and len(r.caption) <= 200
    assert r.visible_text == ["[email]", "OPEN"]
    assert r.actions == ["driving"]
    SceneDescription.model_validate(json.loads(r.model_dump_json()))


def test_prompt_version_and_messages():
    assert prompt.prompt_version(True) == prompt.PROMPT_VERSION
    assert prompt.prompt_version(False) != prompt.PROMPT_VERSION
    msgs = prompt.messages({"type": "image_url", "image_url": {"url": "data:,"}})
    assert msgs[0]["role"] == "system" and "never identify" in msgs[0]["content"]
    assert msgs[1]["content"][0]["type"] == "image_url"
