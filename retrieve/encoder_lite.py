"""A query-path encoder without torch: the exported ONNX body, the model's own fast tokenizer file and its
own pooling configuration, run with onnxruntime, `tokenizers` and numpy.

Why: importing sentence-transformers imports torch and transformers (~2–3 s and ~450 MB of memory on our
machines) before the first query can be encoded; a search process needs neither. It is used only for
models whose export exists and whose configuration it reads completely (a Transformer module, then
Pooling by mean / CLS / max, then optional Normalize), and only after it reproduces the vectors that
sentence-transformers itself produced for probe texts when the export was made (`reference.json`, written
by the sentence-transformers path): cosine ≥ 0.99999 or it is not used. Anything else loads the full
sentence-transformers path (retrieve/encoder_backends.py), which also writes the export and reference.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vfr.store.env import env_number

REFERENCE = "reference.json"
AGREEMENT = 0.99999


class LiteUnavailable(Exception):
    """This model cannot take the lite path (the caller loads sentence-transformers instead)."""


def _modules(location: Path) -> list[dict]:
    path = location / "modules.json"
    if not path.is_file():
        raise LiteUnavailable("no modules.json")
    return json.loads(path.read_text())


def _pooling(location: Path, modules: list[dict]) -> tuple[str, bool]:
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    if not kinds or kinds[0] != "Transformer" or kinds[1:2] != ["Pooling"] or \
            any(k != "Normalize" for k in kinds[2:]):
        raise LiteUnavailable(f"modules {kinds}")
    cfg = json.loads((location / modules[1]["path"] / "config.json").read_text())
    modes = [m for m in ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens", "weightedmean_tokens",
                         "lasttoken") if cfg.get(f"pooling_mode_{m}")]
    if len(modes) != 1 or modes[0] not in ("cls_token", "mean_tokens", "max_tokens"):
        raise LiteUnavailable(f"pooling {modes}")
    return modes[0], "Normalize" in kinds


class LiteOnnxEncoder:
    """`encode` like retrieve.encoder.Encoder (L2-normalised float32), on onnxruntime alone."""

    def __init__(self, spec: Any, onnx_path: Path, reference: Path | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        location = Path(spec.location)
        modules = _modules(location)
        self.mode, _ = _pooling(location, modules)
        tokenizer_file = location / modules[0].get("path", "") / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise LiteUnavailable("no tokenizer.json")
        st_config = location / modules[0].get("path", "") / "sentence_bert_config.json"
        st = json.loads(st_config.read_text()) if st_config.is_file() else {}
        max_len, self.lower = st.get("max_seq_length", 512), bool(st.get("do_lower_case", False))
        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.tokenizer.enable_truncation(max_length=int(max_len))
        self.tokenizer.no_padding()
        options = ort.SessionOptions()
        options.log_severity_level = 3
        threads = env_number("VFR_ENCODER_THREADS", 0, minimum=1, maximum=1024, integer=True)
        if threads:
            options.intra_op_num_threads = int(threads)
        if not env_number("VFR_ENCODER_SPIN", 0, minimum=0, maximum=1, integer=True):
            # ONNX Runtime's threads spin after each run by default: 0.3-0.5 ms quicker for the next query,
            # but they take the cores from BM25, FAISS and fusion meanwhile (hybrid p50 and batch q/s worse)
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.spec = spec
        out = self.session.get_outputs()[0]
        self.dimension = int(out.shape[-1]) if isinstance(out.shape[-1], int) else len(self._encode(["x"])[0])
        self._st = None
        if reference is not None:
            self.verify(reference)

    def verify(self, reference: Path) -> None:
        if not reference.is_file():
            raise LiteUnavailable("no reference vectors yet")
        ref = json.loads(reference.read_text())
        got = self.encode(ref["texts"])
        want = np.asarray(ref["vectors"], dtype=np.float32)
        cos = (got * want).sum(axis=1) / np.maximum(np.linalg.norm(want, axis=1), 1e-12)
        if got.shape != want.shape or float(cos.min()) < AGREEMENT:
            raise LiteUnavailable(f"disagrees with sentence-transformers (cos {float(cos.min()):.6f})")

    def _encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Batches of similar length (as sentence-transformers does): less padding, same vectors."""
        order = np.argsort([-len(t) for t in texts], kind="stable")
        vecs = np.empty((len(texts), self.dimension if hasattr(self, "dimension") else 0), dtype=np.float32)
        parts = []
        for start in range(0, len(texts), batch_size):
            parts.append(self._encode_batch([texts[i] for i in order[start:start + batch_size]]))
        if parts:
            vecs = np.empty((len(texts), parts[0].shape[1]), dtype=np.float32)
            vecs[order] = np.vstack(parts)
        return vecs

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        enc = self.tokenizer.encode_batch(texts)
        width = max(len(e.ids) for e in enc)
        ids = np.zeros((len(enc), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for i, e in enumerate(enc):
            n = len(e.ids)
            ids[i, :n], mask[i, :n], types[i, :n] = e.ids, e.attention_mask, e.type_ids
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        hidden = self.session.run(None, {k: feed[k] for k in self.inputs})[0]
        vecs = _pool(hidden, mask, self.mode).astype(np.float32)
        return vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        from vfr.retrieve.types import clean_text

        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            return np.empty((0, self.dimension), dtype=np.float32)
        return self._encode([clean_text(t).lower() if self.lower else clean_text(t) for t in texts], batch_size)

    @property
    def model(self) -> Any:
        """The SentenceTransformer (loaded on first use: training-style callers need torch anyway)."""
        if self._st is None:
            from vfr.retrieve.encoder_backends import load_model

            self._st = load_model(self.spec.location, self.spec.fingerprint, self.spec.backend)
        return self._st

    def __repr__(self) -> str:
        return f"LiteOnnxEncoder({self.spec.name!r}, fingerprint={self.spec.short})"


def _pool(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    if mode == "cls_token":
        return hidden[:, 0]
    m = mask[..., None].astype(hidden.dtype)
    if mode == "max_tokens":
        return np.where(m > 0, hidden, -1e9).max(axis=1)
    return (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)


def write_reference(folder: Path, texts: Sequence[str], vectors: np.ndarray) -> None:
    """Probe vectors as sentence-transformers computed them: what the lite path must reproduce."""
    path = folder / REFERENCE
    if path.exists():
        return
    tmp = folder / f".{REFERENCE}.{os.getpid()}"
    tmp.write_text(json.dumps({"texts": list(texts), "vectors": np.asarray(vectors, dtype=float).tolist()}))
    os.replace(tmp, path)
