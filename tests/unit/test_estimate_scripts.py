"""The logic of the estimate scripts in benchmarks/: the translation table (IBM Model 1) and query expansion of
sparse_expansion_estimate.py, the reranked ordering of rerank_estimate.py, the feedback of prf_estimate.py, and the
normalisation and per-query weight of adaptive_fusion_estimate.py, the mix and its choice in output_ensemble_estimate.py,
the caption-bank neighbours, expansion and smoothing of bank_expansion_estimate.py, the linear ranker of
ltr_estimate.py, clean_val.py's validation task without the images a model trained on, the caption fields of
fields_joined_estimate.py, the pseudo-queries of pseudo_pairs.py, the centring and whitening of
whitening_estimate.py, the query templates and lead-in cut of style_estimate.py and the negative pool of
negative_pool.py."""
import importlib.util
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import scipy.sparse as sp

BENCHMARKS = Path(__file__).parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # prf_estimate imports sparse_expansion_estimate, as when run as a script


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


est = _script("sparse_expansion_estimate")
rr = _script("rerank_estimate")
prf = _script("prf_estimate")
ada = _script("adaptive_fusion_estimate")
ens = _script("output_ensemble_estimate")
bank = _script("bank_expansion_estimate")
ltr = _script("ltr_estimate")
clean = sys.modules["clean_val"]  # imported by ltr_estimate
fj = _script("fields_joined_estimate")
pseudo = _script("pseudo_pairs")


def _pairs():
    # "man" always comes with "person" in the description; "image" is in every description (generic)
    return [(Counter(q.split()), Counter(d.split())) for q, d in [
        ("man dog", "person dog image"), ("man horse", "person horse image"),
        ("woman dog", "lady dog image"), ("woman cat", "lady cat image"), ("man cat", "person cat image")]]


def test_model1_learns_cooccurring_translations_and_null_takes_generic_terms():
    t = est.model1(_pairs(), iterations=10)
    assert max(t["man"], key=t["man"].get) == "person"
    assert max(t["woman"], key=t["woman"].get) == "lady"
    assert t[est.NULL]["image"] > t[est.NULL]["person"]
    for row in t.values():
        assert abs(sum(row.values()) - 1) < 1e-9


def test_expand_adds_top_translations_below_the_query_terms():
    t = est.model1(_pairs(), iterations=10)
    q = Counter({"man": 1})
    out = est.expand(q, t, k=1, beta=0.3)
    assert out["man"] == 1 and out["person"] == 0.3 and len(out) == 2
    assert est.expand(q, t, k=0, beta=0.3) == q
    assert est.expand(Counter(), t, k=5, beta=0.3) == Counter()


def _order(run: dict) -> list[str]:
    return [d for d, _ in sorted(run.items(), key=lambda kv: -kv[1])]


def test_rerank_reorders_only_the_top_k_and_keeps_the_rest_below():
    run = {"q": {"a": 5.0, "b": 4.0, "c": 3.0, "d": 2.0}}
    ce = {"q": {"a": 0.0, "b": 1.0, "c": 9.0, "d": 99.0}}
    alone = rr.rerank(run, ce, k=3, w=float("inf"))
    assert _order(alone["q"]) == ["c", "b", "a", "d"]  # d is outside the top 3: its reranker score is unused
    mixed = rr.rerank(run, {"q": {"a": 1.0, "b": 2.0, "c": 0.0, "d": 0.0}}, k=3, w=0.25)
    assert _order(mixed["q"]) == ["a", "b", "c", "d"]  # a small weight keeps the hybrid's order
    assert _order(rr.rerank(run, {"q": {"a": 1.0, "b": 2.0, "c": 0.0, "d": 0.0}}, k=3, w=4.0)["q"])[:2] == ["b", "a"]


def test_held_out_fifth_is_stable_and_about_a_fifth():
    ids = [str(i) for i in range(2000)]
    share = sum(map(rr.held_out, ids)) / len(ids)
    assert 0.15 < share < 0.25 and [rr.held_out(i) for i in ids] == [rr.held_out(i) for i in ids]


def test_rocchio_moves_the_query_towards_its_feedback_documents():
    docs = np.eye(3, dtype=np.float32)  # three orthogonal unit documents
    query = np.array([[0.8, 0.6, 0.0]], dtype=np.float32)
    assert np.allclose(prf.rocchio(query, docs, np.array([[2]]), 0.0), query @ docs.T)
    moved = prf.rocchio(query, docs, np.array([[1, 2]]), 1.0)[0]
    assert moved[1] > moved[0] > moved[2] > 0  # doc 1 overtakes doc 0; doc 2 enters from 0
    assert abs(float(np.linalg.norm(moved)) - 1) < 1e-5  # the moved query is renormalised


