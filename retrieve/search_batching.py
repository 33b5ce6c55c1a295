"""Dynamic micro-batching of whole searches: concurrent single-query searches become one `batch_search`.

Encoding concurrent queries together (retrieve/encoder_batching.py) saves model calls, but each search
still scores and fuses on its own, and on a small machine the Python parts of many searches at once take
turns on one interpreter lock. A server answering many clients gains most from running their searches as
one batch: the live hybrid's batch path is array operations from start to end (retrieve/live_hybrid.py).

Searches with the same retriever, fusion and scope that are waiting when the worker is free go in one
`batch_search`, if their k can share it: a backend with `batch_k(k)` says which k give prefixes of one ranking
(the hybrid: every k up to its fusion depth, so page 1 and page 3 of a paging client batch together, searched
at the largest k and cut); other backends batch equal k only. A lone search runs the single-query path at once
(no wait unless `max_wait_ms` > 0). Results equal those of the unbatched calls (the batch path equals
per-query search).
"""
from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable

from vfr.retrieve.encoder_batching import QueryBatching
from vfr.retrieve.types import Hit, Query, Scope

_LEAD = object()  # handed to a waiting caller: run the next batch


class SearchBatcher:
    """`search(backend_key, query, k, scope)` from many threads; `backend(key)` gives the backend.

    No thread of its own: the caller that finds no search running runs its own search at once (a lone
    query pays nothing); callers arriving meanwhile queue, and when the running caller is done it hands
    over to the first of them, which runs everything queued by then as batches (one per retriever, fusion,
    scope and group of k that share a ranking) and hands over in turn. So a search never waits for more
    than the batch before it."""

    def __init__(self, backend: Callable[[Any], Any], config: QueryBatching | None = None) -> None:
        self.backend = backend
        self.config = config or QueryBatching()
        self._lock = threading.Lock()
        self._queue: deque = deque()
        self._busy = False
        self.calls = 0     # batches run
        self.requests = 0  # searches answered

    def search(self, key: Any, query: Query, k: int, scope: Scope | None) -> list[Hit]:
        own: Future = Future()
        job = ((key, query, k, scope), own)
        with self._lock:
            lead = not self._busy
            self._busy = True
            if not lead:
                self._queue.append(job)
        if not lead and own.result() is not _LEAD:
            return own.result()
        try:
            if self.config.max_wait_ms > 0:
                time.sleep(self.config.max_wait_ms / 1000)
            with self._lock:
                jobs = [job] + [self._queue.popleft() for _ in range(min(len(self._queue), self.config.max_batch - 1))]
            if not lead:
                own = Future()  # this caller's answer (its first future carried the hand-over)
                jobs[0] = (job[0], own)
            self._run(jobs)
        finally:
            with self._lock:
                if self._queue:
                    self._queue.popleft()[1].set_result(_LEAD)
                else:
                    self._busy = False
        return own.result()

    def _run(self, jobs: list[tuple[tuple, Future]]) -> None:
        backends: dict[Any, Any] = {}
        groups: dict[tuple, tuple[Scope | None, list[tuple[Query, int, Future]]]] = {}
        for (key, query, k, scope), fut in jobs:
            share = (key, self._share_k(backends, key, k), scope.key if scope is not None else None)
            groups.setdefault(share, (scope, []))[1].append((query, k, fut))
        for (key, _, _), (scope, items) in groups.items():
            top = max(k for _, k, _ in items)  # every k of a group is a prefix of this one's ranking
            try:
                backend = backends[key] if key in backends else self.backend(key)
                found = backend.batch_search([q for q, _, _ in items], top, scope) if len(items) > 1 else None
            except Exception:  # one failing query must not fail the others: each runs on its own below
                found = None
            if found is not None:
                for (_, k, fut), hits in zip(items, found):
                    fut.set_result(hits[:k])
                continue
            for query, k, fut in items:
                try:
                    fut.set_result(self.backend(key).search(query, k, scope))
                except BaseException as e:  # reaches this caller only
                    fut.set_exception(e)
        self.calls += 1
        self.requests += len(jobs)

    def _share_k(self, backends: dict, key: Any, k: int) -> int:
        """Which searches of this k may share a batch: those with the same `batch_k` (k itself if the backend
        has none, or cannot be had: the search then fails on its own, as unbatched)."""
        try:
            if key not in backends:
                backends[key] = self.backend(key)
            batch_k = getattr(backends[key], "batch_k", None)
            return batch_k(k) if batch_k is not None else k
        except Exception:
            return k

    def close(self) -> None:
        """Nothing to stop (no thread of its own); kept for symmetry with the encoder batcher."""
