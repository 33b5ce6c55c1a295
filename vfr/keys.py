"""API keys for `vfr serve`: make them, check them, and keep the server's view of them fresh.

A key reads `vfr_<id>_<secret>`. The store keeps the id, a random salt and scrypt(secret, salt) (standard
library, n=2^14, r=8, p=1: ~50 ms and 16 MiB per check), never the secret; `vfr keys create` prints the key
once. A key sees the collections it was made for (or every collection: "*"), with a role: read (search,
get), write (+ upsert, delete documents), admin (+ delete whole collections and retract a describer from
them; metrics and retracting a describer from every collection when it sees all).

The server must not hold the DuckDB file (one writer process at a time), so `KeyRing` reads the key table
in a short read-only transaction every `ttl` seconds on a background thread and answers requests from
memory: a revoked or new key takes effect within `ttl` seconds (plus the read itself). A key whose scrypt
check passed is remembered (by the SHA-256 of the whole key) until the next refresh drops it, so a busy
client costs one scrypt per refresh, not per request. If the table cannot be read for `max_stale` seconds,
every keyed request is refused (503) rather than served from a view that may miss a revocation.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

ROLES = ("read", "write", "admin")
ALL = "*"
KDF = {"name": "scrypt", "n": 2**14, "r": 8, "p": 1}
PREFIX = "vfr"


class KeyError_(ValueError):
    """A bad key request (message says what to do)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a key (its id, collections, role), or the open loopback server (key_id None)."""

    key_id: str | None
    collections: frozenset[str] | None  # None: every collection
    role: str

    def can(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)

    def sees(self, collection: str | None) -> bool:
        return self.collections is None or (collection is not None and collection in self.collections)


OPEN = Principal(None, None, "admin")


def _derive(secret: str, salt: bytes, kdf: dict) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, n=kdf["n"], r=kdf["r"], p=kdf["p"], dklen=32,
                          maxmem=256 * kdf["n"] * kdf["r"] * 2)


def new_key(collections: Iterable[str], role: str = "read", name: str | None = None):
    """(the key to give out once, the row to store)."""
    from vfr.store.keys import KeyRow

    names = tuple(sorted({c.strip() for c in collections}))
    if not names or any(not c for c in names):
        raise KeyError_("give at least one --collection NAME (or --collection '*' for every collection)")
    if ALL in names and len(names) > 1:
        raise KeyError_("'*' already means every collection: give it alone")
    if role not in ROLES:
        raise KeyError_(f"unknown role {role!r}: use read, write or admin")
    key_id, secret, salt = secrets.token_hex(6), secrets.token_urlsafe(32), secrets.token_bytes(16)
    row = KeyRow(key_id, salt, _derive(secret, salt, KDF), dict(KDF), names, role, name)
    return f"{PREFIX}_{key_id}_{secret}", row


def split_key(key: str) -> tuple[str, str] | None:
    parts = key.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def check(key: str, row) -> bool:
    """Whether `key` is the key `row` was made from (constant-time compare of the scrypt hashes)."""
    parts = split_key(key)
    if parts is None or parts[0] != row.id or len(parts[1]) > 256:
        return False
    return hmac.compare_digest(_derive(parts[1], row.salt, row.kdf), row.hash)


def principal_of(row) -> Principal:
    cols = None if ALL in row.collections else frozenset(row.collections)
    return Principal(row.id, cols, row.role)


class KeysUnavailable(RuntimeError):
    """The key table could not be read for too long: refuse rather than miss a revocation."""


class KeyRing:
    """The server's in-memory view of the key table, refreshed every `ttl` seconds by `load()`."""

    def __init__(self, load: Callable[[], list], ttl: float = 5.0, max_stale: float = 60.0) -> None:
        self._load, self.ttl, self.max_stale = load, ttl, max_stale
        self._rows: dict[str, object] = {}
        self._verified: dict[str, str] = {}  # sha256(key) → key id, until the next refresh
        self._loaded_at = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    def refresh(self) -> None:
        """Read the table now (raises what the loader raises; the old view stays)."""
        rows = {r.id: r for r in self._load() if r.active}
        with self._lock:
            self._rows = rows
            self._verified = {d: i for d, i in self._verified.items() if i in rows}
            self._loaded_at = time.monotonic()
            self.last_error = None

    @property
    def any_active(self) -> bool:
        return bool(self._rows)

    def start(self) -> None:
        """Refresh in the background every `ttl` seconds until `stop()`."""
        def loop() -> None:
            while not self._stop.wait(self.ttl):
                try:
                    self.refresh()
                except Exception as e:  # noqa: BLE001 - logged and retried; requests fail closed past max_stale
                    self.last_error = str(e)
        self._thread = threading.Thread(target=loop, name="vfr-keyring", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def cached(self, key: str) -> Principal | None:
        """The principal of a key verified since the last refresh (cheap: no scrypt), else None."""
        if time.monotonic() - self._loaded_at > self.max_stale:
            raise KeysUnavailable(f"the key table could not be read for over {self.max_stale:g}s "
                                  f"({self.last_error or 'no read yet'}); try again shortly")
        digest = hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()
        with self._lock:
            key_id = self._verified.get(digest)
            row = self._rows.get(key_id) if key_id else None
        return principal_of(row) if row is not None else None

    def authenticate(self, key: str) -> Principal | None:
        """The principal of an active key, or None for a wrong, unknown or revoked key."""
        who = self.cached(key)
        if who is not None:
            return who
        digest = hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()
        parts = split_key(key)
        row = self._rows.get(parts[0]) if parts else None
        if row is None or not check(key, row):
            return None
        with self._lock:
            if row.id in self._rows:
                self._verified[digest] = row.id
        return principal_of(row)


def store_loader(db: Path, lock_timeout: float = 10.0) -> Callable[[], list]:
    """A loader that opens the store read-only for one short read of the key table."""
    def load() -> list:
        from vfr.store.store import Store

        with Store(db, read_only=True, lock_timeout=lock_timeout) as store:
            return store.keys(include_revoked=False)
    return load
