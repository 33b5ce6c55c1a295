"""Generations of a live index: manifests, the HEAD pointer, reader leases, the writer lock and garbage
collection.

    <index>/HEAD                     the current generation number; replaced atomically (the commit point)
    <index>/manifests/<gen>.json     what generation <gen> is: segments, tombstones, Lucene commits, applied seq
    <index>/leases/<gen>             readers hold a shared flock on it while they use generation <gen>
    <index>/LOCK                     the one writer holds an exclusive flock on it
    <index>/segments/<name>/         immutable segments (retrieve/segments.py)

A writer writes new segment files and the next manifest, then replaces HEAD: readers see the old generation
or the new one, never a mix. Files are deleted only when no manifest that a reader may still open needs
them: a manifest goes once it is not HEAD and no reader holds its lease (flock is released when a process
dies, so a killed reader never pins files forever).
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pydantic import BaseModel, ConfigDict, ValidationError

FORMAT = 3  # 3: live index (segments, generations); 2: one build folder with a forward index; 1: the first


class IndexError_(RuntimeError):
    """An index problem the user can act on (message says what to do)."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


REBUILD = "run `vfr index --full` to rebuild it"


def read_head(index_dir: Path) -> int | None:
    """The current generation, or None when there is no index at `index_dir` yet."""
    try:
        text = (index_dir / "HEAD").read_text().strip()
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise IndexError_(f"{index_dir} is a file, not an index folder: move it away or give another --index") from None
    except (OSError, UnicodeDecodeError) as e:
        raise IndexError_(f"{index_dir / 'HEAD'} cannot be read ({e}); {REBUILD}") from None
    if not text.isdigit():
        raise IndexError_(f"the index at {index_dir} is damaged: HEAD holds {text[:40]!r}, not a generation number; "
                          f"{REBUILD}")
    return int(text)


def manifest_path(index_dir: Path, generation: int) -> Path:
    return index_dir / "manifests" / f"{generation:08d}.json"


class _Segment(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    rows: int
    lucene_commit: str
    dense: str
    tombstones: str | None = None
    deleted: int = 0


class _Manifest(BaseModel):
    """What every reader and writer relies on in a manifest (a damaged one is refused, not half-used)."""

    model_config = ConfigDict(extra="allow")
    format: int
    generation: int
    applied_seq: int
    config: dict
    encoder: dict
    segments: list[_Segment]


def read_manifest(index_dir: Path, generation: int | None = None) -> dict:
    """The manifest of `generation` (default: the current one). A generation given explicitly whose manifest
    is gone raises FileNotFoundError (a writer collected it: the caller retries with the new HEAD)."""
    explicit = generation is not None
    if generation is None:
        generation = read_head(index_dir)
        if generation is None:
            raise IndexError_(_missing_message(index_dir))
    path = manifest_path(index_dir, generation)
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        if explicit or read_head(index_dir) != generation:
            raise
        raise _manifest_missing(index_dir, generation) from None
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        raise IndexError_(f"the index at {index_dir} is damaged: {path} cannot be read ({e}); {REBUILD}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IndexError_(f"{path} is not a vfr index manifest of format {FORMAT}; run `vfr index --full`")
    try:
        _Manifest.model_validate(manifest)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(x) for x in err["loc"])
        raise IndexError_(f"the index at {index_dir} is damaged: {path.name}: {field}: {err['msg']}; {REBUILD}") from None
    return manifest


def _manifest_missing(index_dir: Path, generation: int) -> IndexError_:
    return IndexError_(f"the index at {index_dir} is damaged: HEAD names generation {generation} but "
                       f"{manifest_path(index_dir, generation).name} is missing; {REBUILD}")


def _missing_message(index_dir: Path) -> str:
    if index_dir.exists() and not index_dir.is_dir():
        return f"{index_dir} is a file, not an index folder: move it away or give another --index"
    if (index_dir / "current").exists() or (index_dir / "builds").exists():
        return (f"the index at {index_dir} was built by an older vfr (a rebuild-only format); "
                "run `vfr index --full` to build a live index")
    return f"no index at {index_dir}: run `vfr index` first"


def publish(index_dir: Path, manifest: dict) -> None:
    """Write the manifest of a new generation, then make it current (the commit point)."""
    from vfr.store.faults import point

    path = manifest_path(index_dir, manifest["generation"])
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, json.dumps(manifest, indent=1))
    point("publish:manifest-written")
    _atomic_write(index_dir / "HEAD", str(manifest["generation"]))
    point("publish:head-written")


