"""The logic of the estimate scripts in benchmarks/: the translation table (IBM Model 1) and query expansion of
sparse_expansion_estimate.py, and the reranked ordering of rerank_estimate.py."""
import importlib.util
from collections import Counter
from pathlib import Path


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[2] / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


est = _script("sparse_expansion_estimate")
rr = _script("rerank_estimate")


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
