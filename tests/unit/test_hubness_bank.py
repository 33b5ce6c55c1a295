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
