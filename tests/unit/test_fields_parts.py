"""Field extraction for field-aware BM25 and sentence parts for multi-vector dense (no JVM, no model)."""
import json

import pytest

from vfr.demo import sample_path
from vfr.retrieve.fields import FIELDS, document_fields, first_sentence, parse_weights
from vfr.retrieve.multivector import MAX_PARTS, split_parts
from vfr.retrieve.writer import IndexConfig


def test_structured_description_splits_into_its_fields():
    rec = json.loads(sample_path().read_text().splitlines()[0])
    f = document_fields("ignored", rec["json"])
    assert set(f) == set(FIELDS)
    assert f["caption"] == rec["json"]["caption"]
    assert "umbrella" in f["objects"] and "red" not in f["objects"]
    assert "red" in f["attributes"] and "wool" in f["attributes"] and "snow-covered" in f["attributes"]
    assert "woman holding umbrella" in f["relations"] and "walking in the snow" in f["relations"]
    assert "snowing" in f["setting"] and "outdoors" in f["setting"] and "street photo" in f["setting"]
    assert f["text"] == ""


def test_free_text_has_its_first_sentence_as_caption():
    f = document_fields("The image shows a dog. It sits on a red couch!", None)
    assert f["caption"] == "The image shows a dog." and all(f[k] == "" for k in FIELDS if k != "caption")
    assert first_sentence("  ") == "" and first_sentence("no end") == "no end"


def test_weights_parse_and_config_round_trips_through_json():
    w = parse_weights("caption=0.5, text=2")
    assert w == (("caption", 0.5), ("text", 2.0)) and parse_weights("none") == ()
    c = IndexConfig(fields=w, parts="sentences", parts_weight=0.3)
    again = IndexConfig(**json.loads(json.dumps(c.to_dict())))
    assert again == c and again.to_dict() == c.to_dict()
    assert c.scoring() == {"k1": 0.9, "b": 0.4, "fields": [["caption", 0.5], ["text", 2.0]], "parts": "sentences",
                           "parts_weight": 0.3}
    assert IndexConfig().scoring() == {"k1": 0.9, "b": 0.4}  # plain indexes keep their earlier tuning key
    with pytest.raises(ValueError):
        IndexConfig(fields=(("colour", 1.0),))


def test_parts_are_sentences_bounded_and_never_empty():
    assert split_parts("A dog. A cat! A bird? Done; end") == ["A dog.", "A cat!", "A bird?", "Done;", "end"]
    assert split_parts("") == [""] and split_parts("one sentence") == ["one sentence"]
    many = split_parts(" ".join(f"S{i}." for i in range(100)))
    assert len(many) == MAX_PARTS and many[-1].startswith(f"S{MAX_PARTS - 1}.") and many[-1].endswith("S99.")
