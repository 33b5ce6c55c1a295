"""The translation table of benchmarks/sparse_expansion_estimate.py (IBM Model 1) and its query expansion."""
import importlib.util
from collections import Counter
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "sparse_expansion_estimate", Path(__file__).parents[2] / "benchmarks" / "sparse_expansion_estimate.py")
est = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(est)


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
