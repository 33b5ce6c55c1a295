"""Each loader on the real shared files: counts match shared/data/README.md and MANIFEST.tsv."""
from __future__ import annotations

from collections import Counter

import pytest

from vfr.eval import benchmarks, datasets as ds

ROOT = benchmarks.default_data_dir()
pytestmark = pytest.mark.usefixtures("shared_data")  # missing data fails (tests/conftest.py), never skips


@pytest.mark.parametrize("split,images,captions", [("test", 401, 2005), ("val", 427, 2136)])
def test_joined(split: str, images: int, captions: int) -> None:
    rows = ds.load_joined(ROOT / "joined" / f"coco_karpathy_{split}_x_vlm_descriptions.jsonl")
    assert len(rows) == images
    assert sum(len(r.captions) for r in rows) == captions
    assert all(5 <= len(r.captions) <= 6 for r in rows)
    # README says 1–4 descriptions; a few images have both HALC and OPERA ones (up to 6)
    assert all(1 <= len(r.descriptions) <= 7 for r in rows)
    assert all(r.image_id.isdigit() for r in rows)


@pytest.mark.parametrize("name,images,captions", [
    ("flickr30k_test_karpathy.json", 1000, 5000), ("flickr30k_val_karpathy.json", 1014, 5070),
    ("coco_test_karpathy.json", 5000, 25010), ("coco_val_karpathy.json", 5000, 25010)])
def test_karpathy(name: str, images: int, captions: int) -> None:
    rows = ds.load_karpathy(ROOT / "karpathy" / name)
    assert (len(rows), sum(len(r.captions) for r in rows)) == (images, captions)


def test_karpathy_coco_ids_are_numeric_and_flickr_ids_are_stems() -> None:
    assert ds.load_karpathy(ROOT / "karpathy" / "coco_test_karpathy.json")[0].image_id == "391895"
    assert ds.load_karpathy(ROOT / "karpathy" / "flickr30k_test_karpathy.json")[0].image_id == "1007129816"


@pytest.mark.parametrize("name,images", [("Flickr30K_FG_ann.json", 1000), ("MSCOCO_FG_ann.json", 5000)])
def test_fg(name: str, images: int) -> None:
    rows = ds.load_fg(ROOT / "fg" / name)
    assert len(rows) == images and sum(len(r.captions) for r in rows) == 5 * images


def test_fg_covers_the_karpathy_test_images() -> None:
    fg = {r.image_id for r in ds.load_fg(ROOT / "fg" / "MSCOCO_FG_ann.json")}
    assert fg == {r.image_id for r in ds.load_karpathy(ROOT / "karpathy" / "coco_test_karpathy.json")}


def test_vlm_descriptions() -> None:
    halc = ds.load_vlm_descriptions(ROOT / "halc" / "halc_chair_coco_val2014_descriptions.jsonl")
    opera = ds.load_vlm_descriptions(ROOT / "opera" / "opera_chair_coco_val2014_descriptions.jsonl")
    assert len(halc) == 2452 and Counter(len(d) for d in halc.values()) == {3: 1490, 2: 962}
    assert len(opera) == 994


def test_sugarcrepe() -> None:
    items = ds.load_sugarcrepe(ROOT / "sugarcrepe")
    assert len(items) == 7511
    assert Counter(i.category for i in items) == {"add_att": 692, "add_obj": 2062, "replace_att": 788,
                                                 "replace_obj": 1652, "replace_rel": 1406, "swap_att": 666,
                                                 "swap_obj": 245}
    assert len({i.image_id for i in items}) == 1560
    described = benchmarks.coco_descriptions(ROOT)
    assert len({i.image_id for i in items} & set(described)) == 129


def test_sugarcrepe_pp() -> None:
    items = ds.load_sugarcrepe_pp(ROOT / "sugarcrepe_pp")
    assert len(items) == 4757 and len({i.image_id for i in items}) == 1542
    assert all(i.positive2 for i in items)
    assert {i.image_id for i in items} <= {i.image_id for i in ds.load_sugarcrepe(ROOT / "sugarcrepe")}


def test_docci_and_iiw() -> None:
    docci = ds.load_docci_iiw(ROOT / "iiw" / "DOCCI_Test.jsonl")
    assert len(docci) == 100
    iiw = ds.load_iiw400(ROOT / "iiw" / "IIW-400.jsonl")
    assert len(iiw) == 400 and sum(i.machine is not None for i in iiw) == 100
    assert 4 <= sum(len(i.objects) for i in iiw) / len(iiw) <= 5.5   # README: ~4.7 objects per image


@pytest.mark.parametrize("name", benchmarks.names())
def test_every_builtin_builds_tasks(name: str) -> None:
    _, tasks, _ = benchmarks.resolve(name, ROOT)
    assert tasks
    for t in tasks:
        if hasattr(t, "queries"):
            assert t.queries and t.corpus and set(t.queries) == set(t.qrels)
        else:
            assert t.trials
