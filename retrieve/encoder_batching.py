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


class MicroBatcher:
    """A queue and one worker thread: `submit` queues a job and returns its Future; the worker takes every
    job waiting (up to `max_batch` items, after `max_wait_ms` at most) and hands them to `process` at once."""

    name = "vfr-batcher"

    def __init__(self, config: QueryBatching | None = None) -> None:
        self.config = config or QueryBatching()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self.calls = 0     # batches processed
        self.requests = 0  # jobs served
        self._closed = False
        self._worker = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._worker.start()

    def submit(self, payload: Any, size: int = 1) -> Future:
        fut: Future = Future()
        self._queue.put((payload, size, fut))
        return fut

    def process(self, jobs: list[tuple[Any, Future]]) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _gather(self, first) -> list:
        jobs, size = [first], first[1]
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
            size += job[1]
        return jobs

    def _loop(self) -> None:
        try:
            while (first := self._queue.get()) is not None:
                jobs = [(payload, fut) for payload, _, fut in self._gather(first)]
                try:
                    self.process(jobs)
                except BaseException as e:  # every waiting caller gets the error
                    for _, fut in jobs:
                        if not fut.done():
                            fut.set_exception(e)
                    continue
                self.calls += 1
                self.requests += len(jobs)
        finally:
            self.on_exit()

    def on_exit(self) -> None:
        """Called on the worker thread when it ends."""

    def close(self) -> None:
        """Stop the worker once what is queued is done; later calls run directly."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._worker.join(timeout=30)


class BatchingEncoder(MicroBatcher):
    """An encoder whose concurrent `encode` calls share model calls. Thread-safe."""

    name = "vfr-encode-batcher"

    def __init__(self, encoder: Any, config: QueryBatching | None = None) -> None:
        self.inner = encoder
        super().__init__(config)

    def __getattr__(self, name: str) -> Any:  # spec, dimension, ... of the wrapped encoder
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def encode(self, texts: Sequence[str], *args: Any, **kwargs: Any) -> np.ndarray:
        if args or kwargs or self._closed:  # a caller with its own options (or after close) goes direct
            return self.inner.encode(texts, *args, **kwargs)
        texts = list(texts)
        return self.submit(texts, len(texts)).result()

    def process(self, jobs: list[tuple[Any, Future]]) -> None:
        texts = [t for job_texts, _ in jobs for t in job_texts]
        vecs = np.asarray(self.inner.encode(texts)) if texts else None
        start = 0
        for job_texts, fut in jobs:
            n = len(job_texts)
            fut.set_result(vecs[start:start + n] if vecs is not None else np.zeros((0, 0), np.float32))
            start += n


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
