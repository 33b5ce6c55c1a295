"""Dynamic micro-batching of query encoding (opt-in): concurrent `encode` calls become one batch.

A server answers many queries at once; encoding them one by one costs a model call each, while one call
for the batch costs little more than one (as Ray Serve's `@serve.batch` and Triton's dynamic batcher do).
`BatchingEncoder` wraps any object with `.encode(texts) -> np.ndarray` (and `.spec`): callers queue their
texts and wait; one worker thread takes every request that is waiting, encodes them in one call and hands
each caller its rows. Under no concurrency a request is encoded at once (no wait), so a lone client pays
only a thread hand-off; `max_wait_ms` > 0 additionally holds a batch open that long for later arrivals.

Turn it on with `Engine.open(db, query_batching=True)` (or a `QueryBatching`; the HTTP server does), or
`LiveIndex(dir, wrap_encoder=lambda e: batching(e, QueryBatching()))`. It wraps only the query encoder;
index builds encode in large batches anyway. It needs nothing of the encoder but `.encode(texts)`.
"""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np


@dataclass(frozen=True)
class QueryBatching:
    max_batch: int = 64        # texts per model call at most
    max_wait_ms: float = 0.0   # how long a batch waits for more requests once it has one (0: never waits)


class BatchingEncoder:
    """An encoder whose concurrent `encode` calls share model calls. Thread-safe."""

    def __init__(self, encoder: Any, config: QueryBatching | None = None) -> None:
        self.inner = encoder
        self.config = config or QueryBatching()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self.calls = 0     # model calls made
        self.requests = 0  # encode() calls served
        self._closed = False
        self._worker = threading.Thread(target=self._loop, name="vfr-encode-batcher", daemon=True)
        self._worker.start()

    def __getattr__(self, name: str) -> Any:  # spec, dimension, ... of the wrapped encoder
        return getattr(self.inner, name)

    def encode(self, texts: Sequence[str], *args: Any, **kwargs: Any) -> np.ndarray:
        if args or kwargs or self._closed:  # a caller with its own options (or after close) goes direct
            return self.inner.encode(texts, *args, **kwargs)
        fut: Future = Future()
        self._queue.put((list(texts), fut))
        return fut.result()

    def _gather(self, first) -> list:
        jobs, size = [first], len(first[0])
        deadline = time.monotonic() + self.config.max_wait_ms / 1000
        while size < self.config.max_batch:
            timeout = deadline - time.monotonic()
            try:
                job = self._queue.get_nowait() if timeout <= 0 else self._queue.get(timeout=timeout)
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)  # close after this batch
                break
            jobs.append(job)
            size += len(job[0])
        return jobs

    def _loop(self) -> None:
        while (first := self._queue.get()) is not None:
            jobs = self._gather(first)
            texts = [t for j in jobs for t in j[0]]
            try:
                vecs = np.asarray(self.inner.encode(texts)) if texts else None
            except BaseException as e:  # every waiting caller gets the error
                for _, fut in jobs:
                    fut.set_exception(e)
                continue
            self.calls += 1
            self.requests += len(jobs)
            start = 0
            for job_texts, fut in jobs:
                n = len(job_texts)
                fut.set_result(vecs[start:start + n] if vecs is not None else np.zeros((0, 0), np.float32))
                start += n

    def close(self) -> None:
        """Stop the worker once what is queued is done; later calls encode directly."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._worker.join(timeout=30)


_shared: dict[tuple[int, QueryBatching], BatchingEncoder] = {}
_lock = threading.Lock()


def batching(encoder: Any, config: QueryBatching) -> BatchingEncoder:
    """The process's one batching wrapper of `encoder` with `config` (encoders are loaded once per process,
    so a wrapper outlives the index objects that use it and its worker is never torn down under a caller)."""
    key = (id(encoder), config)
    with _lock:
        if key not in _shared:
            _shared[key] = BatchingEncoder(encoder, config)
        return _shared[key]
