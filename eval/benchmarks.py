"""Built-in benchmark names → tasks over the shared data folder, and resolution of a BENCH argument
(a built-in name, a BEIR folder or a generic JSONL file)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from vfr.eval import datasets as ds
from vfr.eval import tasks as tk

Task = tk.RetrievalTask | tk.CompositionalTask


def default_data_dir() -> Path:
    """`VFR_DATA`, else `../shared/data` next to the repository root (where the shared data lives)."""
    env = os.environ.get("VFR_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data"


@dataclass(frozen=True)
class BuiltIn:
    name: str
    summary: str
    build: Callable[[Path, str], list[Task]]
    uses_source: bool = True


def _coco_join(split: str) -> Callable[[Path, str], list[Task]]:
    def build(root: Path, source: str) -> list[Task]:
        images = ds.load_joined(root / "joined" / f"coco_karpathy_{split}_x_vlm_descriptions.jsonl")
        ref = "coco-5k" if split == "test" else None
        return [tk.text_to_image("t2i", images, source, reference=ref), tk.image_to_text("i2t", images, source)]
    return build


def _coco_fg(root: Path, source: str) -> list[Task]:
    images = ds.load_joined(root / "joined" / "coco_karpathy_test_x_vlm_descriptions.jsonl")
    fg = {c.image_id: c.captions for c in ds.load_fg(root / "fg" / "MSCOCO_FG_ann.json")}
    missing = [i.image_id for i in images if i.image_id not in fg]
    if missing:
        raise ds.BenchmarkError(f"MSCOCO_FG_ann.json lacks {len(missing)} joined test images, e.g. {missing[0]}")
    return [tk.text_to_image("t2i-fg", images, source, query_captions=fg)]


def _karpathy(file: str, ref: str | None, fg: str | None = None) -> Callable[[Path, str], list[Task]]:
    def build(root: Path, source: str) -> list[Task]:
        images = ds.load_karpathy(root / "karpathy" / file)
        queries = None
        if fg:
            queries = {c.image_id: c.captions for c in ds.load_fg(root / "fg" / fg)}
        return [tk.caption_proxy("t2i-proxy-fg" if fg else "t2i-proxy", images, queries, reference=ref)]
    return build


def _cross_model(file: str, prefix: str, query_model: str, doc_model: str) -> Callable[[Path, str], list[Task]]:
    def build(root: Path, source: str) -> list[Task]:
        descs = ds.load_vlm_descriptions(root / prefix / file)
        pairs = [(i, d[query_model], d[doc_model]) for i, d in sorted(descs.items())
                 if query_model in d and doc_model in d]
        return [tk.paired(f"{query_model}→{doc_model}",
                          f"description→description across VLMs: {query_model} queries {doc_model}", pairs)]
    return build


def _sugarcrepe(folder: str, pp: bool) -> Callable[[Path, str], list[Task]]:
    def build(root: Path, source: str) -> list[Task]:
        items = (ds.load_sugarcrepe_pp if pp else ds.load_sugarcrepe)(root / folder)
        return [tk.compositional("compositional", items, coco_descriptions(root), source)]
    return build


def coco_descriptions(root: Path) -> dict[str, dict[str, str]]:
    """Every machine description of a COCO val2014 image in halc/ and opera/ ({coco id: {source: text}})."""
    out: dict[str, dict[str, str]] = {}
    for sub in ("halc", "opera"):
        for path in sorted((root / sub).glob("*.jsonl")):
            for cid, d in ds.load_vlm_descriptions(path, prefix=f"{sub}/").items():
                # halc descriptions are cut at 64 tokens; keys say so, as in the joins
                out.setdefault(cid, {}).update({(k + "(64tok)" if sub == "halc" else k): v for k, v in d.items()})
    return out


def _docci(root: Path, source: str) -> list[Task]:
    rows = ds.load_docci_iiw(root / "iiw" / "DOCCI_Test.jsonl")
    return [tk.paired("docci→iiw", "long query→long document: DOCCI description queries ImageInWords", rows)]


def _iiw400(root: Path, source: str) -> list[Task]:
    images = ds.load_iiw400(root / "iiw" / "IIW-400.jsonl")
    corpus = {i.image_id: i.description for i in images}
    queries, qrels = {}, {}
    for img in images:
        for j, (_, text) in enumerate(img.objects):
            queries[f"{img.image_id}#o{j}"], qrels[f"{img.image_id}#o{j}"] = text, {img.image_id: 1}
    objects = tk.RetrievalTask("object→image", "object description queries full IIW descriptions",
                               corpus, queries, qrels, meta={"images": len(images)})
    machine = [(i.image_id, i.description, i.machine) for i in images if i.machine]
    return [objects, tk.paired("human→machine", "human IIW description queries IIW-P5B machine descriptions",
                               machine)]


BUILTINS: dict[str, BuiltIn] = {b.name: b for b in [
    BuiltIn("coco-test", "COCO Karpathy test ∩ VLM descriptions (401 images): t2i and i2t", _coco_join("test")),
    BuiltIn("coco-val", "COCO Karpathy val ∩ VLM descriptions (427 images): t2i and i2t", _coco_join("val")),
    BuiltIn("coco-fg-test", "MSCOCO-FG refined captions query the 401 described test images", _coco_fg),
    BuiltIn("flickr30k-test", "Flickr30k 1K test, caption-only: captions 2–5 query caption 1 (proxy)",
            _karpathy("flickr30k_test_karpathy.json", "flickr30k-1k"), uses_source=False),
    BuiltIn("flickr30k-val", "Flickr30k val (1,014), caption-only proxy",
            _karpathy("flickr30k_val_karpathy.json", None), uses_source=False),
    BuiltIn("flickr30k-fg-test", "Flickr30K-FG refined captions 2–5 query original caption 1 (proxy)",
            _karpathy("flickr30k_test_karpathy.json", None, "Flickr30K_FG_ann.json"), uses_source=False),
    BuiltIn("coco-5k-test", "COCO 5K test, caption-only: captions 2–5(6) query caption 1 (proxy)",
            _karpathy("coco_test_karpathy.json", "coco-5k"), uses_source=False),
    BuiltIn("coco-5k-val", "COCO 5K val, caption-only proxy",
            _karpathy("coco_val_karpathy.json", None), uses_source=False),
    BuiltIn("halc-xmodel", "HALC (2,452 images): LLaVA-1.5 description queries MiniGPT-4's",
            _cross_model("halc_chair_coco_val2014_descriptions.jsonl", "halc", "llava-1.5", "minigpt4"),
            uses_source=False),
    BuiltIn("opera-xmodel", "OPERA (500 images): LLaVA-1.5 description queries Shikra's",
            _cross_model("opera_chair_coco_val2014_descriptions.jsonl", "opera", "llava-1.5", "shikra"),
            uses_source=False),
    BuiltIn("sugarcrepe", "SugarCrepe, items whose image has a HALC/OPERA description", _sugarcrepe("sugarcrepe", False)),
    BuiltIn("sugarcrepe-pp", "SugarCrepe++ (caption and paraphrase vs negative)", _sugarcrepe("sugarcrepe_pp", True)),
    BuiltIn("docci-iiw", "DOCCI test (100): DOCCI description → ImageInWords description", _docci,
            uses_source=False),
    BuiltIn("iiw-400", "IIW-400: object descriptions → image description; human → IIW-P5B machine", _iiw400,
            uses_source=False),
]}


def resolve(bench: str, data_dir: Path | None = None, source: str = "longest") -> tuple[str, list[Task], dict]:
    """BENCH → (name, tasks, provenance). A built-in name, a BEIR folder, or a generic JSONL file."""
    if bench in BUILTINS:
        root = data_dir or default_data_dir()
        if not root.is_dir():
            raise ds.BenchmarkError(f"data folder {root} not found: pass --data-dir or set VFR_DATA")
        b = BUILTINS[bench]
        return bench, b.build(root, source), {"builtin": bench, "data_dir": str(root), "summary": b.summary}
    path = Path(bench)
    if path.is_dir():
        bm = ds.load_beir(path)
    elif path.is_file():
        bm = ds.load_generic_jsonl(path)
    else:
        raise ds.BenchmarkError(f"{bench!r} is neither a built-in benchmark ({', '.join(BUILTINS)}) "
                                "nor an existing BEIR folder or JSONL file")
    task = tk.RetrievalTask("retrieval", f"{bm.meta['format']} benchmark", bm.corpus, bm.queries, bm.qrels,
                            meta=dict(bm.meta))
    return bm.name, [task], dict(bm.meta)


def names() -> Sequence[str]:
    return list(BUILTINS)


BANKS = {"coco-val-captions": "COCO Karpathy val captions (2 of each of 2,000 images, seed 0), none of an "
                              "image in the COCO joins"}


def query_bank(spec: str, data_dir: Path | None = None) -> list[str]:
    """A query bank for the hubness correction (retrieve/hubness.py): a built-in name (BANKS) or a text file
    of queries, one a line."""
    import random

    from vfr.retrieve.hubness import clean_bank, read_bank

    if spec not in BANKS:
        path = Path(spec)
        if not path.is_file():
            raise ds.BenchmarkError(f"query bank {spec!r} is neither a file nor a built-in bank "
                                    f"({', '.join(BANKS)})")
        return read_bank(path)
    images = coco_val_outside_joins(data_dir)
    random.Random(0).shuffle(images)
    return clean_bank([c for i in images[:2000] for c in i.captions[:2]])


def coco_val_outside_joins(data_dir: Path | None = None) -> list:
    """The COCO Karpathy val images (with their captions) that are in neither COCO join: captions of them are
    never a benchmark's query, so banks are drawn from them."""
    root = data_dir or default_data_dir()
    joined = {i.image_id for split in ("test", "val")
              for i in ds.load_joined(root / "joined" / f"coco_karpathy_{split}_x_vlm_descriptions.jsonl")}
    return [i for i in ds.load_karpathy(root / "karpathy" / "coco_val_karpathy.json") if i.image_id not in joined]


def without_scored(tasks: Sequence[Task], bank: Sequence[str], name: str = "the query bank") -> list[str]:
    """The bank less every text the tasks score (queries, and SugarCrepe's captions and negatives): a bank must
    never hold what it is tested on. Generic captions recur across images ("A man riding a wave on top of a
    surfboard."), so a few may match by chance. Raises BenchmarkError when nothing is left."""
    texts = {q for t in tasks if isinstance(t, tk.RetrievalTask) for q in t.queries.values()}
    texts |= {x for t in tasks if isinstance(t, tk.CompositionalTask) for trial in t.trials
              for c in trial.checks for x in (c.query, c.positive, c.negative)}
    scored = {" ".join(x.split()) for x in texts}
    kept = [b for b in bank if b not in scored]
    if not kept:
        raise ds.BenchmarkError(f"{name} holds only texts the benchmark scores: choose another bank")
    return kept
