"""Fusion that follows its encoder, on the real stack: `vfr tune` on a labelled dev set (generic JSONL) saves
a choice for the encoder's fingerprint; an index built or updated afterwards records it in its manifest and
searches with it by default; a re-tune reaches an existing index with `vfr index` (a settings commit)."""
import json
import shutil

import pytest

from tests.integration.test_cli import vfr
from tests.live_helpers import captions_dev_set, copy_store, ranking
from vfr.engine import Engine
from vfr.retrieve.encoder import resolve_encoder
from vfr.retrieve.fusion import FusionConfig
from vfr.retrieve.generations import read_manifest
from vfr.retrieve.tuning import FusionChoice, read_choices, save_choice
from vfr.store.store import Store

pytestmark = pytest.mark.integration


@pytest.fixture()
def dev_jsonl(template_store, tmp_path):
    """The sample as a dev set: each image's human captions query its description."""
    return captions_dev_set(template_store, tmp_path / "dev.jsonl")


def test_tune_saves_a_choice_that_indexes_then_search_with(template_store, dev_jsonl, tmp_path, monkeypatch):
    fusion_dir = tmp_path / "fusion"
    monkeypatch.setenv("VFR_FUSION_DIR", str(fusion_dir))
    r = vfr("tune", str(dev_jsonl), "--cache-dir", str(tmp_path / "cache"), "--json", "--no-progress",
            env={"VFR_FUSION_DIR": str(fusion_dir)})
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    spec = resolve_encoder("default")
    assert out["choice"]["encoder_fingerprint"] == spec.fingerprint
    assert out["saved_to"].startswith(str(fusion_dir))  # the packaged model's folder is not ours to write
    assert 0 <= out["choice"]["baseline_value"] <= out["choice"]["value"] <= 1
    assert out["choice"]["alpha"] == 0.2  # the guard's level is recorded with the choice
    if out["choice"]["grid_best"] is not None:  # the guard kept the built-in: it says why
        assert out["choice"]["value"] == out["choice"]["baseline_value"] and "keeping the built-in" in r.stderr
    tuned = FusionChoice.model_validate(out["choice"]).config()

    db = copy_store(template_store, tmp_path / "s")
    eng = Engine.open(db)
    try:
        eng.update_index(full=True)
        m = read_manifest(eng.index_dir)
        assert m["fusion_source"]["kind"] == "tuned" and m["fusion_source"]["encoder_fingerprint"] == spec.fingerprint
        assert eng.default_fusion() == tuned and eng.stats()["fusion"]["default"] == tuned.to_dict()
        for q in ("a dog chasing a cat", "neon OPEN sign in a diner window"):
            assert ranking(eng.search(q, 10)) == ranking(eng.search(q, 10, fusion=tuned))

        # a new choice reaches the existing index at the next update, with no document change
        other = FusionConfig(weights=(0.45, 0.55), norm="minmax")
        choice = read_choices(fusion_dir / next(p.name for p in fusion_dir.iterdir()))[0]
        save_choice(spec, choice.model_copy(update={"fusion": other.to_dict()}))
        before = m["generation"]
        report = eng.update_index()
        m = read_manifest(eng.index_dir)
        assert report["generation"] == before + 1 and m["last_operation"]["kind"] == "settings"
        assert eng.default_fusion() == other
        assert eng.update_index()["generation"] == before + 1  # nothing new: no commit

        # without a stored choice the index goes back to the built-in default
        shutil.rmtree(fusion_dir)
        eng.update_index()
        assert read_manifest(eng.index_dir)["fusion_source"] == {"kind": "built-in"}
        assert eng.default_fusion() == FusionConfig()
    finally:
        eng.close()


def test_tune_refuses_a_test_set_a_bad_metric_and_fields_on_joined_documents(tmp_path):
    r = vfr("tune", "coco-test", "--dry-run")
    assert r.returncode == 1 and "test set" in r.stderr and "Traceback" not in r.stderr
    r = vfr("tune", "coco-val", "--metric", "p@3")
    assert r.returncode == 1 and "unknown metric" in r.stderr
    r = vfr("tune", "coco-val", "--alpha", "0")
    assert r.returncode == 1 and "--alpha must be in (0, 1]" in r.stderr and "Traceback" not in r.stderr
    r = vfr("tune", "coco-val", "-s", "concat", "--bm25-fields", "caption=0.5", "--dry-run")
    assert r.returncode == 1 and "joined from several describers" in r.stderr and "Traceback" not in r.stderr


def test_tune_leaves_out_the_queries_whose_image_a_calibrated_encoder_trained_on(template_store, dev_jsonl,
                                                                                 tmp_path):
    """A model folder whose calibration.json records training images is tuned on the other images' queries
    and documents only; --keep-seen tunes on all of them; `vfr eval` reports R@1 on the other queries beside the
    whole."""
    model = shutil.copytree(resolve_encoder("default").location, tmp_path / "calibrated")
    rows = [json.loads(line) for line in dev_jsonl.read_text().splitlines()]
    trained = [r["id"] for r in rows[:3]]
    (model / "calibration.json").write_text(json.dumps({"train_group_ids": trained}))
    every = sum(len(r["queries"]) for r in rows)
    seen = sum(len(r["queries"]) for r in rows[:3])
    args = ("tune", str(dev_jsonl), "--encoder", str(model), "--cache-dir", str(tmp_path / "cache"), "--json",
            "--no-progress", "--dry-run")
    r = vfr(*args)
    assert r.returncode == 0, r.stderr
    assert f"left out {seen} of {every}" in r.stderr and "--keep-seen" in r.stderr
    choice = json.loads(r.stdout)["choice"]
    assert choice["queries"] == every - seen and choice["documents"] == len(rows) - 3  # their documents too
    assert "3 documents of those images" in r.stderr
    r = vfr(*args, "--keep-seen")
    assert r.returncode == 0, r.stderr
    choice = json.loads(r.stdout)["choice"]
    assert "left out" not in r.stderr and choice["queries"] == every and choice["documents"] == len(rows)
    assert not (model / "fusion.json").exists()  # --dry-run

    # `vfr eval` of the same model counts every query, and sets apart the ones about its training images
    r = vfr("eval", str(dev_jsonl), "--encoder", str(model), "--cache-dir", str(tmp_path / "cache"), "--out",
            str(tmp_path / "ev"), "--no-plots", "--no-progress")
    assert r.returncode == 0, r.stderr
    task = json.loads((tmp_path / "ev" / "metrics.json").read_text())["tasks"][0]
    assert task["queries"] == every
    assert task["trained_on"]["seen_queries"] == seen and task["trained_on"]["unseen_queries"] == every - seen
    assert f"calibrated on 3 of these images: {seen} of the {every} queries" in r.stdout
