"""`vfr demo`: the whole pipeline on the built-in sample (180 hand-written scene descriptions)."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from vfr.common import console, out

EXAMPLE_QUERIES = [
    "a dog chasing a cat",
    "red car parked next to a blue truck",
    "people at a night market under lanterns",
    "snowy mountain lake at sunrise",
    "a shop sign that says OPEN",
    "children playing on a swing in a park",
]


def sample_path() -> Path:
    return Path(str(resources.files("vfr") / "data" / "sample_descriptions.jsonl"))


def run_demo(workdir: Path, k: int = 3) -> None:
    from vfr.describe.schema import RENDERER
    from vfr.engine import Engine
    from vfr.progress import Progress
    from vfr.render import results_table
    from vfr.store.io import import_file
    from vfr.store.store import Store

    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "demo.duckdb"
    console.print(f"[bold]vfr demo[/]: importing the built-in sample into {db}")
    with Store(db) as store:
        n = len(import_file(store, sample_path(), RENDERER).records)
    console.print(f"imported {n} structured scene descriptions; building BM25 + dense indexes")
    engine = Engine.open(db, workdir / "demo.index")
    with Progress() as bar:
        report = engine.update_index(progress=bar.callback())
    m = engine.stats()
    console.print(f"index ready: {m['documents']} documents ({report['mode']}), encoder {m['encoder']['name']}, "
                  f"BM25 k1={m['config']['k1']} b={m['config']['b']}")
    for q in EXAMPLE_QUERIES:
        hits = engine.search(q, k)
        out.print(results_table(q, hits, engine.get([h.id for h in hits])))
    console.print(f"\nTry your own: vfr search \"QUERY\" --db {db}   (add --retriever bm25|dense|hybrid, --format json)")