class Lease:
    """A reader's claim on a generation: its files stay until the lease is released (or the process dies)."""

    def __init__(self, index_dir: Path, generation: int) -> None:
        folder = index_dir / "leases"
        folder.mkdir(exist_ok=True)
        self.generation = generation
        self._fd = os.open(folder / str(generation), os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_SH)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing drops the flock
            self._fd = -1


def lease(index_dir: Path) -> tuple[Lease, dict]:
    """Lease the current generation and read its manifest (retrying if a writer moves on meanwhile)."""
    for _ in range(100):
        generation = read_head(index_dir)
        if generation is None:
            raise IndexError_(_missing_message(index_dir))
        held = Lease(index_dir, generation)
        try:
            return held, read_manifest(index_dir, generation)
        except FileNotFoundError:  # collected between reading HEAD and taking the lease: take the new one
            held.release()
            if read_head(index_dir) == generation:  # no writer moved on: the current manifest is missing
                raise _manifest_missing(index_dir, generation) from None
        except BaseException:
            held.release()
            raise
    raise IndexError_(f"could not open a stable generation of {index_dir} (writers too busy?); try again")


@contextmanager
def writer_lock(index_dir: Path, timeout: float) -> Iterator[None]:
    """The single-writer lock; waits up to `timeout` seconds for another writer to finish."""
    if index_dir.exists() and not index_dir.is_dir():
        raise IndexError_(f"{index_dir} is a file, not an index folder: move it away or give another --index")
    index_dir.mkdir(parents=True, exist_ok=True)
    with open(index_dir / "LOCK", "w") as fh:
        deadline, delay = time.monotonic() + timeout, 0.02
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise IndexError_(f"another vfr process is writing the index at {index_dir} (waited "
                                      f"{timeout:g}s); wait for it to finish or raise VFR_LOCK_TIMEOUT") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _unleased(index_dir: Path, generation: int) -> bool:
    path = index_dir / "leases" / str(generation)
    if not path.exists():
        return True
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # releases our probe lock


def held_generations(index_dir: Path) -> int:
    """How many generations older than HEAD are still kept because a reader holds them."""
    head = read_head(index_dir) or 0
    folder = index_dir / "manifests"
    return sum(1 for p in folder.glob("*.json") if p.stem.isdigit() and int(p.stem) < head) if folder.exists() else 0


def collect_garbage(index_dir: Path) -> dict[str, int]:
    """Remove old manifests no reader holds, then every file no remaining manifest needs. Writer only."""
    from vfr.retrieve import lucene_write

    from vfr.store.faults import point

    point("gc:start")
    head = read_head(index_dir)
    kept: list[dict] = []
    removed = {"manifests": 0, "segments": 0, "files": 0}
    for path in sorted((index_dir / "manifests").glob("*.json")) if (index_dir / "manifests").exists() else ():
        generation = int(path.stem)
        if head is None or generation > head:  # written by a writer that died before publishing it
            path.unlink()
            removed["manifests"] += 1
        elif generation < head and _unleased(index_dir, generation):
            path.unlink()
            (index_dir / "leases" / str(generation)).unlink(missing_ok=True)
            removed["manifests"] += 1
        else:  # HEAD, or a generation some reader still uses
            try:
                kept.append(json.loads(path.read_text()))
            except (OSError, ValueError):  # damaged: it protects nothing (a reader of it fails anyway)
                continue
    segments_dir = index_dir / "segments"
    wanted: dict[str, tuple[set[str], set[str]]] = {}
    for m in kept:
        for s in m["segments"]:
            commits, tombs = wanted.setdefault(s["name"], (set(), set()))
            commits.add(s["lucene_commit"])
            if s.get("tombstones"):
                tombs.add(s["tombstones"])
    for folder in segments_dir.iterdir() if segments_dir.exists() else ():
        if folder.name not in wanted:
            shutil.rmtree(folder, ignore_errors=True)
            removed["segments"] += 1
            continue
        commits, tombs = wanted[folder.name]
        for f in folder.glob("del-*.npy"):
            if f.name not in tombs:
                f.unlink()
                removed["files"] += 1
        if not (folder / "lucene").is_dir():  # damaged: readers and writers report it; nothing to collect
            continue
        if sum(1 for n in os.listdir(folder / "lucene") if n.startswith("segments_")) > len(commits):
            removed["files"] += lucene_write.collect_garbage(folder / "lucene", commits)
    for stray in [*index_dir.glob(".*.tmp"), *index_dir.glob("manifests/.*.tmp")]:  # a dead writer's half-files
        stray.unlink(missing_ok=True)
    return removed
