"""Task construction, description sources and compositional scoring on toy data."""
from __future__ import annotations

import pytest

from vfr.eval import compositional as comp
from vfr.eval import tasks as tk
from vfr.eval.datasets import CompositionalItem, DescribedImage

IMAGES = [
    DescribedImage("1", ("a dog on grass", "a brown dog"), {"halc/llava-1.5(64tok)": "dog", "opera/shikra": "a dog on a lawn"}),
    DescribedImage("2", ("a red car", "car parked"), {"halc/llava-1.5(64tok)": "a red car parked on a street"}),
]


def test_select_descriptions() -> None:
    d = IMAGES[0].descriptions
    assert tk.select_descriptions(d, "longest") == [("opera/shikra", "a dog on a lawn")]
    assert tk.select_descriptions(d, "llava-1.5") == [("halc/llava-1.5(64tok)", "dog")]
    assert tk.select_descriptions(d, "opera/shikra") == [("opera/shikra", "a dog on a lawn")]
    assert tk.select_descriptions(d, "concat") == [("concat", "dog\n\na dog on a lawn")]
    assert len(tk.select_descriptions(d, "each")) == 2
    assert tk.select_descriptions(d, "minigpt4") == []


def test_text_to_image() -> None:
    t = tk.text_to_image("t2i", IMAGES, "longest")
    assert t.corpus == {"1": "a dog on a lawn", "2": "a red car parked on a street"}
    assert t.queries["1#1"] == "a brown dog" and t.qrels["1#1"] == {"1": 1}
    assert t.doc_target is None and t.docs_per_target() == 1


def test_each_description_is_a_document_of_its_image() -> None:
    t = tk.text_to_image("t2i", IMAGES, "each")
    assert set(t.corpus) == {"1|halc/llava-1.5(64tok)", "1|opera/shikra", "2|halc/llava-1.5(64tok)"}
    assert t.doc_target["1|opera/shikra"] == "1" and t.docs_per_target() == 2
    assert t.qrels["2#0"] == {"2": 1}


def test_named_source_leaves_out_images_without_it() -> None:
    t = tk.text_to_image("t2i", IMAGES, "shikra")
    assert set(t.corpus) == {"1"} and t.meta["images_without_description"] == 1
    assert all(q.startswith("1#") for q in t.queries)


def test_unknown_source_lists_the_choices() -> None:
    with pytest.raises(ValueError, match="unknown description source 'gpt9'.*longest.*llava-1.5"):
        tk.text_to_image("t2i", IMAGES, "gpt9")


def test_image_to_text_has_all_captions_of_the_image_relevant() -> None:
    t = tk.image_to_text("i2t", IMAGES, "longest")
    assert len(t.corpus) == 4 and t.queries["2"] == "a red car parked on a street"
    assert t.qrels["2"] == {"2#0": 1, "2#1": 1}


def _overlap(query: str, doc_ids: list[str], corpus: dict[str, str]) -> dict[str, float]:
    q = set(query.split())  # share of the document's words found in the query
    return {d: len(q & set(corpus[d].split())) / len(set(corpus[d].split())) for d in doc_ids}


def test_compositional_counts_ties_as_wrong() -> None:
    items = [
        CompositionalItem("add/0", "add", "1", "a dog on grass", "a dog on grass with a frisbee"),
        CompositionalItem("swap/0", "swap", "1", "dog chases cat", "cat chases dog"),
        CompositionalItem("swap/1", "swap", "9", "x", "y"),  # image 9 has no description: not used
    ]
    descs = {"1": {"m": "a dog chases a cat on grass"}}
    task = tk.compositional("c", items, descs, "longest")
    assert len(task.trials) == 2 and task.items_total == {"add": 1, "swap": 2}
    corpus = comp.corpus(task)
    for per_trial in (False, True):
        outcomes = comp.score_trials(task.trials, lambda q, ids: _overlap(q, ids, corpus), per_trial)
        assert outcomes == [(True, 0), (False, 1)]
    s = comp.summarize(task, outcomes)
    assert s["categories"]["add"]["accuracy"] == 1.0 and s["categories"]["swap"]["accuracy"] == 0.0
    assert s["categories"]["swap"]["items"] == 1 and s["categories"]["swap"]["items_total"] == 2
    assert s["categories"]["swap"]["tied_checks"] == 1
    assert s["macro_accuracy"] == 0.5 and s["items"] == 2


def test_paraphrase_items_need_both_positives_to_win() -> None:
    items = [CompositionalItem("r/0", "r", "1", "dog on grass", "cat on grass", positive2="a cat on a lawn")]
    task = tk.compositional("c", items, {"1": {"m": "dog on grass"}}, "longest")
    corpus = comp.corpus(task)
    assert comp.score_trials(task.trials, lambda q, ids: _overlap(q, ids, corpus), False) == [(False, 0)]


def test_float_noise_is_a_tie() -> None:
    item = CompositionalItem("swap/0", "swap", "1", "green shirt and red tie", "red shirt and green tie")
    task = tk.compositional("c", [item], {"1": {"m": "a man"}}, "longest")
    noisy = {comp.doc_id(item.positive): 10.158699989318848, comp.doc_id(item.negative): 10.158699035644531}
    assert comp.score_trials(task.trials, lambda q, ids: noisy, False) == [(False, 1)]
    assert comp.tied(1.0, 1.0 + 1e-7) and not comp.tied(1.0, 1.001)
