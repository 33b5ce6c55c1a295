"""`vfr serve`: the HTTP search service (vfr/server/). Checks what it can before uvicorn starts, so a
missing database, index or key is one line, not a trace."""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from vfr.common import DbOption, IndexOption, console, fail


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)


def serve_cmd(
    db: DbOption,
    index: IndexOption = None,
    host: Annotated[str, typer.Option(help="Address to bind. Anything but loopback needs keys "
                                           "(`vfr keys create`).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free port).")] = 8000,
    threads: Annotated[int, typer.Option(min=1, max=256, help="Searches run at once.")] = 16,
    batching: Annotated[bool, typer.Option(help="Run concurrent searches as shared batch searches (micro-batching).")] = True,
    batch_wait_ms: Annotated[float, typer.Option(min=0, max=100, help="How long a query batch waits for "
                                                 "more queries (0: takes what is waiting).")] = 0.0,
    key_ttl: Annotated[float, typer.Option(min=0.5, max=300, help="Seconds between reads of the key table: "
                                           "a revoked key stops working within this.")] = 5.0,
    access_log: Annotated[Path | None, typer.Option(help="Append the JSON access log here "
                                                    "(default: stderr).")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Serve search over HTTP: the API under /v1 (OpenAPI at /openapi.json, docs at /docs), the search
    page at /, /healthz and /metrics. One long-lived process keeps the JVM, the encoder and the index warm;
    SIGTERM or Ctrl-C lets requests in flight finish, then stops."""
    from vfr.retrieve.index import index_exists
    from vfr.server.settings import ServerSettings, is_loopback
    from vfr.settings import default_index
    from vfr.store.store import Store, StoreError

    if log_level.lower() not in ("debug", "info", "warning", "error"):
        fail(f"unknown --log-level {log_level!r}: use debug, info, warning or error")
    if not db.exists():
        fail(f"no database at {db}: run `vfr import FILE --db {db}` first")
    try:
        with Store(db) as store:  # applies migrations (the api_keys table) before the server reads it
            active = store.keys(include_revoked=False)
    except StoreError as e:
        fail(str(e))
    if not is_loopback(host) and not active:
        fail(f"refusing to serve {host} without keys: anyone on the network could read every collection. "
             f"Create one (`vfr keys create --db {db} --collection NAME`) or bind 127.0.0.1")
    if not index_exists(index or default_index(db)):
        fail(f"no index for {db}: run `vfr index --db {db}` first")
    settings = ServerSettings(db=db, index=index, host=host, port=port, threads=threads, query_batching=batching,
                              batch_wait_ms=batch_wait_ms, key_ttl=key_ttl)
    _logging(access_log, log_level.upper())
    mode = f"{len(active)} active key(s)" if active else "open (loopback, no keys)"
    console.print(f"vfr serve: {db} on http://{host}:{port} — {mode}; the page at /, the API docs at /docs",
                  highlight=False)
    run(settings, log_level.lower())


def run(settings, log_level: str = "info") -> None:
    import uvicorn

    from vfr.server.app import create_app

    config = uvicorn.Config(create_app(settings), host=settings.host, port=settings.port, access_log=False,
                            log_level=log_level, timeout_graceful_shutdown=30, lifespan="on",
                            proxy_headers=False, server_header=False)
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        sys.exit(1)  # startup failed; uvicorn has said why


def _logging(access_log: Path | None, level: str) -> None:
    handler: logging.Handler = (logging.FileHandler(access_log, encoding="utf-8") if access_log
                                else logging.StreamHandler(sys.stderr))
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("vfr.access")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    logging.getLogger("vfr.server").setLevel(level)
