"""Content fingerprints of encoder model folders, memoised so that opening an index does not re-hash
90–400 MB of weights every time.

The fingerprint hashes the files that decide what vectors the model produces: weights, configs and
tokenizer files, each by its path relative to the folder (so a moved identical copy has the same one).
File times are never hashed. Per-file hashes are memoised in `<cache>/encoder-hashes.json`, keyed by the
file's absolute path, size, mtime_ns, ctime_ns and inode: a file rewritten in place (a retrained model)
has a new key and is hashed again; a file only touched is re-hashed and gives the same fingerprint.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

FINGERPRINT_PREFIX = "sha256:"
# What decides the vectors. README.md, .gitattributes, images and the like do not.
HASHED_SUFFIXES = {".json", ".txt", ".model", ".safetensors", ".bin", ".pt", ".pth", ".msgpack", ".h5"}
# Folders whose files do not feed the torch model sentence-transformers loads: exports (ours and the
# hub's onnx/openvino copies, which vfr never loads: it exports from the weights itself), VCS, training.
SKIPPED_DIRS = {"vfr_export", "onnx", "openvino", ".git", ".cache", "runs", "__pycache__"}
MEMO_NAME = "encoder-hashes.json"
MEMO_MAX_ENTRIES = 5000

_lock = threading.Lock()


def vfr_cache_dir() -> Path:
    """`$VFR_CACHE`, else ~/.cache/vfr (the user cache dir every vfr cache lives under)."""
    base = os.environ.get("VFR_CACHE")
    return Path(base) if base else Path.home() / ".cache" / "vfr"


def model_files(folder: Path) -> list[Path]:
    """The files a fingerprint covers, sorted by relative path."""
    out = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not d.startswith("checkpoint-"))
        out += [Path(root) / f for f in files if Path(f).suffix.lower() in HASHED_SUFFIXES]
    return sorted(out, key=lambda p: p.relative_to(folder).as_posix())


def fingerprint_folder(folder: Path, memo_path: Path | None = None) -> str:
    """`sha256:<hex>` over (relative path, content hash) of every model file in `folder`."""
    folder = folder.resolve()
    files = model_files(folder)
    if not files:
        raise FileNotFoundError(f"{folder} holds no model files (weights, config or tokenizer)")
    memo = _Memo(memo_path or vfr_cache_dir() / MEMO_NAME)
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(folder).as_posix().encode() + b"\x00")
        digest.update(memo.file_hash(path).encode() + b"\x01")
    memo.save()
    return FINGERPRINT_PREFIX + digest.hexdigest()


class _Memo:
    """Per-file sha256 memo, read once and written back (atomically, merged) only if it grew."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, list] = _read_json(path)
        self.changed: dict[str, list] = {}
        self.hashed = 0  # files actually read this time (tests check re-hashing through it)

    def file_hash(self, path: Path) -> str:
        st = path.stat()  # follows symlinks (Hugging Face cache snapshots link to blobs)
        key = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        name = str(path)
        entry = self.entries.get(name)
        if entry and entry[:4] == key:
            return entry[4]
        with open(path, "rb") as fh:
            value = hashlib.file_digest(fh, "sha256").hexdigest()
        self.hashed += 1
        _stats["hashed"] += 1
        self.changed[name] = self.entries[name] = [*key, value]
        return value

    def save(self) -> None:
        if not self.changed:
            return
        with _lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                merged = {**_read_json(self.path), **self.changed}  # keep other processes' entries
                if len(merged) > MEMO_MAX_ENTRIES:  # drop files that are gone, then the oldest
                    merged = {k: v for k, v in merged.items() if Path(k).exists()}
                    merged = dict(list(merged.items())[-MEMO_MAX_ENTRIES:])
                tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}")
                tmp.write_text(json.dumps(merged))
                os.replace(tmp, self.path)
            except OSError:
                pass  # a read-only cache only costs re-hashing next time


_stats = {"hashed": 0}


def files_hashed() -> int:
    """How many files this process has read to hash (a memo hit reads none)."""
    return _stats["hashed"]


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}
