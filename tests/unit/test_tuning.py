"""Fusion tuning (retrieve/tuning.py, eval/tune.py): the grid search on fixed candidates, the stored choice
keyed by encoder fingerprint and scoring settings, and what a manifest's default resolves to. No JVM."""
import json
from types import SimpleNamespace

import numpy as np
import pytest

from vfr.eval.tune import TuneInputError, dev_task, pairs_task, table_lines
from vfr.retrieve.calibrate.pairs import Pair
from vfr.retrieve.encoder_fingerprint import fingerprint_folder
from vfr.retrieve.fusion import FusionConfig
from vfr.retrieve.tuning import (DEFAULT_ALPHA, FusionChoice, TuningError, default_fusion, find_choice, grid,
                                 manifest_fusion, read_choices, save_choice, tune)

SCORING = {"k1": 0.9, "b": 0.4}


class FakeHybrid:
    """candidate_scores from fixed per-query score tables (what the real hybrid computes exactly)."""

    def __init__(self, sparse: dict, dense: dict) -> None:
        self.sparse, self.dense = sparse, dense
        self.calls = 0

    def candidate_scores(self, queries, depth, scope=None, exact=True):
        self.calls += 1
        return [dict(self.sparse[q.id]) for q in queries], [dict(self.dense[q.id]) for q in queries]


def _collection(n: int, sparse_knows: bool):
    """n queries, each with its own relevant document `r<i>` and two distractors. Dense ranks a distractor
    first by a little; BM25 either knows the answer (`sparse_knows`) or is confidently wrong."""
    queries, qrels, sparse, dense = {}, {}, {}, {}
    for i in range(n):
        q, right, wrong, other = f"q{i}", f"r{i}", f"w{i}", f"o{i}"
        queries[q], qrels[q] = f"query {i}", {right: 1}
        dense[q] = {wrong: 0.82, right: 0.80, other: 0.10}
        sparse[q] = {right: 9.0, wrong: 1.0, other: 0.0} if sparse_knows else {right: 0.0, wrong: 9.0, other: 8.0}
    return queries, qrels, FakeHybrid(sparse, dense)


def test_grid_holds_the_default_dense_alone_and_rrf_at_one_depth():
    g = grid()
    assert FusionConfig() in g
    assert sum(c.weights[0] == 0 for c in g) == 1 and any(c.method == "rrf" for c in g)  # dense alone listed once
    assert len({c.depth for c in g}) == 1 and len(set(g)) == len(g)


def test_a_useful_bm25_side_gets_weight():
    queries, qrels, hybrid = _collection(20, sparse_knows=True)
    result = tune(hybrid, queries, qrels, metric="r@1")
    assert result.value(result.best)["r@1"] == 1.0
    assert result.best.method == "rrf" or result.best.weights[0] > 0
    dense_alone = next(c for c in result.table if c[0].weights[0] == 0 and c[0].method == "convex")
    assert dense_alone[1]["r@1"] == 0.0
    assert hybrid.calls == 1  # candidates collected once, every setting compared on them


def test_a_misleading_bm25_side_gets_little_weight_and_ties_go_to_the_default():
    queries, qrels, hybrid = _collection(20, sparse_knows=False)
    dense = {q: {d: s for d, s in scores.items()} for q, scores in hybrid.dense.items()}
    for q in dense:  # dense right this time
        dense[q] = {f"r{q[1:]}": 0.9, f"w{q[1:]}": 0.5, f"o{q[1:]}": 0.1}
    hybrid.dense = dense
    result = tune(hybrid, queries, qrels, metric="r@1")
    assert result.value(result.best)["r@1"] == 1.0
    assert result.best == FusionConfig()  # the default is among the best: a tie keeps it
    heavy = next(m for c, m in result.table if c.method == "convex" and c.weights[0] == 0.5 and c.norm == "zscore")
    assert heavy["r@1"] < 1.0


def test_tune_refuses_bad_input():
    queries, qrels, hybrid = _collection(3, True)
    with pytest.raises(TuningError, match="metric"):
        tune(hybrid, queries, qrels, metric="p@3")
    with pytest.raises(TuningError, match="no query"):
        tune(hybrid, queries, {}, metric="r@1")
    with pytest.raises(TuningError, match="depth"):
        tune(hybrid, queries, qrels, configs=[FusionConfig(depth=10), FusionConfig(depth=20)])


