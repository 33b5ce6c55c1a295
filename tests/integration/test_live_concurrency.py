"""Readers and writers together: a reader process searches in a loop while this process applies 10
index updates and 3 compactions; every answer must come from some committed state, with zero errors."""
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.live_helpers import copy_store
from vfr.engine import Engine
from vfr.store.store import DescriptionRow, ImageRow, Store

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def _batch(store: Store, n: int, texts: list[str]) -> None:
    """Make batch n the only live batch of marker documents (one store write; one index commit later)."""
    ids = [f"b{n}-{j}" for j in range(5)]
    store.upsert([ImageRow(i) for i in ids],
                 [DescriptionRow(i, f"marker {texts[(n * 5 + j) % len(texts)]}") for j, i in enumerate(ids)])
    if n > 0:
        store.delete([f"b{n - 1}-{j}" for j in range(5)])


def test_reader_survives_updates_and_compactions(template_store, tmp_path):
    db = copy_store(template_store, tmp_path)
    with Store(db) as s:
        texts = [r.text for r in s.document_records_after(None, 60)]
        _batch(s, 0, texts)
    eng = Engine.open(db)
    eng.update_index()
    stop = tmp_path / "stop"
    reader = subprocess.Popen([sys.executable, "-m", "tests.reader_loop", str(db), str(stop), "900"],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(15)  # the reader starts its JVM and encoder, then searches throughout what follows
        generations = []
        for n in range(1, 11):
            with Store(db) as s:
                _batch(s, n, texts)
            generations.append(eng.update_index()["generation"])
            if n in (3, 6, 9):
                eng.compact(store=False)
            time.sleep(0.5)
        time.sleep(2)
    finally:
        stop.touch()
        out, err = reader.communicate(timeout=600)
    assert reader.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["errors"] == [], summary["errors"][:3]
    assert summary["inconsistent"] == [], summary["inconsistent"][:3]
    assert summary["searches"] > 30
    assert len(summary["generations"]) >= 4, "the reader did not search across the updates"
    final = eng.search("marker", 40, retriever="bm25")
    assert sorted(h.id for h in final if h.id.startswith("b")) == [f"b10-{j}" for j in range(5)]
