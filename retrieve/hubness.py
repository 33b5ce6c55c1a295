"""Query-bank hubness correction (an index option: `IndexConfig.hubness`, `IndexConfig.query_bank`).

Some descriptions are hubs: generic enough to sit near many queries, so they take rank 1 for queries
about other images. With a bank of real queries (a query log, or the captions an encoder was calibrated
on; never the test queries) every document gets a hubness offset

    h(d) = mean of the `hubness_k` largest cos(b, d) over bank queries b

and the dense side scores s(q, d) − λ · h(d), λ = `IndexConfig.hubness` (CSLS, Conneau et al. 2018; the
query-bank normalisation of Bogolin et al. 2022 in its simplest form). h(d) depends on the document and
the bank only, so it is computed once when the document is indexed and works incrementally: a segment
stores its rows' offsets in `hubness.npy`, merges copy them, deletes need nothing.

The bank's texts live in the index folder (`query_banks/<digest>.txt`); their SHA-256 is
`IndexConfig.query_bank`, so a new bank is a new configuration (a full build), and `<digest>.npz` caches
their vectors under the index's encoder (a new encoder re-encodes them).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from vfr.retrieve.dense import merge_topk

FILE = "hubness.npy"              # per segment: one float32 offset per row
BANKS = "query_banks"             # in the index folder: <digest>.txt (texts) and <digest>.npz (vectors)
CHUNK = 4096                      # documents per bank product (bounds memory: CHUNK × bank floats)
DEFAULT_WEIGHT = 0.5              # chosen on COCO val with k = 10 (docs/hubness.md)


class BankError(ValueError):
    """A query bank that cannot be used (message says what to do)."""


def bank_sha(texts: Sequence[str]) -> str:
    return "sha256:" + hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()


def clean_bank(texts: Sequence[str]) -> list[str]:
    """One query a line, whitespace collapsed, blank lines and repeats dropped (order kept)."""
    out = [t for t in dict.fromkeys(" ".join(t.split()) for t in texts) if t]
    if not out:
        raise BankError("the query bank is empty: give a file of real queries, one a line")
    return out


def read_bank(path: Path) -> list[str]:
    """A query bank file: plain text (or .gz), one query a line."""
    from vfr.store.textfiles import read_lines

    return clean_bank(read_lines(path))


def _paths(index_dir: Path, sha: str) -> tuple[Path, Path]:
    digest = sha.split(":", 1)[-1][:32]
    return index_dir / BANKS / f"{digest}.txt", index_dir / BANKS / f"{digest}.npz"


def stage_bank(index_dir: Path, texts: Sequence[str]) -> str:
    """Keep the bank's texts in the index folder, named by their fingerprint (so a build that fails leaves
    the bank the index records untouched); returns the fingerprint for `IndexConfig.query_bank`."""
    texts = clean_bank(texts)
    sha = bank_sha(texts)
    path, _ = _paths(index_dir, sha)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(texts) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return sha


def bank_vectors(index_dir: Path, encoder, sha: str) -> np.ndarray:
    """The bank's vectors under `encoder`, encoded once and cached beside the texts."""
    path, cache = _paths(index_dir, sha)
    try:
        texts = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise BankError(f"the index is configured with a query bank but {path} cannot be read ({e}); "
                        "run `vfr index --full --query-bank FILE` again") from None
    if bank_sha(texts) != sha:
        raise BankError(f"{path} is not the query bank the index was built with; "
                        "run `vfr index --full --query-bank FILE` again")
    key = f"{encoder.spec.cache_key}|{sha}"
    try:
        with np.load(cache, allow_pickle=False) as z:
            if str(z["key"]) == key:
                return z["vectors"]
    except (OSError, ValueError, KeyError):
        pass  # none yet, another encoder's, or damaged: encode again
    vectors = np.asarray(encoder.encode(texts), dtype=np.float32)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, key=np.asarray(key), vectors=vectors)
    os.replace(tmp, cache)
    return vectors


def forget_other_banks(index_dir: Path, keep: str) -> int:
    """Remove every staged bank but `keep` (its fingerprint; "" keeps none) and their vectors: called after a
    full build, so a bank replaced or turned off leaves the disk. Returns the number of files removed."""
    folder = index_dir / BANKS
    if not folder.is_dir():
        return 0
    kept = {p.name for p in _paths(index_dir, keep)} if keep else set()
    removed = 0
    for path in folder.iterdir():
        if path.name not in kept:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def offsets(bank: np.ndarray, vectors: np.ndarray, k: int) -> np.ndarray:
    """h(d) for each row of `vectors`: the mean of its k largest cosines with the bank's queries."""
    vectors = np.asarray(vectors, dtype=np.float32)
    out = np.empty(len(vectors), dtype=np.float32)
    k = max(1, min(k, len(bank)))
    for start in range(0, len(vectors), CHUNK):
        sims = vectors[start:start + CHUNK] @ bank.T
        top = np.partition(sims, len(bank) - k, axis=1)[:, len(bank) - k:]
        out[start:start + CHUNK] = top.mean(axis=1)
    return out


def save(folder: Path, values: Sequence[float]) -> None:
    np.save(folder / FILE, np.asarray(values, dtype=np.float32), allow_pickle=False)


def load(folder: Path) -> np.ndarray | None:
    path = folder / FILE
    return np.load(path, allow_pickle=False) if path.is_file() else None


def search(snap, vecs: np.ndarray, k: int, allowed: list, weight: float
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The exact top k of cos(q, d) − weight · h(d) per query (flat indexes), as `merge_topk` returns it:
    (scores, segments, rows), each (n_queries, k), -inf / -1 where fewer. Each segment gives its best n by
    cosine; an unseen row of segment s scores at most (s's n-th cosine) − weight · (s's smallest h), so a
    query whose k-th score beats every such bound is done; the others ask again with n four times larger."""
    n_q = len(vecs)
    out = (np.full((n_q, k), -np.inf, np.float32), np.full((n_q, k), -1, np.int64), np.full((n_q, k), -1, np.int64))
    todo, n = np.arange(n_q), max(20 * k, 200)  # a wide first list: one FAISS pass usually proves it
    while len(todo):
        parts, bound = [], np.full(len(todo), -np.inf)
        for segment, view, sel in zip(snap.segments, snap.dense, allowed):
            sims, rows = view.search(vecs[todo], n, sel)
            ok = rows >= 0
            adjusted = np.where(ok, sims - weight * segment.hubness[np.where(ok, rows, 0)], -np.inf)
            parts.append((adjusted.astype(np.float32), rows))
            if rows.shape[1] == n:  # a full list: rows it left out may exist
                full = ok.all(axis=1)
                bound[full] = np.maximum(bound[full], sims[full, -1] - weight * segment.hubness_least)
        scores, segs, rows = merge_topk(parts, k) if parts else (out[0][todo], out[1][todo], out[2][todo])
        width = scores.shape[1]
        kth = scores[:, k - 1] if width >= k else np.full(len(todo), -np.inf)
        done = (bound == -np.inf) | (kth > bound + 1e-6)  # slack: FAISS and numpy round differently
        for dest, src in zip(out, (scores, segs, rows)):
            dest[todo[done], :width] = src[done]
        todo, n = todo[~done], n * 4
    return out