def test_term_model_is_the_feedback_documents_mean_term_distribution():
    vocab = ["dog", "cat", "park", "image"]
    tf = sp.csr_matrix(np.array([[2, 0, 1, 1], [0, 3, 0, 1], [1, 0, 0, 3]], dtype=np.int32))
    model = prf.term_model(tf, [0, 2], vocab, m=2)
    # mean relative frequency: dog (2/4 + 1/4)/2, image (1/4 + 3/4)/2, park 1/8; cat not in the feedback
    assert list(model) == ["image", "dog"] and abs(sum(model.values()) - 1) < 1e-9
    assert abs(model["image"] / model["dog"] - 0.5 / 0.375) < 1e-9


def test_rm3_mixes_the_query_with_the_feedback_model():
    q, model = Counter({"dog": 2, "park": 2}), Counter({"dog": 0.6, "grass": 0.4})
    assert prf.rm3(q, model, 1.0) == Counter({"dog": 0.5, "park": 0.5})
    mixed = prf.rm3(q, model, 0.5)
    assert mixed == Counter({"dog": 0.55, "park": 0.25, "grass": 0.2})
    assert prf.rm3(Counter(), model, 0.5) == Counter()


def test_adaptive_z_scores_are_the_engines_over_each_querys_candidates():
    from vfr.retrieve.fusion import normalise

    rng = np.random.default_rng(0)
    scores = rng.normal(size=(3, 6))
    scores[2] = 4.0  # a constant row: the engine maps it to 0
    mask = rng.random((3, 6)) < 0.7
    mask[:, 0] = mask[:, 1] = True
    z = ada._z(scores, mask)
    for i in range(3):
        want = normalise({j: float(scores[i, j]) for j in np.flatnonzero(mask[i])}, "zscore")
        assert np.allclose([z[i, j] for j in want], list(want.values()))
        assert not z[i, ~mask[i]].any()
    assert not z[2].any()


def test_adaptive_weight_follows_the_feature_that_says_which_side_is_right():
    # 200 queries, 3 candidates, candidate 0 relevant. Where the feature is 1 only BM25 ranks it first, where it
    # is 0 only dense does: one weight for all can serve only one half, a weight per query serves both.
    n = 200
    lexical = np.arange(n) % 2 == 1
    zs = np.where(lexical[:, None], [[2.0, 0.0, -2.0]], [[-2.0, 0.0, 2.0]])
    zd = np.where(lexical[:, None], [[-1.0, 1.0, 0.0]], [[1.0, -1.0, 0.0]])
    rel = np.zeros((n, 3), dtype=bool)
    rel[:, 0] = True
    lists = ada.Lists(None, zs, zd, np.ones((n, 3), dtype=bool), lexical[:, None].astype(float), rel)
    rows = np.arange(n)
    w = ada.Weighting(True, l2=1e-3).fit(lists, rows).weights(lists)
    assert w[lexical].min() > 0.5 > w[~lexical].max()
    fused = w[:, None] * zs + (1 - w[:, None]) * zd
    assert (fused.argmax(axis=1) == 0).mean() == 1.0
    single = ada.Weighting(False).fit(lists, rows)
    assert not single.theta.any() and np.ptp(single.weights(lists)) == 0


def test_output_ensemble_mixes_cosines_and_alpha_one_is_the_calibrated_encoder_alone():
    calibrated = np.array([[0.9, 0.1], [0.2, 0.8]], dtype=np.float32)
    packaged = np.array([[0.1, 0.7], [0.6, 0.0]], dtype=np.float32)
    assert np.array_equal(ens.mix(calibrated, packaged, 1.0), calibrated)
    assert np.array_equal(ens.mix(calibrated, packaged, 0.0), packaged)
    assert np.allclose(ens.mix(calibrated, packaged, 0.25), 0.25 * calibrated + 0.75 * packaged)
    assert ens.mix(calibrated, packaged, 0.5).dtype == np.float32


def test_output_ensemble_chooses_the_best_mix_below_one_and_the_larger_alpha_on_a_tie():
    def hybrid(r1):  # (dense, BM25, hybrid) R@1/5/10 as Bench.recall returns them; only hybrid R@1 counts
        return [[0.0] * 3, [0.0] * 3, [r1, 0.0, 0.0]]
    results = {0.0: hybrid(50.0), 0.4: hybrid(55.0), 0.6: hybrid(55.0), 0.8: hybrid(54.0), 1.0: hybrid(60.0)}
    assert ens.choose(results) == 0.6
    results[0.2] = hybrid(56.0)
    assert ens.choose(results) == 0.2


