"""Short real calibration runs (packaged MiniLM, real Lucene for hard negatives) on a slice of the COCO val join."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from vfr.retrieve.calibrate.pairs import load_pairs, split_by_group, write_jsonl

pytestmark = pytest.mark.integration

@pytest.fixture(scope="module")
def slice_pairs(shared_data):  # missing data fails (tests/conftest.py), never skips
    pairs = load_pairs(str(shared_data / "joined" / "coco_karpathy_val_x_vlm_descriptions.jsonl"), descriptions="longest")
    groups = sorted({p.group for p in pairs})[:10]
    return [p for p in pairs if p.group in groups]


def test_training_lowers_loss_and_saves_a_loadable_model(slice_pairs, tmp_path):
    from vfr.retrieve.calibrate.train import CalibrateConfig, calibrate
    from vfr.retrieve.encoder import load_encoder

    train, held = split_by_group(slice_pairs, 0.2, seed=0)
    out = tmp_path / "model"
    result = calibrate(train, held, out, CalibrateConfig(epochs=1, batch_size=8, learning_rate=1e-4,
                                                         max_seq_length=32, early_stopping=0, device="cpu",
                                                         threads=1))  # shared CI cores: 1 thread is far faster
    assert result.train_loss_after < result.train_loss_before
    assert result.steps > 0 and set(result.heldout_after) >= {"R@1", "R@5", "R@10", "MRR@10"}
    record = json.loads((out / "calibration.json").read_text())
    assert record["config"]["learning_rate"] == 1e-4 and record["train_groups"] == 8 and record["heldout_groups"] == 2
    model = load_encoder(str(out))
    assert model.model.max_seq_length == load_encoder("default").model.max_seq_length  # training truncation not saved
    a, b = (m.encode(["a dog lying on a couch"]) for m in (model, load_encoder("default")))
    assert a.shape == (1, 384) and float((a * b).sum()) < 0.99999


def test_cli_with_hard_negatives_and_frozen_layers(slice_pairs, tmp_path):
    import typer
    from safetensors.numpy import load_file
    from typer.testing import CliRunner

    from vfr.retrieve.encoder import resolve_encoder
    from vfr import cmd_calibrate

    app = typer.Typer()
    cmd_calibrate.register(app)
    app.command("noop", hidden=True)(lambda: None)
    src = tmp_path / "pairs.jsonl"
    write_jsonl(slice_pairs[:12], src)
    out = tmp_path / "m"
    r = CliRunner().invoke(app, ["calibrate", "--pairs", str(src), "--out", str(out), "--heldout", "0",
                                 "--batch-size", "3", "--max-seq-length", "32", "--lr", "1e-4",
                                 "--hard-negatives", "--freeze-layers", "2", "--device", "cpu", "--threads", "1"])
    assert r.exit_code == 0, r.output
    record = json.loads((out / "calibration.json").read_text())
    assert record["hard_negatives"] == 12 and record["config"]["freeze_layers"] == 2
    new, old = load_file(out / "model.safetensors"), load_file(Path(resolve_encoder("default").location) / "model.safetensors")
    w = lambda d, part: next(v for k, v in d.items() if k.endswith(part))  # noqa: E731  (prefixes vary)
    low, top = "layer.0.attention.self.query.weight", "layer.5.attention.self.query.weight"
    assert (w(new, low) == w(old, low)).all()
    assert not (w(new, top) == w(old, top)).all()
