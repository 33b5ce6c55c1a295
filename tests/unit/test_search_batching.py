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



class PrefixBackend(FakeBackend):
    """Ranks k hits per query, each a prefix of one ranking while k ≤ 50 (as the hybrid up to its depth)."""

    def __init__(self, name: str, delay: float = 0.02, share: bool = True) -> None:
        super().__init__(name, delay)
        self.calls: list[tuple[int, list[str]]] = []  # (k searched, queries) per batch_search
        if share:
            self.batch_k = lambda k: 50 if k <= 50 else k

    def _hits(self, q: Query, k: int, scope) -> list[Hit]:
        return [Hit(id=f"{q.text}:{i}", score=1.0 / (i + 1), rank=i + 1) for i in range(k)]

    def batch_search(self, qs, k: int, scope=None) -> list[list[Hit]]:
        self.calls.append((k, [q.text for q in qs]))
        return super().batch_search(qs, k, scope)


def _paging(backend: PrefixBackend) -> dict[str, int]:
    """40 concurrent searches at k 3, 10, 20, 50 and 80 (a paging client asks k + offset); each caller must
    get its own k hits. Returns each query's k."""
    batcher = SearchBatcher(lambda key: backend, QueryBatching(max_batch=64))
    jobs = {f"q{i}": [3, 10, 20, 50, 80][i % 5] for i in range(40)}
    with ThreadPoolExecutor(16) as pool:
        out = dict(zip(jobs, pool.map(lambda q: batcher.search("hybrid", Query(q), jobs[q], None), jobs)))
    for text, k in jobs.items():
        assert [h.id for h in out[text]] == [f"{text}:{i}" for i in range(k)]  # its own k, no more
        assert [h.rank for h in out[text]] == list(range(1, k + 1))
    assert len(backend.singles) + sum(len(qs) for _, qs in backend.calls) == len(jobs)  # each searched once
    return jobs


def test_searches_whose_k_share_a_ranking_share_a_batch_and_each_gets_its_own_k():
    backend = PrefixBackend("hybrid", delay=0.05)
    wanted = _paging(backend)
    for k, qs in backend.calls:  # searched at the largest k of the batch; 80 never beside a k ≤ 50
        assert k == max(wanted[q] for q in qs)
        assert len({wanted[q] > 50 for q in qs}) == 1
    assert any(len({wanted[q] for q in qs}) > 1 for _, qs in backend.calls)  # different k did share a batch


def test_backends_without_batch_k_batch_equal_k_only():
    backend = PrefixBackend("bm25", delay=0.05, share=False)
    wanted = _paging(backend)
    assert backend.calls and all({wanted[q] for q in qs} == {k} for k, qs in backend.calls)
