"""The dev evaluator of `vfr calibrate --dev`: which documents count as a query's answer."""
from __future__ import annotations

import pytest

from vfr.eval.tasks import RetrievalTask
from vfr.retrieve.calibrate.train import dev_evaluator


def test_targets_with_several_documents_make_each_of_them_relevant():
    task = RetrievalTask("t2i", "dev", corpus={"a1": "x", "a2": "y", "b1": "z"}, queries={"q1": "a", "q2": "b",
                                                                                         "q3": "c"},
                         qrels={"q1": {"A": 1}, "q2": {"B": 1, "A": 0}, "q3": {"C": 1}},
                         doc_target={"a1": "A", "a2": "A", "b1": "B", "gone": "C"})
    ev = dev_evaluator(task)
    assert ev.relevant_docs == {"q1": {"a1", "a2"}, "q2": {"b1"}}   # grade 0 is not relevant; q3's answer is gone
    assert set(ev.queries_ids) == {"q1", "q2"} and set(ev.corpus_ids) == {"a1", "a2", "b1"}
    assert ev.name == "dev"


def test_documents_are_the_targets_without_doc_target_and_an_empty_dev_set_is_refused():
    task = RetrievalTask("t2i", "dev", corpus={"d1": "x", "d2": "y"}, queries={"q1": "a"}, qrels={"q1": {"d2": 1}})
    assert dev_evaluator(task).relevant_docs == {"q1": {"d2"}}
    with pytest.raises(ValueError, match="no query whose answer is in its corpus"):
        dev_evaluator(RetrievalTask("t2i", "dev", corpus={"d1": "x"}, queries={"q1": "a"}, qrels={"q1": {"d9": 1}}))
