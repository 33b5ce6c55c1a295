"""Shared by the fault-injection tests (and the disk-full driver): the reader process that searches whichever
copy a case works on, throughout; stopping a process at a named point to kill it there (store/faults.py);
evidence of a write in progress; and the store ↔ index consistency check."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


class Reader:
    """Drives tests/fault_reader.py: `watch` points it at a store (and waits for its first answer there),
    `finish` returns what it saw meanwhile."""

    def __init__(self, control: Path) -> None:
        self.control = control
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.fault_reader", str(control)], cwd=REPO, env=ENV,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self._idle = 0

    def _target(self, case: str, db: Path | None, forbidden=()) -> None:
        tmp = self.control / "target.json.tmp"
        tmp.write_text(json.dumps({"case": case, "db": str(db) if db else None, "forbidden": list(forbidden)}))
        os.replace(tmp, self.control / "target.json")

    def _wait(self, path: Path, what: str) -> None:
        deadline = time.monotonic() + 300
        while not path.exists():
            if self.proc.poll() is not None:
                pytest.fail(f"the reader process died: {self.proc.stderr.read()[-3000:]}")
            assert time.monotonic() < deadline, f"the reader did not {what} in time"
            time.sleep(0.02)

    def watch(self, case: str, db: Path, forbidden=()) -> None:
        self._target(case, db, forbidden)
        self._wait(self.control / f"started-{case}", f"start searching {db}")

    def finish(self, case: str) -> dict:
        self._idle += 1
        self._target(f"idle-{self._idle}", None)
        done = self.control / f"done-{case}.json"
        self._wait(done, f"report on {case}")
        return json.loads(done.read_text())

    def check(self, case: str) -> dict:
        """`finish`, asserting the reader searched, never failed and never saw a forbidden id."""
        seen = self.finish(case)
        assert seen["searches"] > 0, seen
        assert not seen["errors"], "the reader failed while a writer crashed beside it:\n" + "\n".join(seen["errors"][:3])
        assert not seen["forbidden_hits"], f"an acknowledged delete came back: {seen['forbidden_hits'][:5]}"
        return seen

    def stop(self) -> None:
        (self.control / "stop").touch()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@dataclass
class Stopped:
    """A process stopped at a fault point (it hangs there until killed)."""

    proc: subprocess.Popen
    point: str

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=60)
        assert self.proc.returncode == -signal.SIGKILL


def stop_at(argv: list[str], point: str, marker: Path, skip: int = 0, env: dict | None = None) -> Stopped:
    """Run `argv` (a python -m … command line) until it reaches `point` (after `skip` passes) and stops there."""
    full_env = {**ENV, "VFR_FAULT_POINT": point, "VFR_FAULT_MARKER": str(marker), "VFR_FAULT_SKIP": str(skip),
                **(env or {})}
    proc = subprocess.Popen([sys.executable, "-m", *argv], cwd=REPO, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while not (marker.exists() and point in marker.read_text()):
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"{' '.join(argv)} ended (rc {proc.returncode}) without reaching {point}: {err[-2000:]}")
        assert time.monotonic() < deadline, f"{point} not reached in time"
        time.sleep(0.02)
    assert proc.poll() is None, "the process must still be running at the point"
    return Stopped(proc, point)


def store_is_held(db: Path) -> bool:
    """Whether another process holds the database open for writing (DuckDB's file lock)."""
    import duckdb

    try:
        duckdb.connect(str(db), read_only=True).close()
        return False
    except duckdb.IOException as e:
        if "lock" in str(e).lower():
            return True
        raise


def wal_bytes(db: Path) -> int:
    wal = Path(f"{db}.wal")
    return wal.stat().st_size if wal.exists() else 0


def assert_index_matches_store(eng, db: Path, gone=("sample-001",)) -> set[str]:
    """The index holds each current document of the store once, with the store's text, and none of `gone`
    (acknowledged deletes). Returns the ids."""
    from vfr.store.store import Store

    with Store(db, read_only=True) as s:
        docs = {r.id: r.text for r in s.iter_document_records()}
    with eng.index.handle.acquire() as snap:
        indexed = [i for seg, live in zip(snap.segments, snap.live) for i, ok in zip(seg.ids, live) if ok]
        texts = {d: p["text"] for d, p in snap.payloads(list(docs)).items()}
    assert len(indexed) == len(set(indexed)), "a document is indexed twice"
    assert set(indexed) == set(docs), f"index and store disagree: {sorted(set(indexed) ^ set(docs))[:10]}"
    assert texts == docs, "an indexed text is not the store's current text"
    assert not set(gone) & set(docs), "an acknowledged delete came back into the store"
    return set(docs)
