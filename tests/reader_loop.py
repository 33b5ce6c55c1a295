"""A reader process for concurrency tests: searches in a loop until a stop file appears (or a time bound),
checking that every answer comes from one committed state. Prints a JSON summary on stdout.

Usage: python -m tests.reader_loop DB STOPFILE MAX_SECONDS
Each committed state the writer makes holds exactly one live batch of `marker` documents (ids b<N>-<j>),
so an answer mixing batches, or with the wrong count, is an inconsistent read."""
from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path


def main() -> None:
    from vfr.engine import Engine

    db, stop, bound = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
    eng = Engine.open(db)
    summary = {"searches": 0, "errors": [], "inconsistent": [], "generations": set()}
    deadline = time.monotonic() + bound
    retrievers = ("bm25", "dense", "hybrid")
    i = 0
    while not stop.exists() and time.monotonic() < deadline:
        retriever = retrievers[i % 3]
        i += 1
        try:
            with eng.index.handle.acquire() as snap:
                summary["generations"].add(snap.generation)
            hits = eng.search("marker", 40, retriever=retriever)
            batches = {h.id.split("-")[0] for h in hits if h.id.startswith("b")}
            marked = [h for h in hits if h.id.startswith("b")]
            # BM25 finds all five marker documents; the dense side ranks by meaning, so it may miss some,
            # but no retriever may ever mix two batches (two committed states) in one answer
            if len(batches) != 1 or (retriever == "bm25" and len(marked) != 5) or len(marked) > 5:
                summary["inconsistent"].append({"retriever": retriever, "ids": [h.id for h in marked]})
            summary["searches"] += 1
        except Exception:  # noqa: BLE001 - every error is a finding
            summary["errors"].append(traceback.format_exc(limit=3))
    summary["generations"] = sorted(summary["generations"])
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
