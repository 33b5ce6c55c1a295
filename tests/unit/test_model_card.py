"""retrieve/calibrate/card.py: the images a model folder trained on, and `vfr tune` leaving their queries out."""
import json
from pathlib import Path

import pytest

from vfr.eval.tasks import RetrievalTask
from vfr.eval.tune import TuneInputError, unseen_only
from vfr.retrieve.calibrate.card import trained_groups


def _calibrated(path: Path, ids) -> Path:
    path.mkdir(parents=True)
    (path / "calibration.json").write_text(json.dumps({"train_group_ids": ids}))
    return path


def _soup(path: Path, parts: list[dict]) -> Path:
    path.mkdir(parents=True)
    (path / "soup.json").write_text(json.dumps({"ingredients": parts}))
    return path


def test_a_calibrated_model_records_its_images_and_others_say_nothing(tmp_path):
    assert trained_groups(_calibrated(tmp_path / "m", ["a", 7])) == {"a", "7"}
    assert trained_groups(_calibrated(tmp_path / "empty", [])) is None
    (tmp_path / "plain").mkdir()
    assert trained_groups(tmp_path / "plain") is None and trained_groups(tmp_path / "missing") is None
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "calibration.json").write_text("{not json")
    assert trained_groups(tmp_path / "bad") is None


def test_a_soup_saw_what_any_ingredient_saw(tmp_path):
    a, b = _calibrated(tmp_path / "a", ["1", "2"]), _calibrated(tmp_path / "b", ["2", "3"])
    plain = tmp_path / "packaged"
    plain.mkdir()
    soup = _soup(tmp_path / "soup", [{"model": str(a), "location": str(tmp_path / "gone")},
                                     {"model": str(b), "location": str(b)}, {"model": str(plain)}])
    assert trained_groups(soup) == {"1", "2", "3"}  # a moved: found by its name; the packaged model saw none
    nested = _soup(tmp_path / "nested", [{"model": str(soup)}, {"model": str(_calibrated(tmp_path / "c", ["9"]))}])
    assert trained_groups(nested) == {"1", "2", "3", "9"}


def test_a_soup_with_an_ingredient_of_unknown_images_says_nothing(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    (old / "calibration.json").write_text(json.dumps({"pairs": 100}))  # calibrated before images were recorded
    soup = _soup(tmp_path / "soup", [{"model": str(_calibrated(tmp_path / "a", ["1"]))}, {"model": str(old)}])
    assert trained_groups(soup) is None
    only_plain = tmp_path / "plain"
    only_plain.mkdir()
    assert trained_groups(_soup(tmp_path / "wise", [{"model": str(only_plain)}])) is None
    gone = {"model": str(tmp_path / "deleted"), "location": str(tmp_path / "deleted")}
    assert trained_groups(_soup(tmp_path / "lost", [{"model": str(tmp_path / "a")}, gone])) is None


def _task() -> RetrievalTask:
    return RetrievalTask("t2i", "dev", {"1": "d1", "2": "d2", "3": "d3"},
                         {"q1": "a", "q1b": "b", "q2": "c", "q3": "d"},
                         {"q1": {"1": 1}, "q1b": {"1": 1}, "q2": {"2": 1}, "q3": {"3": 1, "1": 0}})


def test_tuning_leaves_out_the_queries_and_the_documents_of_training_images(tmp_path):
    lines = []
    t = unseen_only(_task(), str(_calibrated(tmp_path / "m", ["1"])), "dev", lines.append)
    assert set(t.queries) == set(t.qrels) == {"q2", "q3"}  # "1" is judged non-relevant for q3: not its target
    assert t.corpus == {"2": "d2", "3": "d3"}  # a distractor the encoder has seen no longer competes
    assert lines == ["left out 2 of 4 dev queries whose image the encoder trained on (1 of its 3 targets; such "
                     "queries reward memorising, not ranking) and 1 document of those images (distractors it has "
                     "seen); --keep-seen tunes on them too"]


def test_a_training_image_with_no_dev_query_still_leaves_the_corpus(tmp_path):
    task = RetrievalTask("t2i", "dev", {"1": "d1", "2": "d2", "3": "d3", "4": "d4"}, {"q2": "c", "q3": "d"},
                         {"q2": {"2": 1}, "q3": {"3": 1}})
    lines = []
    t = unseen_only(task, str(_calibrated(tmp_path / "m", ["1", "4"])), "dev", lines.append)
    assert t.qrels == task.qrels and t.corpus == {"2": "d2", "3": "d3"}
    assert lines and "left out 0 of 2 dev queries" in lines[0] and "2 documents" in lines[0]


def test_tuning_a_model_without_a_record_uses_every_query(tmp_path):
    (tmp_path / "plain").mkdir()
    assert unseen_only(_task(), str(tmp_path / "plain"), "dev") == _task()
    assert unseen_only(_task(), str(_calibrated(tmp_path / "m", ["elsewhere"])), "dev") == _task()


def test_a_dev_set_made_only_of_training_images_is_refused_with_what_to_do(tmp_path):
    with pytest.raises(TuneInputError, match="--keep-seen"):
        unseen_only(_task(), str(_calibrated(tmp_path / "m", ["1", "2", "3"])), "dev")
    with pytest.raises(TuneInputError, match="--keep-seen"):  # queries left, but only one document to rank
        unseen_only(_task(), str(_calibrated(tmp_path / "m2", ["1", "2"])), "dev")
