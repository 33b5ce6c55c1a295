"""The torch-free query encoder: used only once sentence-transformers' own vectors for probe texts are on
record and reproduced; equal vectors on real descriptions; a process that searches never imports torch."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vfr.retrieve import encoder as E
from vfr.retrieve import encoder_backends as B
from vfr.retrieve.encoder_lite import LiteOnnxEncoder

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def model(tmp_path, monkeypatch, shared_data):
    monkeypatch.setenv("VFR_CACHE", str(tmp_path / "cache"))
    folder = shutil.copytree(E.resolve_encoder("default").location, tmp_path / "minilm",
                             ignore=shutil.ignore_patterns(B.EXPORT_DIR))
    texts = []
    for line in (shared_data / "joined" / "coco_karpathy_test_x_vlm_descriptions.jsonl").open():
        row = json.loads(line)
        texts += [*row["descriptions"].values(), *row["captions"][:1]]
    E.clear_loaded()
    yield E.resolve_encoder(str(folder), "onnx"), texts[:400] + ["", "ß ü é 中文 😀", "x " * 2000]
    E.clear_loaded()


def test_lite_path_only_after_a_reference_and_equal_vectors(model):
    spec, texts = model
    first = E.load_encoder(spec)  # no export yet: the sentence-transformers path exports and records
    assert isinstance(first, E.Encoder)
    reference = B.export_folder(Path(spec.location), spec.fingerprint) / "reference.json"
    assert reference.is_file()
    E.clear_loaded()
    lite = E.load_encoder(spec)
    assert isinstance(lite, LiteOnnxEncoder)
    a, b = first.encode(texts, batch_size=32), lite.encode(texts, batch_size=32)
    assert a.shape == b.shape and float((a * b).sum(axis=1).min()) >= 0.99999


def test_a_reference_it_cannot_reproduce_keeps_the_full_path(model):
    spec, _ = model
    E.load_encoder(spec)
    reference = B.export_folder(Path(spec.location), spec.fingerprint) / "reference.json"
    data = json.loads(reference.read_text())
    data["vectors"] = (-np.asarray(data["vectors"])).tolist()  # as if pooling differed
    reference.write_text(json.dumps(data))
    E.clear_loaded()
    assert isinstance(E.load_encoder(spec), E.Encoder)


def test_encoder_thread_settings_are_checked(model, monkeypatch):
    """VFR_ENCODER_SPIN / VFR_ENCODER_THREADS: a bad value is one error naming the variable; good ones load."""
    spec, texts = model
    E.load_encoder(spec)  # exports and records the reference the lite path needs
    for name, bad in (("VFR_ENCODER_SPIN", "2"), ("VFR_ENCODER_SPIN", "yes"), ("VFR_ENCODER_THREADS", "0")):
        E.clear_loaded()
        monkeypatch.setenv(name, bad)
        with pytest.raises(E.EncoderError, match=name):
            E.load_encoder(spec)
        monkeypatch.delenv(name)
    E.clear_loaded()
    monkeypatch.setenv("VFR_ENCODER_SPIN", "1")
    monkeypatch.setenv("VFR_ENCODER_THREADS", "1")
    lite = E.load_encoder(spec)
    assert isinstance(lite, LiteOnnxEncoder) and lite.encode(texts[:3]).shape == (3, lite.dimension)


def test_a_search_process_never_imports_torch(template_store, tmp_path):
    from tests.live_helpers import copy_store
    from vfr.engine import Engine

    db = copy_store(template_store, tmp_path)
    Engine.open(db).update_index()  # the template's build made the export and its reference
    code = ("import sys; from vfr.engine import Engine; e = Engine.open(sys.argv[1]); "
            "hits = e.search('a dog chasing a cat', 3); "
            "print(hits[0].id, 'torch' in sys.modules, 'sentence_transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(db)], cwd=REPO, capture_output=True, text=True,
                         timeout=600, check=True).stdout.split()
    assert out[1:] == ["False", "False"], out