def test_bank_neighbours_skip_unusable_entries_and_expand_or_smooth_each_document():
    docs = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    entries = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]], dtype=np.float32)
    near = bank.nearest(docs, entries, np.array([True, True, True, True]), 2)
    assert near.tolist() == [[0, 1], [2, 3]]
    near = bank.nearest(docs, entries, np.array([False, True, True, True]), 2)  # entry 0 is a scored query
    assert near.tolist() == [[1, 3], [2, 3]]
    terms = bank.expanded([["cat"], ["dog"]], [["a"], ["b"], ["c"], ["d"]], near, 1)
    assert terms == [["cat", "b"], ["dog", "c"]]
    assert bank.expanded([["cat"]], [["a"]], near[:1], 0) == [["cat"]]
    queries = np.array([[0.0, 1.0]], dtype=np.float32)
    dense = queries @ docs.T
    assert np.allclose(bank.smoothed(dense, queries, entries, near, 1, 0.0), dense)
    # document 0 (orthogonal to the query) gains γ · cos(q, its neighbour 1) = 0.5 · 0.6
    assert np.allclose(bank.smoothed(dense, queries, entries, near, 1, 0.5), [[0.3, 1.5]])


def test_linear_ranker_learns_the_feature_that_finds_the_relevant_document_where_the_built_in_fusion_misses_it():
    # 100 queries, 4 candidates (the last outside the mask), candidate 2 relevant: BM25 and dense put candidate 0
    # first, only the third feature (say, the best sentence's cosine) puts candidate 2 first
    n, features = 100, len(ltr.FEATURES)
    x = np.zeros((n, 4, features))
    x[:, :, 0] = x[:, :, 1] = [1.0, 0.5, 0.0, 0.0]
    x[:, :, 3] = [0.0, 0.0, 2.0, 0.0]
    mask = np.ones((n, 4), dtype=bool)
    mask[:, 3] = False
    rel = np.zeros((n, 4), dtype=bool)
    rel[:, 2] = True
    c = SimpleNamespace(x=x, lists=SimpleNamespace(mask=mask, relevant=rel))
    untrained = ltr.Linear()
    untrained.theta = np.r_[5 * ltr.BUILT_IN, 5 * (1 - ltr.BUILT_IN), np.zeros(features - 2)]
    assert (untrained.scores(c).argmax(axis=1) == 0).all()
    model = ltr.Linear(l2=1e-3).fit(c, np.arange(n))
    assert model.theta[3] > 0
    scores = model.scores(c)
    assert (scores.argmax(axis=1) == 2).all()
    assert not scores[:, 3].any()  # outside the mask: no score


def test_clean_validation_drops_trained_images_as_queries_and_as_documents(monkeypatch):
    from vfr.eval.tasks import RetrievalTask

    # source `each`: two documents stand for image a; b and c one each; queries a#0, b#0 (about a and b), c#0
    task = RetrievalTask("t2i", "toy", {"a|m1": "x", "a|m2": "y", "b|m1": "z", "c|m1": "w"},
                         {"a#0": "q", "b#0": "r", "c#0": "s"}, {"a#0": {"a": 1}, "b#0": {"b": 1}, "c#0": {"c": 1}},
                         doc_target={"a|m1": "a", "a|m2": "a", "b|m1": "b", "c|m1": "c"})
    monkeypatch.setattr(clean, "bench_task", lambda name: task)
    kept = clean.without_trained_images("toy", frozenset({"a", "b"}))
    assert set(kept.corpus) == {"c|m1"} and set(kept.queries) == {"c#0"} and set(kept.qrels) == {"c#0"}
    assert kept.doc_target == {"c|m1": "c"}
    whole = clean.without_trained_images("toy", frozenset())
    assert whole.corpus == task.corpus and whole.queries == task.queries


def test_joined_caption_fields_take_each_describers_lead_or_the_first_describers_only():
    views = ["A red kite. It flies high.", "Two boys on a beach! The sea is calm."]
    assert fj.caption_field("views", views) == "A red kite. ; Two boys on a beach!"
    assert fj.caption_field("lead2", views) == "A red kite. It flies high. ; Two boys on a beach! The sea is calm."
    assert fj.caption_field("naive", views) == "A red kite."


