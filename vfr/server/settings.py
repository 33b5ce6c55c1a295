"""What a deployment can set (and the limits every request is held to)."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

MAX_K = 100              # hits per request (a page); more is a 422
MAX_OFFSET = 1000        # how deep paging may go
MAX_QUERY_CHARS = 1000   # characters in one query
MAX_BATCH = 100          # queries in one POST /v1/search
MAX_RECORDS = 500        # documents in one PUT /v1/documents
MAX_DELETE_IDS = 1000    # ids in one bulk delete
MAX_BODY_BYTES = 8 << 20  # request body (a 413 beyond)


@dataclass(frozen=True)
class ServerSettings:
    db: Path
    index: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    threads: int = 16              # long-lived threads running engine calls (searches) concurrently
    query_batching: bool = True    # run concurrent searches as shared batch searches
    batch_wait_ms: float = 0.0     # how long a query batch waits for more (0: takes what is waiting)
    key_ttl: float = 5.0           # seconds between reads of the key table (revocation takes effect within)
    key_max_stale: float = 60.0    # refuse keyed requests (503) when the table could not be read for longer
    lock_timeout: float = 10.0     # seconds to wait for another process's database lock
    max_body_bytes: int = MAX_BODY_BYTES
    warm: bool = True              # run one search per retriever at start (JVM, encoder, index loaded)

    @property
    def open_allowed(self) -> bool:
        """Without keys the service may answer only on a loopback address."""
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
