"""The long-lived parts of a running server: the engine (JVM, encoder and index stay warm), the threads
that call it, the key ring, and who is calling (`principal`).

Engine calls run on long-lived threads (`Engine.worker_pool`: they call into the JVM, so they must live as
long as the server and detach from the JVM at the end), never on the event loop. Searches share a pool of
`threads`; writes (upsert, delete) run one at a time on a thread of their own, so a long write never takes
a search thread. The store (DuckDB: one writer process, and one connection configuration per process) is
opened only inside a write or a key-table read, and those take one lock in this process.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Callable

from fastapi import HTTPException, Request

from vfr.keys import OPEN, KeyRing, KeysUnavailable, Principal, store_loader
from vfr.server.settings import ServerSettings

log = logging.getLogger("vfr.server")


class ApiError(HTTPException):
    """An error a client caused (or can wait out): status, short code, message."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, message, headers)
        self.code = code


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


class Service:
    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.engine: Any = None
        self.search_pool: Any = None
        self.write_pool: Any = None
        self.metrics: Any = None  # vfr.server.metrics.Metrics, set by create_app
        self.store_lock = threading.Lock()
        loader = store_loader(settings.db, settings.lock_timeout)

        def locked_load() -> list:
            with self.store_lock:
                return loader()
        self.keys = KeyRing(locked_load, settings.key_ttl, settings.key_max_stale)

    def start(self) -> None:
        """Open the engine, migrate the store (keys table), read the keys, warm every retriever."""
        from vfr.engine import Engine, QueryBatching

        s = self.settings
        batching = QueryBatching(max_wait_ms=s.batch_wait_ms) if s.query_batching else False
        self.engine = Engine.open(s.db, s.index, lock_timeout=s.lock_timeout, query_batching=batching)
        with self.store_lock, self.engine.store():  # a write open applies pending migrations (api_keys)
            pass
        self.keys.refresh()
        if not s.open_allowed and not self.keys.any_active:
            raise RuntimeError(f"refusing to serve {s.host} without keys: anyone on the network could read "
                               "every collection. Create one (`vfr keys create --collection NAME`) or bind "
                               "127.0.0.1")
        self.keys.start()
        self.search_pool = Engine.worker_pool(s.threads)
        self.write_pool = Engine.worker_pool(1)
        if s.warm:
            self.search_pool.submit(self._warm).result()

    def _warm(self) -> None:
        for retriever in ("bm25", "dense", "hybrid"):
            hits = self.engine.search("a photo of people", 3, retriever=retriever)
        self.engine.explain("a photo of people", [h.id for h in hits])

    def stop(self) -> None:
        self.keys.stop()
        for pool in (self.search_pool, self.write_pool):
            if pool is not None:
                pool.close()
        if self.engine is not None:
            self.engine.close()

    async def run(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """Run a read on the search threads."""
        return await asyncio.wrap_future(self.search_pool.submit(lambda: fn(*args, **kwargs)))

    async def write(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """Run a write on the writer thread, holding the process's store lock."""
        def call() -> Any:
            with self.store_lock:
                return fn(*args, **kwargs)
        return await asyncio.wrap_future(self.write_pool.submit(call))

    # -- who is calling --------------------------------------------------------------------------
    async def principal(self, request: Request) -> Principal:
        key = _presented_key(request)
        try:
            if key is None:
                if self.settings.open_allowed and not self.keys.any_active:
                    return OPEN
                raise ApiError(401, "unauthorized", "missing API key: send `Authorization: Bearer <key>` "
                               "(or X-API-Key); `vfr keys create` makes one", {"WWW-Authenticate": "Bearer"})
            who = self.keys.cached(key)
            if who is None:  # a first use since the last refresh: scrypt (~50 ms) off the event loop
                who = await asyncio.to_thread(self.keys.authenticate, key)
        except KeysUnavailable as e:
            raise ApiError(503, "unavailable", str(e), {"Retry-After": "5"}) from None
        if who is None:
            raise ApiError(401, "unauthorized", "unknown or revoked API key", {"WWW-Authenticate": "Bearer"})
        request.state.key_id = who.key_id
        return who


def _presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise ApiError(401, "unauthorized", "the Authorization header must read `Bearer <key>`",
                           {"WWW-Authenticate": "Bearer"})
        return value.strip()
    return request.headers.get("x-api-key") or None


def require(who: Principal, role: str) -> None:
    if not who.can(role):
        article = "an" if role[0] in "aeiou" else "a"
        raise ApiError(403, "forbidden", f"this key's role is {who.role}; this needs {article} {role} key")


def require_global_admin(who: Principal, what: str, instead: str = "") -> None:
    """`what` (a phrase: "metrics need") is for an admin key that sees every collection ('*') only; `instead`
    (a sentence) says what a narrower key can do."""
    if who.collections is not None or not who.can("admin"):
        raise ApiError(403, "forbidden", f"{what} an admin key for every collection ('*')"
                       + (f"; {instead}" if instead else ""))
