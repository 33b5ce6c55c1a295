"""Encoder backends and pinning with the real packaged MiniLM on real COCO descriptions."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from vfr.retrieve import encoder as E
from vfr.retrieve import encoder_backends as B

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def env(tmp_path_factory, shared_data):
    """A writable copy of the packaged model (exports go next to it), its own caches, real texts."""
    root = tmp_path_factory.mktemp("encoders")
    mp = pytest.MonkeyPatch()
    mp.setenv("VFR_CACHE", str(root / "cache"))
    model = shutil.copytree(E.resolve_encoder("default").location, root / "models" / "minilm",
                            ignore=shutil.ignore_patterns(B.EXPORT_DIR))
    texts = []
    for line in (shared_data / "joined" / "coco_karpathy_test_x_vlm_descriptions.jsonl").open():
        texts += json.loads(line)["descriptions"].values()
    yield {"root": root, "model": model, "texts": texts[:300]}
    E.clear_loaded()
    mp.undo()


@pytest.fixture(scope="module")
def torch_vectors(env):
    return E.load_encoder(E.resolve_encoder(str(env["model"]), "torch")).encode(env["texts"])


@pytest.mark.parametrize("backend", ["onnx", "openvino", "onnx-int8"])
def test_backend_vectors_match_torch(env, torch_vectors, backend):
    enc = E.load_encoder(E.resolve_encoder(str(env["model"]), backend))
    vecs = enc.encode(env["texts"], batch_size=32)
    assert vecs.shape == torch_vectors.shape == (300, enc.dimension) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    cos = (vecs * torch_vectors).sum(axis=1)
    if backend == "onnx-int8":  # quantisation costs fidelity by design (docs/encoders.md has the figures)
        assert cos.mean() >= 0.99 and cos.min() >= 0.98
    else:
        assert cos.min() >= 0.999
    single = enc.encode("a dog lying on a couch")                      # one text: one row, as in a batch
    in_batch = float(single[0] @ enc.encode(["a dog lying on a couch", "x"])[0])
    # int8 quantises activations per batch: a text's vector depends on its batch companions (cos ~0.99)
    assert single.shape == (1, enc.dimension) and in_batch > (0.98 if backend == "onnx-int8" else 0.9999)


def test_export_happens_once(env):
    spec = E.resolve_encoder(str(env["model"]), "onnx")
    E.load_encoder(spec)
    folder = B.export_folder(Path(spec.location), spec.fingerprint)
    assert folder.parent == env["model"] / B.EXPORT_DIR          # next to the writable model
    files = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file() and p.name != ".lock"}
    assert {B.ONNX_FILE, B.INT8_FILE, B.OPENVINO_FILE} <= {p.name for p in files}
    before = B.exports.copy()
    E.clear_loaded()                                                    # as a new process would
    for backend in B.BACKENDS:
        E.load_encoder(E.resolve_encoder(str(env["model"]), backend)).encode(["a red car"])
    assert B.exports == before
    assert {p: p.stat().st_mtime_ns for p in files} == files


def test_packaged_model_exports_into_the_cache(env):
    spec = E.resolve_encoder("default", "onnx")
    folder = B.export_folder(Path(spec.location), spec.fingerprint)
    assert folder.is_relative_to(env["root"] / "cache" / "encoders")   # never into site-packages


def test_search_side_loads_from_another_working_directory(env, monkeypatch):
    monkeypatch.chdir(env["root"])
    recorded = E.resolve_encoder("models/minilm", "onnx")              # relative, as typed at build time
    monkeypatch.chdir("/")
    enc = E.load_encoder(E.check_encoder(recorded))
    assert enc.encode(["a red car"]).shape == (1, 384)


def test_retrained_in_place_is_refused_and_exported_afresh(env):
    import torch
    from safetensors.torch import load_file, save_file

    model = shutil.copytree(env["model"], env["root"] / "models" / "retrain")
    recorded = E.resolve_encoder(str(model), "onnx")
    E.load_encoder(recorded)
    old_export = B.export_folder(model, recorded.fingerprint)
    weights = load_file(model / "model.safetensors")
    name = next(k for k in weights if k.endswith("attention.self.query.weight"))
    weights[name] = weights[name] + 0.01 * torch.randn_like(weights[name])  # "vfr calibrate --out" again
    save_file(weights, model / "model.safetensors", metadata={"format": "pt"})

    with pytest.raises(E.EncoderError) as e:
        E.check_encoder(recorded)
    assert "different weights" in str(e.value) and "vfr index --full" in str(e.value) and "\n" not in str(e.value)

    retrained = E.resolve_encoder(str(model), "onnx")
    assert retrained.fingerprint != recorded.fingerprint
    before = B.exports["onnx"]
    E.load_encoder(retrained)
    assert B.exports["onnx"] == before + 1                              # the old export is never reused
    assert B.export_folder(model, retrained.fingerprint).exists() and not old_export.exists()
