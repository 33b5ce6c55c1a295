"""Pair sources, their validation errors, the split by image and group-free batching (no model, no JVM)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from vfr.retrieve.calibrate.pairs import (Pair, PairError, group_free_batches, load_pairs, negative_groups,
                                          split_by_group, write_jsonl)


def write(path: Path, lines: list) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    return path


JOIN = [
    {"coco_id": 1, "captions": ["a dog on a couch", "brown dog resting"],
     "descriptions": {"halc/llava": "A brown dog lies on a grey couch.", "opera/shikra": "A dog. Couch."}},
    {"coco_id": 2, "captions": ["two cats"], "descriptions": {"halc/llava": "Two cats sleep on a bed."}},
]


def test_generic_jsonl_groups_by_document_unless_given(tmp_path):
    f = write(tmp_path / "p.jsonl", [{"query": "q1", "document": "d1"}, {"query": "q2", "document": "d1"},
                                      {"query": "q3", "document": "d2", "group": 7, "negative": "d1"}, ""])
    pairs = load_pairs(str(f))
    assert pairs == [Pair("q1", "d1", "d1"), Pair("q2", "d1", "d1"), Pair("q3", "d2", "7", "d1")]


def test_coco_join_all_longest_and_source_filter(tmp_path):
    f = write(tmp_path / "join.jsonl", JOIN)
    assert len(load_pairs(str(f))) == 2 * 2 + 1
    longest = load_pairs(str(f), descriptions="longest")
    assert [p.document for p in longest] == ["A brown dog lies on a grey couch."] * 2 + ["Two cats sleep on a bed."]
    only = load_pairs(str(f), description_sources=["opera/"])
    assert {p.document for p in only} == {"A dog. Couch."} and {p.group for p in only} == {"1"}
    joined = load_pairs(str(f), descriptions="joined")  # as `vfr index --descriptions every-model` joins them
    assert [p.document for p in joined] == ["A brown dog lies on a grey couch.\n\nA dog. Couch."] * 2 + \
        ["Two cats sleep on a bed."]


def test_round_trip_through_write_jsonl(tmp_path):
    pairs = [Pair("q", "d", "g", "n"), Pair("q2", "d2", "h")]
    write_jsonl(pairs, tmp_path / "o.jsonl")
    assert load_pairs(str(tmp_path / "o.jsonl")) == pairs


@pytest.mark.parametrize("lines, message", [
    ([{"query": "q", "document": "d"}, "{not json"], r"p\.jsonl:2: not valid JSON"),
    ([{"query": "q", "document": "d"}, {"query": "q"}], r"p\.jsonl:2: missing \"document\""),
    ([{"query": " ", "document": "d"}], r"p\.jsonl:1: \"query\" must be a non-empty string"),
    ([{"query": "q", "document": 3}], r"p\.jsonl:1: \"document\" must be a non-empty string"),
    ([{"query": "q", "document": "d"}, [1, 2]], r"p\.jsonl:2: expected a JSON object, got list"),
    ([{"query": "q", "document": "d", "negative": ""}], r"p\.jsonl:1: \"negative\" must be"),
    ([{"text": "x"}], r"p\.jsonl:1: cannot tell the pair format"),
    (["", ""], r"p\.jsonl: empty file"),
])
def test_bad_pair_files_name_file_and_line(tmp_path, lines, message):
    f = write(tmp_path / "p.jsonl", lines)
    with pytest.raises(PairError, match=message):
        load_pairs(str(f))


def test_bad_join_line_and_non_utf8(tmp_path):
    f = write(tmp_path / "j.jsonl", [JOIN[0], {"coco_id": 3, "captions": "not a list", "descriptions": {}}])
    with pytest.raises(PairError, match=r"j\.jsonl:2: a COCO join line needs"):
        load_pairs(str(f))
    b = tmp_path / "b.jsonl"
    b.write_bytes(b'{"query": "q", "document": "d"}\n\xff\xfe\n')
    with pytest.raises(PairError, match=r"b\.jsonl:2: not UTF-8"):
        load_pairs(str(b))


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(PairError, match="no such file"):
        load_pairs(str(tmp_path / "nope.jsonl"))
    f = write(tmp_path / "p.jsonl", [{"query": "q", "document": "d"}])
    with pytest.raises(PairError, match="unknown pair format"):
        load_pairs(str(f), "csv")  # type: ignore[arg-type]


def test_store_source(tmp_path):
    from vfr.store.store import DescriptionRow, ImageRow, Store

    db = tmp_path / "s.duckdb"
    with Store(db) as s:
        s.upsert([ImageRow("a"), ImageRow("b"), ImageRow("c")],
                 [DescriptionRow("a", "A dog on a couch."), DescriptionRow("b", "Two cats.")],
                 captions=[("a", "dog"), ("a", "a brown dog"), ("b", "cats"), ("c", "no description")])
    pairs = load_pairs(str(db))
    assert set(pairs) == set([Pair("dog", "A dog on a couch.", "a"), Pair("a brown dog", "A dog on a couch.", "a"),
                                    Pair("cats", "Two cats.", "b")])
    with Store(db) as s:  # a second describer: "joined" pairs each caption with the document every-model indexes
        s.upsert([], [DescriptionRow("a", "A couch in a living room.", model="vlm-2")])
    assert {p.document for p in load_pairs(str(db), descriptions="joined") if p.group == "a"} == \
        {"A dog on a couch.\n\nA couch in a living room."}
    assert {p.document for p in load_pairs(str(db)) if p.group == "a"} == {"A couch in a living room."}  # newest
    empty = tmp_path / "e.duckdb"
    Store(empty).close()
    with pytest.raises(PairError, match="no pairs found"):
        load_pairs(str(empty))


def test_a_pool_from_a_store_is_its_images_without_pairs_or_exclusion(tmp_path):
    from vfr.retrieve.calibrate.pairs import load_pool
    from vfr.store.store import DescriptionRow, ImageRow, Store

    db = tmp_path / "s.duckdb"
    with Store(db) as s:
        s.upsert([ImageRow(i) for i in "abcd"],
                 [DescriptionRow("a", "A dog on a couch."), DescriptionRow("b", "Two cats."),
                  DescriptionRow("c", "A red bus."), DescriptionRow("d", "Two cats.")],
                 captions=[("a", "dog")])
    assert load_pool(str(db), {"a"}) == ["Two cats.", "A red bus."]      # d repeats b's text: one document
    assert load_pool(str(db), {"a", "b", "d"}) == ["A red bus."]
    with pytest.raises(PairError, match="no documents"):
        load_pool(str(db), {"a", "b", "c", "d"})


def test_a_pool_from_a_text_file_and_its_errors(tmp_path):
    from vfr.retrieve.calibrate.pairs import load_pool

    f = tmp_path / "pool.txt"
    f.write_text("A red bus.\n\n  Two cats.  \nA red bus.\n")
    assert load_pool(str(f)) == ["A red bus.", "Two cats."]
    with pytest.raises(PairError, match="no such file"):
        load_pool(str(tmp_path / "missing.txt"))
    (tmp_path / "blank.txt").write_text("\n  \n")
    with pytest.raises(PairError, match="no documents"):
        load_pool(str(tmp_path / "blank.txt"))
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(PairError, match="cannot read the pool"):
        load_pool(str(tmp_path / "bin.txt"))


def test_split_is_by_group_and_seeded():
    pairs = [Pair(f"q{i}{j}", f"d{i}", str(i)) for i in range(20) for j in range(3)]
    train, held = split_by_group(pairs, 0.2, seed=1)
    assert {p.group for p in train}.isdisjoint({p.group for p in held})
    assert len({p.group for p in held}) == 4 and len(train) + len(held) == len(pairs)
    assert split_by_group(pairs, 0.2, seed=1) == (train, held)
    assert split_by_group(pairs, 0.0, seed=1) == (pairs, [])
    with pytest.raises(PairError, match="too few"):
        split_by_group(pairs[:6], 0.2, seed=0)


def test_group_free_batches_never_repeat_a_group():
    items = [(g, k) for g in range(5) for k in range(g + 1)]  # group 4 has 5 items
    batches = group_free_batches(items, 3, key=lambda x: x[0])
    assert sorted(x for b in batches for x in b) == sorted(items)
    assert all(len(b) <= 3 and len({x[0] for x in b}) == len(b) for b in batches)



def test_no_batch_holds_a_pair_whose_negative_is_another_pairs_positive():
    # 6 images, 2 captions each; every pair's mined negative is the next image's description
    pairs = [Pair(f"q{g}{c}", f"d{g}", str(g), f"d{(g + 1) % 6}") for g in range(6) for c in range(2)]
    negs = negative_groups(pairs)
    assert negs[0] == frozenset({"1"}) and negative_groups([Pair("q", "d", "g")]) == [frozenset()]
    plain = group_free_batches(pairs, 4, key=lambda p: p.group)
    assert any(p.negative == o.document for b in plain for p in b for o in b)  # what the old batching allowed
    batches = group_free_batches(pairs, 4, key=lambda p: p.group, avoid=lambda p: negs[pairs.index(p)])
    assert sorted(p.query for b in batches for p in b) == sorted(p.query for p in pairs)
    for b in batches:
        assert len({p.group for p in b}) == len(b) <= 4
        assert not {p.negative for p in b} & {p.document for p in b}


def test_group_batch_sampler_keeps_mined_negatives_out_of_their_images_batches():
    from vfr.retrieve.calibrate.sampler import group_batch_sampler

    pairs = [Pair(f"q{g}{c}", f"d{g}", str(g), f"d{(g * 7 + 1) % 40}") for g in range(40) for c in range(3)]
    make = group_batch_sampler([p.group for p in pairs], negative_groups(pairs))
    sampler = make(list(range(len(pairs))), batch_size=8, drop_last=False, seed=3)
    seen = 0
    for batch in sampler:
        rows = [pairs[i] for i in batch]
        assert not {p.negative for p in rows} & {p.document for p in rows}
        assert len({p.group for p in rows}) == len(rows)
        seen += len(rows)
    assert seen >= len(pairs) - 8  # the greedy batching may leave at most a last short batch out

KARPATHY = [{"split": "val", "image_name": "COCO_val2014_000000000042.jpg",
             "captions": ["a dog on a couch", "brown dog resting "]},
            {"split": "val", "image_name": "1000092795.jpg", "captions": ["two men", "men in a park", "friends"]}]


def test_karpathy_split_is_a_caption_proxy_with_image_groups(tmp_path):
    f = tmp_path / "split.json"
    f.write_text(json.dumps(KARPATHY), encoding="utf-8")
    pairs = load_pairs(str(f))
    assert pairs == [Pair("brown dog resting", "a dog on a couch", "42"),
                     Pair("men in a park", "two men", "1000092795"), Pair("friends", "two men", "1000092795")]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"image_name": 3, "captions": []}]), encoding="utf-8")
    with pytest.raises(PairError, match=r"bad\.json item 0: needs \"image_name\""):
        load_pairs(str(bad))
    bad.write_text(json.dumps([{"image_name": "1.jpg", "captions": ["a", " "]}]), encoding="utf-8")
    with pytest.raises(PairError, match=r"bad\.json item 0: 'captions' must be a non-empty list of non-empty"):
        load_pairs(str(bad))
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(PairError, match="not a readable Karpathy split"):
        load_pairs(str(bad))


def test_several_sources_share_coco_groups_sample_and_exclude(tmp_path):
    from vfr.retrieve.calibrate.pairs import load_sources, read_groups

    split = tmp_path / "split.json"
    split.write_text(json.dumps(KARPATHY), encoding="utf-8")
    join = write(tmp_path / "join.jsonl", [{**JOIN[0], "coco_id": 42}, JOIN[1]])
    pairs, counts = load_sources([str(join), str(split)])
    assert counts == {str(join): 5, str(split): 3} and len(pairs) == 8
    assert {p.group for p in pairs} == {"42", "2", "1000092795"}   # image 42 is one group in both sources
    sampled, counts = load_sources([str(join), str(split)], max_pairs=2, seed=3)
    assert counts == {str(join): 2, str(split): 2} and load_sources([str(join), str(split)], max_pairs=2, seed=3)[0] == sampled
    groups = write(tmp_path / "images.txt", ["# benchmark images", "COCO_val2014_000000000042.jpg", "", "1000092795"])
    assert read_groups(groups) == ["42", "1000092795"]
    kept, counts = load_sources([str(join), str(split)][:1], exclude_groups=read_groups(groups))
    assert {p.group for p in kept} == {"2"} and counts == {str(join): 1}
    with pytest.raises(PairError, match="no pairs left after excluding 2 groups"):
        load_sources([str(split)], exclude_groups=read_groups(groups))
    with pytest.raises(PairError, match="cannot read the group list"):
        read_groups(tmp_path / "missing.txt")
    bom = tmp_path / "bom.txt"
    bom.write_bytes("\ufeff391895\r\nCOCO_val2014_000000000042.jpg\r\n".encode("utf-8"))
    assert read_groups(bom) == ["391895", "42"]          # a BOM and Windows line ends, as the other id lists
    bom.write_bytes(b"\xff\xfe4\x002\x00")
    with pytest.raises(PairError, match=r"bom\.txt:1: not UTF-8"):
        read_groups(bom)


def test_shared_karpathy_shorthands_resolve(shared_data, monkeypatch):
    from vfr.retrieve.calibrate.pairs import load_sources

    monkeypatch.setenv("VFR_DATA", str(shared_data))
    pairs, counts = load_sources(["flickr30k-val", "coco-5k-val"], max_pairs=50)
    assert counts == {"flickr30k-val": 50, "coco-5k-val": 50}
    assert all(p.query != p.document for p in pairs) and all(p.group.isdigit() for p in pairs)


def test_mining_takes_another_groups_hit_from_any_ranking():
    from vfr.retrieve.calibrate.mining import mine_hard_negatives

    pairs = [Pair("dog", "D dog", "1"), Pair("cat", "D cat", "2"), Pair("bird", "D bird", "3")]
    seen = {}

    def search(texts, queries, k):   # a ranking that puts the query's own document first, then the others in order
        seen["k"] = k
        return {q: [texts.index(f"D {q}")] + [i for i in range(len(texts)) if texts[i] != f"D {q}"] for q in queries}

    mined = mine_hard_negatives(pairs, depth=1, skip=0, search=search)
    assert seen["k"] == 21 and [p.negative for p in mined] == ["D cat", "D dog", "D dog"]
    mined = mine_hard_negatives(pairs, depth=1, skip=1, search=search)
    assert [p.negative for p in mined] == ["D bird", "D bird", "D cat"]


def test_mining_several_negatives_per_pair_are_distinct_and_of_other_groups():
    from vfr.retrieve.calibrate.mining import mine_hard_negatives

    pairs = [Pair(q, f"D {q}", str(i)) for i, q in enumerate(["dog", "cat", "bird", "fish", "cow"])]

    def search(texts, queries, k):
        return {q: [texts.index(f"D {q}")] + [i for i in range(len(texts)) if texts[i] != f"D {q}"] for q in queries}

    mined = mine_hard_negatives(pairs, depth=3, search=search, count=2)
    assert len(mined) == 10
    for p in pairs:
        rows = [m for m in mined if m.query == p.query]
        assert len(rows) == 2 and all(m.group == p.group and m.document == p.document for m in rows)
        assert len({m.negative for m in rows}) == 2 and p.document not in {m.negative for m in rows}
    assert len(mine_hard_negatives(pairs, depth=1, search=search, count=3)) == 5   # a window of 1: one each
    with pytest.raises(ValueError, match="count"):
        mine_hard_negatives(pairs, search=search, count=0)


def test_mining_draws_from_a_pool_of_documents_without_pairs():
    from vfr.retrieve.calibrate.mining import mine_hard_negatives

    pairs = [Pair("dog", "D dog", "1"), Pair("puppy", "D dog", "1")]   # one image: no negative without a pool
    with pytest.raises(ValueError, match="at least 2 groups"):
        mine_hard_negatives(pairs, search=lambda t, q, k: {})
    ranked = {}

    def search(texts, queries, k):   # the pool's wolf ranks right after the query's own document
        ranked["texts"] = list(texts)
        return {q: [texts.index(t) for t in ("D dog", "D wolf", "D car")] for q in queries}

    heard = []
    mined = mine_hard_negatives(pairs, depth=1, search=search, pool=["D wolf", "D dog", "D car"], log=heard.append)
    assert ranked["texts"] == ["D dog", "D wolf", "D car"]       # a pool text equal to a pair's document is that one
    assert [p.negative for p in mined] == ["D wolf", "D wolf"]
    assert heard == ["pool: 2 of 2 negatives are pool documents"]
    mined = mine_hard_negatives(pairs, depth=1, skip=1, search=search, pool=["D wolf", "D car"])
    assert [p.negative for p in mined] == ["D car", "D car"]


def test_a_pool_is_offered_only_to_the_pairs_pool_for_accepts_and_the_others_rank_without_it():
    from vfr.retrieve.calibrate.mining import mine_hard_negatives

    pairs = [Pair("dog", "D dog", "1"), Pair("cat", "D cat", "2"), Pair("a cat", "C cat", "3"),
             Pair("a dog", "C dog", "4")]   # descriptions (D) and caption proxies (C)
    calls = []

    def search(texts, queries, k):   # the pool's wolf first for everyone, then the texts in order
        calls.append((list(texts), list(queries)))
        return {q: sorted(range(len(texts)), key=lambda i: texts[i] != "D wolf") for q in queries}

    mined = mine_hard_negatives(pairs, depth=1, search=search, pool=["D wolf"], pool_for=lambda p: p.document[0] == "D")
    assert [p.negative for p in mined] == ["D wolf", "D wolf", "D dog", "D dog"]
    assert calls == [(["D dog", "D cat", "C cat", "C dog", "D wolf"], ["cat", "dog"]),
                     (["D dog", "D cat", "C cat", "C dog"], ["a cat", "a dog"])]   # the proxies never see the pool


def test_sources_split_back_and_caption_proxies_are_the_karpathy_ones(tmp_path):
    from vfr.retrieve.calibrate.pairs import by_source, caption_proxy_pairs, load_sources

    join = tmp_path / "join.jsonl"
    join.write_text(json.dumps({"coco_id": 1, "captions": ["a dog"], "descriptions": {"m": "A dog on a couch."}})
                    + "\n")
    split = tmp_path / "split.json"
    split.write_text(json.dumps([{"image_name": "9001.jpg", "captions": ["a red bus", "a bus", "red bus"]}]))
    pairs, counts = load_sources([str(join), str(split)])
    sources = by_source(pairs, counts)
    assert [len(v) for v in sources.values()] == [1, 2] and sum(sources.values(), []) == pairs
    assert caption_proxy_pairs(sources) == set(sources[str(split)])
    with pytest.raises(PairError, match="given twice"):
        load_sources([str(join), str(split), str(join)])


def test_a_guide_vetoes_negatives_that_score_like_the_positive():
    import numpy as np

    from vfr.retrieve.calibrate.mining import mine_hard_negatives

    # "puppy" is a near-duplicate of "dog" (an unlabelled positive), "cat" is a true negative
    vectors = {"dog": [1.0, 0.0], "D dog": [0.8, 0.6], "D puppy": [0.8, 0.6], "D cat": [0.0, 1.0],
               "puppy": [1.0, 0.0], "cat": [0.0, 1.0]}
    pairs = [Pair("dog", "D dog", "1"), Pair("puppy", "D puppy", "2"), Pair("cat", "D cat", "3")]

    def search(texts, queries, k):   # everything ranks the puppy first for the dog query, then the cat
        order = {"dog": ["D dog", "D puppy", "D cat"], "puppy": ["D puppy", "D dog", "D cat"],
                 "cat": ["D cat", "D dog", "D puppy"]}
        return {q: [texts.index(t) for t in order[q]] for q in queries}

    def guide(texts):
        return np.array([vectors[t] for t in texts], dtype=np.float32)

    plain = mine_hard_negatives(pairs, depth=1, search=search)
    assert [p.negative for p in plain] == ["D puppy", "D dog", "D dog"]
    heard = []
    guided = mine_hard_negatives(pairs, depth=1, search=search, guide=guide, log=heard.append)
    assert [p.negative for p in guided] == ["D cat", "D cat", "D dog"]
    assert heard and "2 of 6" in heard[0]
    # a ratio above 1 lets a document as close as the positive through
    assert [p.negative for p in mine_hard_negatives(pairs, depth=1, search=search, guide=guide,
                                                    guide_ratio=1.01)] == ["D puppy", "D dog", "D dog"]
    with pytest.raises(ValueError, match="guide_ratio"):
        mine_hard_negatives(pairs, search=search, guide=guide, guide_ratio=0)


def test_teacher_margins_are_the_teachers_cosine_differences():
    import numpy as np

    from vfr.retrieve.calibrate.distil import teacher_margins

    vectors = {"q": [1.0, 0.0], "pos": [0.6, 0.8], "neg": [0.0, 1.0], "q2": [0.0, 1.0]}

    class Teacher:   # a fixed embedding table stands in for the model
        def encode(self, texts, **_):
            return np.array([vectors[t] for t in texts])

    pairs = [Pair("q", "pos", "1", "neg"), Pair("q2", "pos", "1", "neg")]
    assert teacher_margins(Teacher(), pairs) == pytest.approx([0.6, -0.2])
    with pytest.raises(ValueError, match="hard negative"):
        teacher_margins(Teacher(), [Pair("q", "pos", "1")])


def test_distillation_loss_is_contrastive_plus_scaled_margin_error():
    import torch
    import torch.nn.functional as F

    from vfr.retrieve.calibrate.distil import contrastive_margin_loss

    table = torch.nn.Parameter(torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.8, 0.6]]))

    class Model(torch.nn.Module):   # "sentence features" are row indices into a trainable table
        def forward(self, features):
            return {"sentence_embedding": table[features["ids"]]}

    feats = [{"ids": torch.tensor([0, 2])}, {"ids": torch.tensor([1, 3])}, {"ids": torch.tensor([2, 0])}]
    labels = torch.tensor([0.5, 0.1])
    loss = contrastive_margin_loss(Model(), scale=20.0, weight=2.0)
    q, p, n = (F.normalize(table[f["ids"]], dim=-1) for f in feats)
    contrast = F.cross_entropy(20 * q @ torch.cat([p, n]).T, torch.arange(2))
    margin = (q * p).sum(-1) - (q * n).sum(-1)
    expected = contrast + 2.0 * F.mse_loss(20 * margin, 20 * labels)
    assert float(loss(feats, labels).detach()) == pytest.approx(float(expected.detach()))
    before = float(F.mse_loss(margin, labels).detach())
    opt = torch.optim.SGD([table], lr=0.01)
    for _ in range(20):
        opt.zero_grad()
        contrastive_margin_loss(Model(), scale=20.0, weight=10.0)(feats, labels).backward()
        opt.step()
    q, p, n = (F.normalize(table[f["ids"]], dim=-1) for f in feats)
    assert float(F.mse_loss((q * p).sum(-1) - (q * n).sum(-1), labels).detach()) < before


def test_cross_fitting_gives_each_pair_a_teacher_that_never_trained_on_its_image(tmp_path):
    from vfr.retrieve.calibrate.distil import assign_teachers, teacher_plan, trained_groups

    pairs = [Pair(f"q{i}", f"d{i}", g) for i, g in enumerate("aabbcd")]
    plan = assign_teachers(pairs, {"A": {"a", "b"}, "B": {"c", "d"}})
    assert plan == {"A": [4, 5], "B": [0, 1, 2, 3]}
    assert assign_teachers(pairs, {"A": {"a"}, "B": {"b"}}) == {"A": [2, 3, 4, 5], "B": [0, 1]}  # first free one
    with pytest.raises(ValueError, match="every --teacher trained on 1 of the student's images"):
        assign_teachers(pairs, {"A": {"a", "c"}, "B": {"a", "d"}})

    (tmp_path / "t1").mkdir()
    (tmp_path / "t1" / "calibration.json").write_text(json.dumps({"train_group_ids": ["a", "b"]}))
    (tmp_path / "t2").mkdir()
    (tmp_path / "t2" / "calibration.json").write_text("{not json")
    assert trained_groups(tmp_path / "t1") == {"a", "b"}
    assert trained_groups(tmp_path / "t2") is None and trained_groups(tmp_path / "none") is None
    assert teacher_plan({"one": str(tmp_path / "t2")}, pairs) == {"one": list(range(6))}  # one teacher: all pairs
    with pytest.raises(ValueError, match="does not record them"):
        teacher_plan({"t1": str(tmp_path / "t1"), "t2": str(tmp_path / "t2")}, pairs)


def test_a_repeated_teacher_is_refused_by_the_config_itself():
    from vfr.retrieve.calibrate.train import CalibrateConfig

    with pytest.raises(ValueError, match="the same --teacher is given twice"):
        CalibrateConfig(teacher=["t", "t"]).validate()
    CalibrateConfig(teacher=["a", "b"]).validate()
    CalibrateConfig(teacher="a").validate()
