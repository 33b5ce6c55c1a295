"""An index pins the encoder it was built with (issue 16), through the CLI as users drive it: built from a
model folder given by a relative path, searched from another working directory; a model retrained in
place is refused with one line that says what to do; a moved identical copy is accepted with --encoder."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.live_helpers import copy_store
from vfr.cli import app
from vfr.retrieve import encoder as E
from vfr.retrieve import encoder_backends as B

pytestmark = pytest.mark.integration


def vfr(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def setup(template_store, tmp_path, monkeypatch):
    monkeypatch.setenv("VFR_CACHE", str(tmp_path / "cache"))
    work = tmp_path / "project"
    (work / "models").mkdir(parents=True)
    shutil.copytree(E.resolve_encoder("default").location, work / "models" / "minilm-cal",
                    ignore=shutil.ignore_patterns(B.EXPORT_DIR))
    db = copy_store(template_store, work)
    monkeypatch.chdir(work)
    r = vfr("index", "--db", "s.duckdb", "--encoder", "models/minilm-cal", "--quiet")  # a relative path
    assert r.exit_code == 0, r.output
    yield work, db
    E.clear_loaded()


def test_search_from_another_working_directory(setup, monkeypatch, tmp_path):
    work, db = setup
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    r = vfr("search", "neon OPEN sign in a diner window", "--db", str(db), "-f", "jsonl", "-k", "1")
    assert r.exit_code == 0, r.output
    assert '"sample-126"' in r.output


def test_retrained_in_place_is_refused_then_full_rebuild_works(setup):
    work, db = setup
    weights = work / "models" / "minilm-cal" / "model.safetensors"
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(weights))
    name = next(k for k, v in tensors.items() if v.ndim == 2)
    tensors[name] = tensors[name] + np.float32(0.01)  # "retrained": same path, different weights
    save_file(tensors, str(weights))
    E.clear_loaded()
    r = vfr("search", "a dog", "--db", str(db), "-f", "jsonl")
    assert r.exit_code != 0
    message = r.output.strip().splitlines()
    assert len(message) == 1 and "minilm-cal" in message[0] and "vfr index --full" in message[0], r.output
    r = vfr("index", "--db", str(db), "--full", "--encoder", "models/minilm-cal", "--quiet")
    assert r.exit_code == 0, r.output
    assert vfr("search", "a dog", "--db", str(db), "-f", "jsonl").exit_code == 0


def test_moved_identical_copy_is_accepted_with_encoder(setup):
    work, db = setup
    os.rename(work / "models" / "minilm-cal", work / "models" / "moved")
    E.clear_loaded()
    r = vfr("search", "a dog", "--db", str(db), "-f", "jsonl")
    assert r.exit_code != 0 and "missing" in r.output and "--encoder" in r.output, r.output
    from vfr.engine import Engine

    eng = Engine.open(db, encoder=str(work / "models" / "moved"))  # the library takes the moved copy too
    assert eng.search("neon OPEN sign in a diner window", 1)[0].id == "sample-126"
    eng.close()
    r = vfr("index", "--db", str(db), "--encoder", "models/moved", "--quiet")  # an update with the copy
    assert r.exit_code == 0, r.output


def test_embedding_cache_is_keyed_by_content(setup):
    """An identical copy at a new path reuses cached vectors (no re-encoding on a full build)."""
    work, db = setup
    shutil.copytree(work / "models" / "minilm-cal", work / "models" / "copy2",
                    ignore=shutil.ignore_patterns(B.EXPORT_DIR))
    from vfr.engine import Engine

    eng = Engine.open(db, encoder=str(work / "models" / "copy2"))
    encoded: list[int] = []
    original = E.Encoder.encode
    try:
        E.Encoder.encode = lambda self, texts, batch_size=64: (encoded.append(len(texts)),
                                                               original(self, texts, batch_size))[1]
        eng.update_index(full=True)
    finally:
        E.Encoder.encode = original
    assert encoded == [], "a full build with an identical copy re-encoded documents"
    eng.close()


def test_full_rebuild_keeps_the_index_encoder(setup):
    """`vfr index --full` without --encoder rebuilds with the encoder the index records, not the default."""
    work, db = setup
    r = vfr("index", "--db", str(db), "--full", "--quiet")
    assert r.exit_code == 0, r.output
    from vfr.retrieve import generations

    manifest = generations.read_manifest(work / "s.index")
    assert manifest["encoder"]["location"] == str((work / "models" / "minilm-cal").resolve())
