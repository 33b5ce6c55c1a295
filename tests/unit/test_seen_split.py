"""benchmarks/seen_split.py: which validation queries the calibration saw, read from the run and the model card."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parents[2] / "benchmarks"
_spec = importlib.util.spec_from_file_location("seen_split", BENCHMARKS / "seen_split.py")
ss = importlib.util.module_from_spec(_spec)
sys.modules["seen_split"] = ss
_spec.loader.exec_module(ss)


def test_a_query_is_seen_when_a_relevant_document_is_a_training_image():
    qrels = {"1#0": {"1": 1}, "1#1": {"1": 1}, "2#0": {"2": 1}, "3#0": {"3": 1, "1": 0}}
    unseen, seen = ss.split(qrels, frozenset({"1", "9"}))
    assert set(seen) == {"1#0", "1#1"}
    assert set(unseen) == {"2#0", "3#0"}  # "1" is judged non-relevant for 3#0: not a seen target


def test_r1_on_each_part():
    qrels = {"a": {"x": 1}, "b": {"y": 1}}
    run = {"a": {"x": 2.0, "y": 1.0}, "b": {"x": 2.0, "y": 1.0}}
    unseen, seen = ss.split(qrels, frozenset({"x"}))
    assert ss.r1(seen, run) == 1.0 and ss.r1(unseen, run) == 0.0


def _run_dir(tmp_path: Path, encoder: str | None) -> Path:
    out = tmp_path / "run" / "coco-val"
    out.mkdir(parents=True)
    (out / "metrics.json").write_text(json.dumps({"config": {"encoder": encoder}, "tasks": []}))
    return tmp_path / "run"


def test_training_images_come_from_the_runs_encoder(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "calibration.json").write_text(json.dumps({"train_group_ids": ["5", "7"]}))
    assert ss.trained_images(_run_dir(tmp_path, str(model)), "coco-val") == {"5", "7"}


def test_an_uncalibrated_encoder_is_refused_with_a_reason(tmp_path):
    with pytest.raises(SystemExit, match="default encoder"):
        ss.trained_images(_run_dir(tmp_path, None), "coco-val")


def test_a_soup_saw_every_image_any_ingredient_trained_on(tmp_path):
    parts = []
    for name, ids in (("a", ["5", "7"]), ("b", ["7", "9"]), ("packaged", None)):
        (tmp_path / name).mkdir()
        if ids is not None:  # the packaged model has no calibration card: it trained on none of them
            (tmp_path / name / "calibration.json").write_text(json.dumps({"train_group_ids": ids}))
        parts.append({"model": str(tmp_path / name), "location": str(tmp_path / "moved" / name)})
    soup = tmp_path / "soup"
    soup.mkdir()
    (soup / "soup.json").write_text(json.dumps({"ingredients": parts}))
    # the recorded locations are gone, so the ingredients are found by the paths they were given as
    assert ss.trained_images(_run_dir(tmp_path, str(soup)), "coco-val") == {"5", "7", "9"}


def test_a_model_neither_calibrated_nor_a_soup_is_refused(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(SystemExit, match="records no training images"):
        ss.trained_images(_run_dir(tmp_path, str(tmp_path / "plain")), "coco-val")
