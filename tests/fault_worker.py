"""A process that runs one write operation, for the fault-injection tests (they kill it at a named point).

Usage: python -m tests.fault_worker DB OP [IMAGES]   with OP one of update | delete | retract | compact | full | merge |
describe (a describe job over the IMAGES folder with a fake engine: no vLLM, real store writes)"""
from __future__ import annotations

import sys
from pathlib import Path


def main() -> None:
    from vfr.engine import Engine
    from vfr.store.store import DescriptionRow, ImageRow, Store

    db, op = Path(sys.argv[1]), sys.argv[2]
    if op == "describe":
        describe(db, Path(sys.argv[3]))
        return
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
    elif op == "retract":  # the base's second describer (tests/faults/test_index_faults.py) retracted
        eng.delete_descriptions("second-vlm")
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


def describe(db: Path, images: Path) -> dict:
    """Batches of 4 images, each written in one transaction with its job counts (describe/job.py)."""
    from tests.describe_helpers import FakeEngine
    from vfr.describe import job
    from vfr.describe.describer import ValidatingDescriber
    from vfr.describe.job import JobConfig, StoreSink
    from vfr.describe.prompt import prompt_version
    from vfr.describe.reader import ReaderLimits

    cfg = JobConfig(model="fake-vlm", prompt_version=prompt_version(True), batch_size=4, collection="photos",
                    limits=ReaderLimits(max_pixels=224 * 224), read_workers=1, prefetch=1)
    counts = job.run([images], ValidatingDescriber(FakeEngine()), StoreSink(db), cfg)
    print(f"done {counts['described']} described, {counts['skipped']} skipped")
    return counts


if __name__ == "__main__":
    main()
