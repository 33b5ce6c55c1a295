"""A reader process for the fault-injection suite: searches whichever store the test points it at, all the
time, while writers are killed or run out of disk around it. One process serves a whole test session (the
JVM and the encoder load once).

Usage: python -m tests.fault_reader CONTROL_DIR

The test writes CONTROL_DIR/target.json = {"case": name, "db": path or null, "forbidden": [ids]}. The reader
opens that store's index, searches in a loop (every retriever, queries that would find the forbidden ids),
writes `started-<case>` after its first answer, and when the target changes writes `done-<case>.json`:
{"searches", "errors", "forbidden_hits", "generations"}. A file `stop` ends it."""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

QUERIES = ["a woman in a red coat walks along a snowy sidewalk", "a dog chasing a cat", "a red kite above a windy beach",
           "neon OPEN sign in a diner window", "synthetic test picture shape"]


def _write(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def main() -> None:
    from vfr.engine import Engine

    control = Path(sys.argv[1])
    target_file = control / "target.json"
    seen_stat, case, engine, summary, forbidden = None, None, None, None, set()
    i = 0
    while not (control / "stop").exists():
        try:
            st = target_file.stat()
            key = (st.st_ino, st.st_mtime_ns)
        except FileNotFoundError:
            key = None
        if key is not None and key != seen_stat:
            seen_stat = key
            target = json.loads(target_file.read_text())
            if case is not None:
                summary["generations"] = sorted(summary["generations"])
                _write(control / f"done-{case}.json", summary)
            if engine is not None:
                engine.close()
            case, engine = target["case"], None
            forbidden = set(target.get("forbidden", []))
            summary = {"searches": 0, "errors": [], "forbidden_hits": [], "generations": set()}
            if target.get("db"):
                engine = Engine.open(target["db"])
        if engine is None:
            time.sleep(0.05)
            continue
        retriever = ("bm25", "dense", "hybrid")[i % 3]
        query = QUERIES[i % len(QUERIES)]
        i += 1
        try:
            hits = engine.search(query, 20, retriever=retriever)
            summary["generations"].add(engine.index.handle.current().generation)
            summary["forbidden_hits"] += [h.id for h in hits if h.id in forbidden]
            summary["searches"] += 1
        except Exception:  # noqa: BLE001 - every error a reader meets is a finding
            summary["errors"].append(traceback.format_exc(limit=4)[-1500:])
        if summary["searches"] + len(summary["errors"]) == 1:
            (control / f"started-{case}").touch()
        time.sleep(0.1)  # a steady reader, not a CPU hog on a small machine
    if case is not None:
        summary["generations"] = sorted(summary["generations"])
        _write(control / f"done-{case}.json", summary)


if __name__ == "__main__":
    main()
