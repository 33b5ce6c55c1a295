"""Interim: the encoder API the index codes against (EncoderSpec, resolve/check/load), over the current
retrieve/encoder.py. Replaced by the encoder work (backends, content fingerprints)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from vfr.retrieve.encoder import DEFAULT_ENCODER, encoder_id, load_encoder as _load, resolve_encoder as _resolve
from vfr.retrieve.types import clean_text

DEFAULT_BACKEND = "torch"


class EncoderError(ValueError):
    pass


@dataclass(frozen=True)
class EncoderSpec:
    name: str
    location: str
    fingerprint: str
    backend: str = DEFAULT_BACKEND

    @property
    def cache_key(self) -> str:
        return f"{self.fingerprint}:{self.backend}" if self.backend != "torch" else self.fingerprint

    def to_manifest(self) -> dict:
        return asdict(self)

    @classmethod
    def from_manifest(cls, d: dict) -> "EncoderSpec":
        return cls(**d)


def resolve_encoder(name: str = DEFAULT_ENCODER, backend: str | None = None) -> EncoderSpec:
    return EncoderSpec(name, _resolve(name), encoder_id(name), backend or DEFAULT_BACKEND)


def check_encoder(recorded: EncoderSpec, override: str | None = None) -> EncoderSpec:
    return recorded


class Encoder:
    def __init__(self, spec: EncoderSpec) -> None:
        self.spec = spec
        self.model = _load(spec.name)
        self.dimension = int(self.model.get_sentence_embedding_dimension())

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        vecs = self.model.encode([clean_text(t) for t in texts], batch_size=batch_size, convert_to_numpy=True,
                                 show_progress_bar=False, normalize_embeddings=False)
        vecs = np.atleast_2d(np.asarray(vecs, dtype=np.float32))
        return (vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)).astype(np.float32)


_cache: dict[str, Encoder] = {}


def load_encoder(spec: EncoderSpec) -> Encoder:
    if spec.cache_key not in _cache:
        _cache[spec.cache_key] = Encoder(spec)
    return _cache[spec.cache_key]
