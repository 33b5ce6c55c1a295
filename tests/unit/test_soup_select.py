"""Greedy soup selection (eval/soup_select.py): the order, the keep rule and the fixed dev queries, with a fake
scorer; the real scorer and CLI are exercised in tests/integration/test_model_soup.py."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from vfr.eval.soup_select import SelectionError, fixed_dev, greedy_select
from vfr.eval.tasks import RetrievalTask


def scorer(table: dict[frozenset, float], calls: list):
    def score(models):
        calls.append(tuple(models))
        return table[frozenset(models)]
    return score


def test_best_first_and_kept_only_if_the_soup_does_not_get_worse():
    table = {frozenset("a"): 0.50, frozenset("b"): 0.60, frozenset("c"): 0.55,
             frozenset("bc"): 0.60,          # a tie with b alone: c is kept (Wortsman et al.'s ≥)
             frozenset("abc"): 0.58}         # worse than the soup so far: a is dropped
    calls: list = []
    sel = greedy_select(["a", "b", "c"], scorer(table, calls))
    assert sel.chosen == ["b", "c"]
    assert sel.alone == {"a": 0.50, "b": 0.60, "c": 0.55}
    # each alone, then c (second best) with b, then a with b and c
    assert calls[:3] == [("a",), ("b",), ("c",)] and calls[3] == ("b", "c")
    assert [(t.candidate, t.kept) for t in sel.trials] == [("b", True), ("c", True), ("a", False)]
    assert sel.score == 0.60


def test_dropped_candidates_do_not_stay_in_later_trials():
    table = {frozenset("x"): 0.7, frozenset("y"): 0.6, frozenset("z"): 0.5,
             frozenset("xy"): 0.65, frozenset("xz"): 0.75}
    sel = greedy_select(["z", "y", "x"], scorer(table, []))
    assert sel.chosen == ["x", "z"] and sel.score == 0.75
    assert sel.trials[-1].models == ("x", "z")


def test_ties_alone_keep_the_order_given():
    table = {frozenset("p"): 0.5, frozenset("q"): 0.5, frozenset("pq"): 0.4}
    assert greedy_select(["q", "p"], scorer(table, [])).chosen == ["q"]
    assert greedy_select(["p", "q"], scorer(table, [])).chosen == ["p"]


@pytest.mark.parametrize("candidates, message", [(["a"], "at least 2"), (["a", "a"], "given twice")])
def test_refuses_too_few_or_repeated_candidates(candidates, message):
    with pytest.raises(SelectionError, match=message):
        greedy_select(candidates, lambda m: 0.0)


def _model(root: Path, name: str, groups: list[str] | None) -> str:
    folder = root / name
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    if groups is not None:
        (folder / "calibration.json").write_text(json.dumps({"train_group_ids": groups}))
    return str(folder)


def _task() -> RetrievalTask:
    corpus = {"1": "a dog", "2": "a cat", "3": "a bus"}
    queries = {"1|0": "dog", "2|0": "cat", "3|0": "bus", "3|1": "red bus"}
    qrels = {q: {q.split("|")[0]: 1} for q in queries}
    return RetrievalTask("t2i", "t2i", corpus, queries, qrels)


def test_one_dev_set_without_what_any_candidate_trained_on(tmp_path):
    models = [_model(tmp_path, "m1", ["1"]), _model(tmp_path, "m2", ["2"]), _model(tmp_path, "base", None)]
    lines: list[str] = []
    task = fixed_dev(_task(), models, "dev", lines.append)
    assert sorted(task.qrels) == ["3|0", "3|1"] and sorted(task.queries) == ["3|0", "3|1"]
    assert sorted(task.corpus) == ["3"]   # no candidate meets a distractor it trained on
    assert "2 of 4" in lines[0] and "2 left out" in lines[0] and "1 of 3 documents" in lines[0]


def test_a_dev_set_none_trained_on_is_used_whole(tmp_path):
    lines: list[str] = []
    task = fixed_dev(_task(), [_model(tmp_path, "p", None), _model(tmp_path, "q", ["9"])], "dev", lines.append)
    assert task == _task() and not lines


def test_no_query_left_is_an_error(tmp_path):
    models = [_model(tmp_path, "m1", ["1", "2"]), _model(tmp_path, "m2", ["3"])]
    with pytest.raises(SelectionError, match="every judged query"):
        fixed_dev(_task(), models, "dev")
