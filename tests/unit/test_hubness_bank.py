"""Query-bank pieces without a model: offsets, bank files (cleaning, fingerprint, vector cache), and the eval
guard that keeps scored texts out of a bank."""
from types import SimpleNamespace

import numpy as np
import pytest

from vfr.eval import benchmarks, tasks as tk
from vfr.retrieve import hubness


class FakeEncoder:
    def __init__(self, key="m1"):
        self.spec = SimpleNamespace(cache_key=key)
        self.calls = 0

    def encode(self, texts):
        self.calls += 1
        rng = np.random.default_rng(len(texts))
        v = rng.normal(size=(len(texts), 8)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_offsets_are_the_mean_of_the_k_best_bank_cosines(monkeypatch):
    rng = np.random.default_rng(0)
    bank, docs = rng.normal(size=(50, 8)).astype(np.float32), rng.normal(size=(9, 8)).astype(np.float32)
    monkeypatch.setattr(hubness, "CHUNK", 4)  # several chunks
    got = hubness.offsets(bank, docs, 5)
    want = [np.sort(bank @ d)[-5:].mean() for d in docs]
    assert got.tolist() == pytest.approx(want, rel=1e-5)
    assert hubness.offsets(bank[:3], docs, 10).tolist() == pytest.approx([(bank[:3] @ d).mean() for d in docs],
                                                                         rel=1e-5)  # k capped by the bank


def test_bank_is_cleaned_fingerprinted_and_its_vectors_cached_per_encoder(tmp_path):
    sha = hubness.stage_bank(tmp_path, ["  a  dog ", "", "a dog", "a cat"])
    assert sha == hubness.bank_sha(["a dog", "a cat"])
    enc = FakeEncoder()
    first = hubness.bank_vectors(tmp_path, enc, sha)
    assert first.shape == (2, 8) and enc.calls == 1
    assert np.array_equal(hubness.bank_vectors(tmp_path, enc, sha), first) and enc.calls == 1  # cached
    other = FakeEncoder("m2")
    hubness.bank_vectors(tmp_path, other, sha)
    assert other.calls == 1  # another encoder encodes again
    with pytest.raises(hubness.BankError, match="--query-bank"):
        hubness.bank_vectors(tmp_path, enc, hubness.bank_sha(["something else"]))
    txt = next((tmp_path / hubness.BANKS).glob("*.txt"))
    txt.write_text("a dog\nchanged\n", encoding="utf-8")
    with pytest.raises(hubness.BankError, match="not the query bank"):
        hubness.bank_vectors(tmp_path, enc, sha)
    with pytest.raises(hubness.BankError, match="empty"):
        hubness.stage_bank(tmp_path, ["", "   "])


def test_eval_bank_leaves_out_every_scored_text():
    task = tk.RetrievalTask("t", "t", {"1": "d1"}, {"q1": "A man  riding a wave.", "q2": "a dog"},
                            {"q1": {"1": 1}, "q2": {"1": 1}})
    check = tk.Check("a cat on a mat", "pos", "neg")
    comp = tk.CompositionalTask("c", "c", [tk.Trial("i", "add_obj", (check,))], {"add_obj": 1})
    bank = ["A man riding a wave.", "a bird", "a cat on a mat", "neg", "a tree"]
    assert benchmarks.without_scored([task, comp], bank) == ["a bird", "a tree"]
    with pytest.raises(benchmarks.ds.BenchmarkError, match="choose another bank"):
        benchmarks.without_scored([task], ["a dog"], "the query bank b.txt")


def _segments(tmp_path, sizes, rng):
    from vfr.retrieve.dense import DenseSegment, write_dense

    segments, views, vectors = [], [], []
    for i, n in enumerate(sizes):
        v = rng.normal(size=(n, 16)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        folder = tmp_path / f"s{i}"
        folder.mkdir()
        write_dense(folder, v, "flat")
        views.append(DenseSegment(folder, "flat"))
        h = rng.uniform(0.5, 0.8, size=n).astype(np.float32)
        h[0] = 0.0  # one low offset: the bound (smallest h) is loose and lists must grow
        segments.append(SimpleNamespace(hubness=h, hubness_least=float(h.min())))
        vectors.append(v)
    return SimpleNamespace(segments=segments, dense=views), vectors


def test_search_equals_brute_force_and_grows_its_lists_when_the_bound_says_so(tmp_path, monkeypatch):
    """Offsets of 0.5–0.8 and one of 0 (λ = 2): the first lists cannot prove the top k and must grow."""
    from vfr.retrieve.dense import merge_topk

    rng = np.random.default_rng(3)
    snap, vectors = _segments(tmp_path, [900, 700, 5], rng)
    queries = rng.normal(size=(12, 16)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    rounds = []
    monkeypatch.setattr(hubness, "merge_topk", lambda parts, k: rounds.append(k) or merge_topk(parts, k))
    for k in (1, 10, 40):
        rounds.clear()
        scores, segs, rows = hubness.search(snap, queries, k, [None] * 3, 2.0)
        assert len(rounds) > 1  # some query needed a wider list
        for q in range(len(queries)):
            brute = sorted(((float(v @ queries[q]) - 2 * float(seg.hubness[r]), s, r)
                            for s, (seg, vs) in enumerate(zip(snap.segments, vectors)) for r, v in enumerate(vs)),
                           reverse=True)[:k]
            assert [(int(s), int(r)) for s, r in zip(segs[q], rows[q])] == [(s, r) for _, s, r in brute]
            assert scores[q].tolist() == pytest.approx([v for v, _, _ in brute], abs=1e-5)
    scores, segs, rows = hubness.search(SimpleNamespace(segments=[], dense=[]), queries, 3, [], 0.5)
    assert (rows == -1).all() and np.isneginf(scores).all()  # no segments: nothing found