def _spec(location, fingerprint="sha256:" + "a" * 64):
    return SimpleNamespace(location=str(location), fingerprint=fingerprint)


def _choice(fingerprint="sha256:" + "a" * 64, weights=(0.05, 0.95), scoring=SCORING, dataset="dev"):
    return FusionChoice(encoder_fingerprint=fingerprint, scoring=dict(scoring),
                        fusion=FusionConfig(weights=weights).to_dict(), metric="mrr@10", value=0.7,
                        baseline_value=0.69, dataset=dataset, queries=500)


def test_choice_is_kept_in_the_model_folder_and_keyed_by_fingerprint_and_scoring(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    spec = _spec(model)
    path = save_choice(spec, _choice())
    assert path == model / "fusion.json"
    fusion, source = default_fusion(spec, SCORING)
    assert fusion.weights == (0.05, 0.95) and source["kind"] == "tuned" and source["dataset"] == "dev"
    assert find_choice(_spec(model, "sha256:" + "b" * 64), SCORING) is None       # another model's weights
    assert find_choice(spec, {"k1": 1.2, "b": 0.75}) is None                     # another BM25 scoring
    assert default_fusion(_spec(model, "sha256:" + "b" * 64), SCORING) == (FusionConfig(), {"kind": "built-in"})
    save_choice(spec, _choice(weights=(0.2, 0.8)))           # same key: replaced, not duplicated
    save_choice(spec, _choice(weights=(0.3, 0.7), scoring={"k1": 1.2, "b": 0.75}))
    assert len(read_choices(path)) == 2
    assert default_fusion(spec, SCORING)[0].weights == (0.2, 0.8)
    save_choice(_spec(model, "sha256:" + "c" * 64), _choice("sha256:" + "c" * 64))  # retrained in place
    assert [c.encoder_fingerprint for c in read_choices(path)] == ["sha256:" + "c" * 64]


def test_a_folder_vfr_must_not_write_keeps_its_choice_in_the_fusion_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("VFR_FUSION_DIR", str(tmp_path / "fusion"))
    managed = tmp_path / "site-packages" / "model"
    managed.mkdir(parents=True)
    path = save_choice(_spec(managed), _choice())
    assert path.parent == tmp_path / "fusion" and not (managed / "fusion.json").exists()
    assert default_fusion(_spec(managed), SCORING)[0].weights == (0.05, 0.95)


def test_a_damaged_fusion_file_is_one_clear_error(tmp_path):
    (tmp_path / "fusion.json").write_text("{not json")
    with pytest.raises(TuningError, match="fusion.json is damaged.*vfr tune"):
        default_fusion(_spec(tmp_path), SCORING)
    (tmp_path / "fusion.json").write_text(json.dumps({"format": 1, "choices": [{"fusion": {}}]}))
    with pytest.raises(TuningError, match="damaged"):
        read_choices(tmp_path / "fusion.json")


def test_fusion_file_is_not_part_of_the_model_fingerprint(tmp_path, monkeypatch):
    monkeypatch.setenv("VFR_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text('{"hidden": 4}')
    before = fingerprint_folder(model)
    save_choice(_spec(model, before), _choice(before))
    assert fingerprint_folder(model) == before
    (model / "tokenizer_config.json").write_text("{}")
    assert fingerprint_folder(model) != before


def _manifest(fingerprint: str, source: dict | None, weights=(0.05, 0.95), k1=0.9) -> dict:
    m = {"encoder": {"fingerprint": fingerprint}, "config": {"k1": k1, "b": 0.4},
         "fusion_default": FusionConfig(weights=weights).to_dict()}
    if source is not None:
        m["fusion_source"] = source
    return m


def test_manifest_default_is_used_only_for_its_own_encoder_and_scoring():
    fp = "sha256:" + "a" * 64
    tuned = {"kind": "tuned", "encoder_fingerprint": fp, "scoring": SCORING}
    assert manifest_fusion(_manifest(fp, tuned)).weights == (0.05, 0.95)
    assert manifest_fusion(_manifest("sha256:" + "b" * 64, tuned)) == FusionConfig()   # foreign choice
    assert manifest_fusion(_manifest(fp, tuned, k1=1.2)) == FusionConfig()             # other scoring
    assert manifest_fusion(_manifest(fp, None, weights=(0.3, 0.7))).weights == (0.3, 0.7)  # older manifests
    assert manifest_fusion({"encoder": {}}) == FusionConfig()


def test_pairs_become_a_dev_set_with_every_document_of_the_image_relevant():
    pairs = [Pair("a dog", "doc A1", "1"), Pair("a dog", "doc A2", "1"), Pair("a cat", "doc B", "2"),
             Pair("puppy", "doc A1", "1")]
    task = pairs_task(pairs)
    assert sorted(task.corpus.values()) == ["doc A1", "doc A2", "doc B"]
    by_text = {t: task.qrels[q] for q, t in task.queries.items()}
    docs = {t: d for d, t in task.corpus.items()}
    assert set(by_text["a dog"]) == {docs["doc A1"], docs["doc A2"]} == set(by_text["puppy"])
    assert set(by_text["a cat"]) == {docs["doc B"]}


def test_tuning_on_a_builtin_test_set_is_refused():
    with pytest.raises(TuneInputError, match="test set"):
        dev_task("coco-test")


def test_table_shows_the_choice_and_the_default_once_each():
    queries, qrels, hybrid = _collection(5, sparse_knows=False)
    for q in hybrid.dense:
        hybrid.dense[q] = {f"r{q[1:]}": 0.9, f"w{q[1:]}": 0.5, f"o{q[1:]}": 0.1}
    lines = table_lines(tune(hybrid, queries, qrels))
    assert sum("built-in default" in line for line in lines) == 1
    assert sum("chosen" in line for line in lines) == 1


def test_training_documents_join_the_corpus_as_distractors_only():
    held = [Pair("a dog", "doc A", "1")]
    train = [Pair("a cat", "doc B", "2"), Pair("a dog on grass", "doc C", "3")]
    task = pairs_task(held, distractors=train)
    assert sorted(task.corpus.values()) == ["doc A", "doc B", "doc C"]
    assert list(task.queries.values()) == ["a dog"]  # training captions never query
    assert [task.corpus[d] for d in task.qrels[next(iter(task.queries))]] == ["doc A"]


# -- the guard: the grid's best replaces the built-in default only if significantly better ---------------
def _one_sided(n: int, winners: int):
    """n queries, all answered by both sides, except that on the first `winners` dense is right by a hair and
    BM25 confidently wrong: the built-in fusion (0.1 BM25) misses those, dense alone gets them."""
    queries, qrels, hybrid = _collection(n, sparse_knows=True)
    for i in range(n):
        hybrid.dense[f"q{i}"] = {f"r{i}": 0.9, f"w{i}": 0.5, f"o{i}": 0.1}
    for i in range(winners):
        q = f"q{i}"
        hybrid.dense[q] = {f"r{i}": 0.80, f"w{i}": 0.79, f"o{i}": 0.10}
        hybrid.sparse[q] = {f"r{i}": 0.0, f"w{i}": 9.0, f"o{i}": 8.0}
    return queries, qrels, hybrid


DENSE_ALONE = FusionConfig(weights=(0.0, 1.0))


def test_selection_test_finds_a_consistent_gain_and_not_a_lone_one():
    from vfr.retrieve.tuning import selection_test

    assert selection_test(np.ones((1, 30))) < 0.001       # better on every one of 30 queries
    lone = np.zeros((1, 30))
    lone[0, 0] = 1.0
    assert selection_test(lone) > 0.4                      # better on one query: a coin flip
    assert selection_test(np.zeros((3, 30))) == 1.0        # no gain at all
    assert selection_test(-np.ones((2, 30))) == 1.0        # every setting worse
    assert selection_test(lone) == selection_test(lone)    # seeded: the same gains give the same p


def test_selection_test_accounts_for_picking_the_best_of_many():
    from vfr.retrieve.tuning import selection_test

    rng = np.random.default_rng(7)
    gains = rng.choice([-1.0, 0.0, 0.0, 1.0], size=(20, 60))  # 20 settings, no real difference from the baseline
    best = int(gains.sum(axis=1).argmax())
    alone = selection_test(gains[best:best + 1])
    whole = selection_test(gains)
    assert whole > alone       # the winner tested alone looks better than it is
    assert whole > 0.05        # over the whole grid, pure noise is not significant


def test_the_guard_keeps_the_builtin_default_when_the_gain_is_noise():
    queries, qrels, hybrid = _one_sided(20, winners=1)
    configs = [FusionConfig(), DENSE_ALONE]
    result = tune(hybrid, queries, qrels, metric="r@1", configs=configs)
    assert result.value(DENSE_ALONE)["r@1"] > result.value(FusionConfig())["r@1"]  # the grid's best on dev
    assert result.top == DENSE_ALONE and result.best == FusionConfig() and result.guarded
    assert result.p_value is not None and result.p_value >= DEFAULT_ALPHA
    choice = FusionChoice.from_result(result, "sha256:" + "a" * 64, SCORING, "dev")
    assert choice.config() == FusionConfig() and choice.grid_best == DENSE_ALONE.to_dict()
    assert choice.value == choice.baseline_value and choice.p_value == result.p_value
    lines = table_lines(result)
    assert sum("not significant" in line for line in lines) == 1
    assert sum("chosen (= built-in default)" in line for line in lines) == 1

    taken = tune(hybrid, queries, qrels, metric="r@1", configs=configs, alpha=1.0)  # no guard
    assert taken.best == DENSE_ALONE and not taken.guarded and taken.p_value is None


def test_the_guard_lets_a_significant_gain_through():
    queries, qrels, hybrid = _one_sided(20, winners=20)
    result = tune(hybrid, queries, qrels, metric="r@1", configs=[FusionConfig(), DENSE_ALONE])
    assert result.best == DENSE_ALONE and not result.guarded
    assert result.p_value is not None and result.p_value < 0.001
    assert any("(p = " in line and "chosen" in line for line in table_lines(result))


def test_the_guard_level_must_be_a_probability():
    queries, qrels, hybrid = _one_sided(5, winners=1)
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(TuningError, match="alpha"):
            tune(hybrid, queries, qrels, alpha=bad)


def test_a_guarded_choice_says_so_in_the_manifest_source(tmp_path):
    queries, qrels, hybrid = _one_sided(20, winners=1)
    fingerprint = "sha256:" + "b" * 64
    result = tune(hybrid, queries, qrels, metric="r@1", configs=[FusionConfig(), DENSE_ALONE])
    save_choice(_spec(tmp_path, fingerprint), FusionChoice.from_result(result, fingerprint, SCORING, "dev"))
    config, source = default_fusion(_spec(tmp_path, fingerprint), SCORING)
    assert config == FusionConfig() and source["kind"] == "tuned"
    assert source["grid_best"]["weights"] == [0.0, 1.0] and source["p_value"] >= DEFAULT_ALPHA
    assert source["alpha"] == DEFAULT_ALPHA


def test_a_choice_stored_before_the_guard_still_reads(tmp_path):
    old = _choice().model_dump()
    for key in ("p_value", "alpha", "grid_best"):
        old.pop(key)
    (tmp_path / "fusion.json").write_text(json.dumps({"format": 1, "choices": [old]}))
    (choice,) = read_choices(tmp_path / "fusion.json")
    assert choice.p_value is None and choice.alpha is None and choice.config() == FusionConfig(weights=(0.05, 0.95))


def test_results_pages_say_when_the_guard_kept_the_builtin_fusion():
    from vfr.eval.cache import manifest_summary
    from vfr.eval.results_page import _fusion_source

    tuned = {"kind": "tuned", "dataset": "coco-val", "p_value": 0.63, "grid_best": {"weights": [0.15, 0.85]}}
    m = {"config": {"k1": 0.9, "b": 0.4}, "encoder": {"fingerprint": "sha256:x"}, "fusion_source": tuned}
    kept = manifest_summary(m, FusionConfig())
    assert kept["fusion_guard_kept_builtin"] and kept["fusion_guard_p"] == 0.63
    assert "kept by `vfr tune`'s guard on coco-val" in _fusion_source(kept) and "p = 0.63" in _fusion_source(kept)
    passed = manifest_summary({**m, "fusion_source": {"kind": "tuned", "dataset": "dev", "p_value": 0.01}})
    assert not passed["fusion_guard_kept_builtin"]
    assert _fusion_source(passed).startswith("tuned for this encoder on dev")
    assert _fusion_source(manifest_summary({"config": {}})) == "the built-in default"


def test_the_cli_defaults_are_the_library_guard_level():
    import inspect

    from vfr import cmd_calibrate, cmd_tune

    assert inspect.signature(cmd_tune.tune_cmd).parameters["alpha"].default == DEFAULT_ALPHA
    assert inspect.signature(cmd_calibrate.calibrate_cmd).parameters["tune_alpha"].default == DEFAULT_ALPHA
