"""A `kill -9` during import leaves the store intact (index writes: tests/faults/test_index_faults.py)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vfr.describe.schema import RENDERER
from vfr.store.io import import_file
from vfr.store.store import Store
from vfr.demo import sample_path

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def _vfr(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "vfr", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_kill_during_import_keeps_previous_data(tmp_path):
    db = tmp_path / "s.duckdb"
    with Store(db) as s:
        import_file(s, sample_path(), RENDERER)
        before = s.fingerprint()
    big = tmp_path / "big.jsonl"
    with big.open("w") as f:
        for i in range(300_000):
            f.write(json.dumps({"id": f"big-{i}", "text": f"synthetic document number {i} about a red bus"}) + "\n")
    for delay in (0.5, 2.0, 4.0):  # kill at several points: parsing, validating, writing
        proc = _vfr("import", str(big), "--db", str(db))
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        with Store(db) as s:  # reopens (and replays the WAL) after the crash
            fp = s.fingerprint()
            assert fp == before or fp["documents"] == 180 + 300_000, "a partial import became visible"
            assert s.get(["sample-001"])["sample-001"].text
            if fp != before:  # the import finished before the kill: undo so the next round is meaningful
                s.delete([f"big-{i}" for i in range(300_000)])
                before = s.fingerprint()
