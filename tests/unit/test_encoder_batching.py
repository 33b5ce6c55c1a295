"""Dynamic micro-batching of query encoding: concurrent callers share model calls and each gets its own
rows back; a lone caller is encoded at once; errors reach every waiting caller."""
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from vfr.retrieve.encoder_batching import BatchingEncoder, QueryBatching, batching


class SlowEncoder:
    """Encodes a text as [len(text), index-in-call]; each call takes a while, as a model call does."""

    spec = "fake-spec"
    dimension = 2

    def __init__(self, delay: float = 0.05, fail_on: str | None = None) -> None:
        self.delay, self.fail_on = delay, fail_on
        self.batches: list[int] = []
        self.gate = threading.Event()

    def encode(self, texts):
        self.batches.append(len(texts))
        if self.fail_on in texts:
            raise ValueError("bad text")
        self.gate.wait(self.delay)
        return np.array([[len(t), i] for i, t in enumerate(texts)], dtype=np.float32)


def test_concurrent_calls_share_model_calls_and_get_their_own_rows():
    inner = SlowEncoder()
    enc = BatchingEncoder(inner, QueryBatching(max_batch=64))
    texts = [["x" * (i + 1)] if i % 3 else ["x" * (i + 1), "y" * (i + 2)] for i in range(32)]
    with ThreadPoolExecutor(16) as pool:
        out = list(pool.map(enc.encode, texts))
    for got, want in zip(out, texts):
        assert got.shape == (len(want), 2)
        assert got[:, 0].tolist() == [len(t) for t in want]  # each caller gets the rows of its own texts
    assert sum(inner.batches) == sum(len(t) for t in texts)
    assert len(inner.batches) < len(texts)  # batched: fewer model calls than callers
    assert enc.requests == len(texts) and enc.calls == len(inner.batches)
    assert enc.spec == "fake-spec" and enc.dimension == 2  # the wrapped encoder's attributes show through
    enc.close()


def test_a_batch_never_exceeds_max_batch_texts_unless_one_call_does():
    inner = SlowEncoder(delay=0.02)
    enc = BatchingEncoder(inner, QueryBatching(max_batch=4))
    with ThreadPoolExecutor(12) as pool:
        list(pool.map(enc.encode, [["a"]] * 24))
    assert max(inner.batches) <= 4
    enc.close()


def test_a_lone_caller_is_encoded_at_once_and_errors_reach_the_caller():
    inner = SlowEncoder(delay=0.0, fail_on="boom")
    enc = BatchingEncoder(inner, QueryBatching())
    assert enc.encode(["one"]).tolist() == [[3.0, 0.0]]
    with pytest.raises(ValueError, match="bad text"):
        enc.encode(["boom"])
    assert enc.encode(["two words"]).tolist() == [[9.0, 0.0]]  # the worker survives an error
    enc.close()
    assert enc.encode(["after"]).tolist() == [[5.0, 0.0]]  # after close: encoded directly


def test_one_wrapper_per_encoder_and_config():
    inner = SlowEncoder()
    assert batching(inner, QueryBatching()) is batching(inner, QueryBatching())
    assert batching(inner, QueryBatching(max_batch=8)) is not batching(inner, QueryBatching())