def _mini_shared_data(tmp_path) -> str:
    """A few lines of each shared-data file the pseudo-pair and pool scripts read: images 1-2 in the COCO joins,
    3-4 in SugarCrepe(++), 1-5 described by two HALC models, 5 and 6 by OPERA. Returns image 5's longest
    description."""
    import json
    (tmp_path / "joined").mkdir()
    for split, cid in (("val", 1), ("test", 2)):
        (tmp_path / "joined" / f"coco_karpathy_{split}_x_vlm_descriptions.jsonl").write_text(json.dumps(
            {"image_name": f"COCO_val2014_{cid:012d}.jpg", "coco_id": cid, "captions": ["a caption"],
             "descriptions": {"halc/llava-1.5(64tok)": "a description"}}) + "\n")
    for folder in ("sugarcrepe", "sugarcrepe_pp"):
        (tmp_path / folder).mkdir()
    item = {"caption": "a cat on a mat", "caption2": "a mat under a cat", "negative_caption": "a mat on a cat"}
    (tmp_path / "sugarcrepe" / "add_obj.json").write_text(json.dumps({"0": {"filename": "000000000003.jpg",
                                                                              **item}}))
    (tmp_path / "sugarcrepe_pp" / "add_obj.json").write_text(json.dumps([{"id": 0, "filename": "000000000004.jpg",
                                                                          **item}]))
    long_a = "The image shows a man riding a wave on a surfboard. The water is blue and the sky is clear."
    rows = {"halc": [{"image_id": i, "descriptions": {"llava-1.5": long_a, "minigpt4": "The image depicts a surfer "
                                                                                    "on a big wave."}}
                     for i in (1, 2, 3, 4, 5)],
            "opera": [{"image_id": 5, "descriptions": {"llava-1.5": "A surfer rides a large wave at sea today."}},
                      {"image_id": 6, "descriptions": {"shikra": "A lone tree stands in a wide field."}}]}
    for name, recs in rows.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}_chair_coco_val2014_descriptions.jsonl").write_text(
            "\n".join(json.dumps(r) for r in recs))
    return long_a


def test_pseudo_queries_read_like_captions_and_pair_with_another_models_description(tmp_path, monkeypatch):
    assert pseudo.pseudo_query("The image features an old motorcycle parked on a street. It is black.") == \
        "An old motorcycle parked on a street."
    assert pseudo.pseudo_query("In this picture, a dog sleeps on a sofa.") == "A dog sleeps on a sofa."
    assert pseudo.pseudo_query("The image shows a cat.") == ""  # too little left to be a query
    long_a = _mini_shared_data(tmp_path)
    got, stats = pseudo.pairs(tmp_path, "p:")
    # images 1-4 are validation, test or SugarCrepe images; 6 has one describer; 5's document is the longest
    # (llava's) and its queries come from the other models only, each once
    assert stats == {"images": 1, "held_out": 4, "one_model": 1}
    assert got == [{"query": "A surfer on a big wave.", "document": long_a, "group": "p:5"}]


def test_centring_and_whitening_map_both_sides_and_full_whitening_decorrelates():
    wh = _script("whitening_estimate")
    rng = np.random.default_rng(0)
    docs = wh.unit(rng.normal(size=(40, 6)) + np.array([3.0, 0, 0, 0, 0, 0]))   # a narrow cone along axis 0
    queries, bank = wh.unit(rng.normal(size=(5, 6))), wh.unit(rng.normal(size=(30, 6)) + 1.0)
    centred = wh.mapped(queries, docs, bank, "center-docs", 0, 0.0)
    assert np.allclose(centred, queries @ wh.unit(docs - docs.mean(axis=0)).T, atol=1e-6)
    both = wh.mapped(queries, docs, bank, "center-both", 0, 0.0)
    assert np.allclose(both, wh.unit(queries - bank.mean(axis=0)) @ wh.unit(docs - docs.mean(axis=0)).T, atol=1e-6)
    # full whitening over documents and bank together: their mapped vectors (before normalising) have identity
    # covariance, so k = 6 of 6 components changes every cosine, and k = 2 keeps a rank-2 map
    full = wh.mapped(queries, docs, bank, "whiten", 6, 1.0)
    assert full.shape == (5, 40) and np.all(np.abs(full) <= 1 + 1e-5) and not np.allclose(full, queries @ docs.T)
    low = wh.mapped(queries, docs, bank, "whiten", 2, 1.0)
    assert np.linalg.matrix_rank(low, tol=1e-4) <= 2
    assert wh.label("whiten", 128, 0.5) == "whiten k=128 β=0.5" and wh.label("center-docs", 0, 0.0) == "center-docs"


def test_style_rewrites_template_the_query_and_cut_the_lead_in():
    st = _script("style_estimate")
    assert st.templated("A man riding a wave.", "The image shows {}") == "The image shows a man riding a wave."
    assert st.templated("TV on a stand", "A photo of {}") == "A photo of TV on a stand."   # an acronym keeps its case
    assert st.cut_lead_in("The image features a young child in a high chair.") == "A young child in a high chair."
    assert st.cut_lead_in("In this picture, two dogs play.") == "Two dogs play."
    assert st.cut_lead_in("Two dogs play.") == "Two dogs play."
    assert st.cut_lead_in("The image shows") == ""   # the style rewrite then keeps the document as it was


def test_negative_pool_is_each_unqueried_images_longest_description_on_one_line(tmp_path):
    pool = _script("negative_pool")
    long_a = _mini_shared_data(tmp_path)
    assert pool.pool(tmp_path, set()) == [long_a, "A lone tree stands in a wide field."]   # 1-4 are queried
    assert pool.pool(tmp_path, {"6"}) == [long_a]
