"""Encoder resolution, fingerprints and the open-time check, on small fake model folders (no model load)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from vfr.retrieve import encoder_fingerprint as fpm
from vfr.retrieve.encoder import (DEFAULT_BACKEND, DEFAULT_ENCODER, EncoderError, EncoderSpec, check_encoder,
                                  encoder_id, load_encoder, resolve_encoder)


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VFR_CACHE", str(tmp_path / "cache"))  # the hash memo of this test only


def fake_model(folder: Path, weights: bytes = b"weights-v1") -> Path:
    (folder / "1_Pooling").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"hidden_size": 4}))
    (folder / "modules.json").write_text("[]")
    (folder / "tokenizer.json").write_text("{}")
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "README.md").write_text("about the model")
    return folder


def test_fingerprint_is_content_not_time_path_or_docs(tmp_path):
    model = fake_model(tmp_path / "m")
    first = resolve_encoder(str(model))
    assert first.fingerprint.startswith("sha256:") and first.location == str(model.resolve())

    os.utime(model / "model.safetensors", ns=(1, 10**18))          # touched: may re-hash, same content
    hashed = fpm.files_hashed()
    assert resolve_encoder(str(model)).fingerprint == first.fingerprint
    assert fpm.files_hashed() == hashed + 1                          # the touched file was read again

    (model / "README.md").write_text("edited docs")                 # not a model file
    (model / "vfr_export" / "x").mkdir(parents=True)
    (model / "vfr_export" / "x" / "model.onnx").write_bytes(b"export")
    assert resolve_encoder(str(model)).fingerprint == first.fingerprint

    copy = shutil.copytree(model, tmp_path / "elsewhere" / "copy")
    moved = resolve_encoder(str(copy))
    assert moved.fingerprint == first.fingerprint and moved.location != first.location
    assert moved.cache_key == first.cache_key                        # an identical copy reuses cached vectors


def test_memo_avoids_rehashing_an_unchanged_folder(tmp_path):
    model = fake_model(tmp_path / "m")
    resolve_encoder(str(model))
    hashed = fpm.files_hashed()
    resolve_encoder(str(model))
    assert fpm.files_hashed() == hashed                              # a memo hit reads no file
    assert (tmp_path / "cache" / fpm.MEMO_NAME).exists()


def test_new_weights_change_the_fingerprint_even_with_the_old_mtime(tmp_path):
    model = fake_model(tmp_path / "m")
    first = resolve_encoder(str(model))
    st = (model / "model.safetensors").stat()
    (model / "model.safetensors").write_bytes(b"weights-v2")         # same size
    os.utime(model / "model.safetensors", ns=(st.st_atime_ns, st.st_mtime_ns))  # and the old mtime
    again = resolve_encoder(str(model))
    assert again.fingerprint != first.fingerprint and again.cache_key != first.cache_key


def test_resolve_errors_are_one_line(tmp_path):
    cases = [(str(tmp_path / "nope"), "not found"), (str(tmp_path), "not a sentence-transformers model folder")]
    for name, words in cases:
        with pytest.raises(EncoderError) as e:
            resolve_encoder(name)
        assert words in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(EncoderError, match="unknown encoder backend 'tpu'"):
        resolve_encoder(str(fake_model(tmp_path / "m")), backend="tpu")


def test_hub_name_not_in_local_cache_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EncoderError, match="local Hugging Face cache"):
        resolve_encoder("org/some-hub-model")


def test_packaged_default_by_either_name():
    a, b = resolve_encoder("default"), resolve_encoder(DEFAULT_ENCODER)
    assert a == b and a.name == DEFAULT_ENCODER and a.backend == DEFAULT_BACKEND
    assert Path(a.location).is_absolute() and (Path(a.location) / "model.safetensors").exists()
    assert encoder_id("default") == a.cache_key == f"{a.fingerprint}/{a.backend}"


def test_manifest_round_trip_and_old_manifests(tmp_path):
    spec = resolve_encoder(str(fake_model(tmp_path / "m")), backend="onnx")
    assert EncoderSpec.from_manifest(json.loads(json.dumps(spec.to_manifest()))) == spec
    with pytest.raises(EncoderError, match="vfr index --full"):
        EncoderSpec.from_manifest({"name": "x", "location": "/x"})


def test_check_from_another_working_directory(tmp_path, monkeypatch):
    fake_model(tmp_path / "proj" / "models" / "m")
    monkeypatch.chdir(tmp_path / "proj")
    recorded = resolve_encoder("models/m")                           # relative, as a user types it
    monkeypatch.chdir(tmp_path)
    assert check_encoder(recorded) == recorded


def test_retrain_in_place_is_refused_with_one_line(tmp_path):
    model = fake_model(tmp_path / "cal")
    recorded = resolve_encoder(str(model))
    (model / "model.safetensors").write_bytes(b"retrained weights")
    with pytest.raises(EncoderError) as e:
        check_encoder(recorded)
    msg = str(e.value)
    assert "\n" not in msg and str(model) in msg and "different weights" in msg
    assert "vfr index --full" in msg and "--encoder PATH" in msg


def test_missing_model_and_moved_copy(tmp_path):
    model = fake_model(tmp_path / "cal")
    recorded = resolve_encoder(str(model))
    moved = model.rename(tmp_path / "moved")
    with pytest.raises(EncoderError) as e:
        check_encoder(recorded)
    assert "missing" in str(e.value) and "--encoder PATH" in str(e.value) and "\n" not in str(e.value)
    found = check_encoder(recorded, override=str(moved))
    assert found.location == str(moved.resolve()) and found.fingerprint == recorded.fingerprint
    assert found.backend == recorded.backend and found.cache_key == recorded.cache_key

    other = fake_model(tmp_path / "other", weights=b"other weights")
    with pytest.raises(EncoderError, match="different weights"):
        check_encoder(recorded, override=str(other))


def test_load_errors_are_encoder_errors(tmp_path):
    spec = resolve_encoder(str(fake_model(tmp_path / "m")))
    with pytest.raises(EncoderError, match="unknown encoder backend 'tpu'"):
        load_encoder(EncoderSpec(spec.name, spec.location, spec.fingerprint, "tpu"))  # e.g. a hand-edited manifest
