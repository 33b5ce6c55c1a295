"""A process that runs one write operation, for the fault-injection tests (they kill it at a named point).

Usage: python -m tests.fault_worker DB OP   with OP one of update | delete | compact | full | merge"""
from __future__ import annotations

import sys
from pathlib import Path


def main() -> None:
    from vfr.engine import Engine
    from vfr.store.store import DescriptionRow, ImageRow, Store

    db, op = Path(sys.argv[1]), sys.argv[2]
    eng = Engine.open(db)
    if op == "update":  # five new documents (sample texts: their vectors are cached) and two deletions
        with Store(db) as s:
            texts = [r.text for r in s.document_records_after(None, 5)]
            s.upsert([ImageRow(f"new-{i}", collection="pets") for i in range(5)],
                     [DescriptionRow(f"new-{i}", f"fresh {t}") for i, t in enumerate(texts)])
            s.delete(["sample-010", "sample-011"])
        eng.update_index()
    elif op == "delete":
        eng.delete(["sample-020", "sample-021", "sample-022"])
    elif op == "compact":
        eng.compact()
    elif op == "full":
        eng.update_index(full=True)
    elif op == "merge":  # small commits until the merge policy merges segments
        for i in range(12):
            eng.delete([f"sample-{100 + i}"])
            with Store(db) as s:
                t = s.document_records(["sample-030"])["sample-030"].text
                s.upsert([ImageRow(f"m-{i}")], [DescriptionRow(f"m-{i}", f"merge {t}")])
            eng.update_index()
    else:
        raise SystemExit(f"unknown op {op}")
    print("done")


if __name__ == "__main__":
    main()
