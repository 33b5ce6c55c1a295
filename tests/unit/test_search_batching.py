"""Micro-batching of whole searches: concurrent callers share batch searches and each gets its own hits;
a lone caller runs the single-query path on its own thread; errors reach only the callers they concern."""
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from vfr.retrieve.encoder_batching import QueryBatching
from vfr.retrieve.search_batching import SearchBatcher
from vfr.retrieve.types import Hit, Query, Scope


class FakeBackend:
    """Answers a query with one hit named after it; each call takes a while, as a real search does."""

    def __init__(self, name: str, delay: float = 0.02) -> None:
        self.name, self.delay = name, delay
        self.singles: list[str] = []
        self.batches: list[int] = []
        self.threads: set[str] = set()
        self.gate = threading.Event()

    def _hits(self, q: Query, k: int, scope) -> list[Hit]:
        if q.text == "boom":
            raise ValueError("bad query")
        where = ",".join(sorted(scope.collections)) if scope is not None else "*"
        return [Hit(id=f"{self.name}:{q.text}:{k}:{where}", score=1.0, rank=1)]

    def search(self, q: Query, k: int, scope=None) -> list[Hit]:
        self.singles.append(q.text)
        self.threads.add(threading.current_thread().name)
        self.gate.wait(self.delay)
        return self._hits(q, k, scope)

    def batch_search(self, qs, k: int, scope=None) -> list[list[Hit]]:
        self.batches.append(len(qs))
        self.gate.wait(self.delay)
        return [self._hits(q, k, scope) for q in qs]


def test_concurrent_searches_share_batches_and_get_their_own_hits():
    backends = {"hybrid": FakeBackend("hybrid"), "bm25": FakeBackend("bm25")}
    batcher = SearchBatcher(lambda key: backends[key], QueryBatching(max_batch=64))
    jobs = [("hybrid" if i % 3 else "bm25", f"q{i}", 5 if i % 2 else 10, Scope.of("a") if i % 5 == 0 else None)
            for i in range(60)]
    with ThreadPoolExecutor(16) as pool:
        out = list(pool.map(lambda j: batcher.search(j[0], Query(j[1]), j[2], j[3]), jobs))
    for (key, text, k, scope), hits in zip(jobs, out):  # each caller: its own query, k, scope and retriever
        assert [h.id for h in hits] == [f"{key}:{text}:{k}:{'a' if scope else '*'}"]
    searched = sum(len(b.singles) + sum(b.batches) for b in backends.values())
    assert searched == len(jobs)  # every search ran exactly once
    assert any(n > 1 for b in backends.values() for n in b.batches)  # and some ran together
    assert batcher.requests == len(jobs) and batcher.calls < len(jobs)


def test_a_lone_search_runs_at_once_on_the_callers_thread():
    backend = FakeBackend("hybrid", delay=0.0)
    batcher = SearchBatcher(lambda key: backend)
    assert batcher.search("hybrid", Query("dog"), 3, None)[0].id == "hybrid:dog:3:*"
    assert backend.singles == ["dog"] and backend.batches == []
    assert backend.threads == {threading.current_thread().name}


def test_errors_reach_their_callers_and_the_batcher_keeps_working():
    backend = FakeBackend("hybrid", delay=0.01)
    batcher = SearchBatcher(lambda key: backend if key == "hybrid" else (_ for _ in ()).throw(KeyError(key)))
    with pytest.raises(ValueError, match="bad query"):
        batcher.search("hybrid", Query("boom"), 3, None)
    with pytest.raises(KeyError):
        batcher.search("nope", Query("dog"), 3, None)
    with ThreadPoolExecutor(8) as pool:
        futs = [pool.submit(batcher.search, "hybrid", Query("boom" if i == 4 else f"q{i}"), 3, None) for i in range(16)]
    errors = [f.exception() for f in futs]
    assert isinstance(errors[4], ValueError)
    assert all(e is None for i, e in enumerate(errors) if i != 4)  # a failing query fails no other in its batch
    assert [f.result()[0].id for i, f in enumerate(futs) if i != 4] == [f"hybrid:q{i}:3:*" for i in range(16) if i != 4]
    assert batcher.search("hybrid", Query("after"), 3, None)[0].id == "hybrid:after:3:*"  # not stuck
