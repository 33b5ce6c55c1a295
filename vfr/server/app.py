"""The FastAPI application: `create_app(settings)`. Routes are in routes.py; this file wires the service,
error handling (every client error is JSON with a status, a short code and a message; never a trace),
the middleware and the page."""
from __future__ import annotations

import json
import logging
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from vfr import __version__
from vfr.server.metrics import Metrics
from vfr.server.middleware import RequestMiddleware
from vfr.server.service import ApiError, Service
from vfr.server.settings import ServerSettings

log = logging.getLogger("vfr.server")
CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
         406: "not_acceptable", 409: "conflict", 413: "too_large", 415: "unsupported_media_type",
         422: "invalid", 503: "unavailable"}
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'none'; media-src 'none'; "
                                           "object-src 'none'; frame-ancestors 'none'; base-uri 'none'",
                "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


class JSON(JSONResponse):
    """JSON that stays valid whatever text it carries (a lone surrogate is escaped, not an error)."""

    def render(self, content: Any) -> bytes:
        try:
            return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
        except UnicodeEncodeError:
            return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode()


def error(status: int, message: str, code: str | None = None, headers: dict | None = None) -> JSON:
    return JSON({"status": status, "error": code or CODES.get(status, "error"), "message": message},
                status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> tuple[int, str]:
    errs = exc.errors()
    first = errs[0] if errs else {"msg": "invalid request", "loc": ()}
    if first.get("type") == "json_invalid":
        return 400, f"the body is not valid JSON ({(first.get('ctx') or {}).get('error', 'decode error')})"
    loc = ".".join(str(p) for p in first.get("loc", ())
                   if p != "body" and not (isinstance(p, str) and p[:1].isupper())) or "request"  # no model names
    msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    if first.get("type") == "extra_forbidden":
        msg = "unknown field (see /docs for the fields this accepts)"
    more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
    return 422, (f"{loc}: {msg}" if loc != "request" else msg) + more


def _install_errors(app: FastAPI) -> None:
    from vfr.engine import Conflict, EngineError, NotFound

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSON:
        return error(*_validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSON:
        code = getattr(exc, "code", None)
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if exc.status_code == 404 and code is None:
            message = f"no such endpoint: {request.url.path} (see /docs)"
        elif exc.status_code == 400 and code is None:
            message = "the body could not be read as JSON: send a JSON object (Content-Type: application/json)"
        return error(exc.status_code, message, code, getattr(exc, "headers", None))

    @app.exception_handler(EngineError)
    async def _engine(request: Request, exc: EngineError) -> JSON:
        from vfr.store.store import StoreBusy

        if isinstance(exc, NotFound):
            return error(404, str(exc))
        if isinstance(exc, Conflict):
            return error(409, str(exc))
        if isinstance(exc.__context__, StoreBusy):
            return error(503, "the database is busy with another writer; try again shortly", headers={"Retry-After": "2"})
        return error(422, str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSON:
        rid = request.scope.get("state", {}).get("request_id", "?")
        log.exception("request %s failed", rid)
        return error(500, f"internal error (request id {rid}); the server log has the details")


def create_app(settings: ServerSettings, service: Service | None = None) -> FastAPI:
    """The app; the engine opens when it starts (lifespan) and closes when it stops."""
    from vfr.server.routes import router

    svc = service or Service(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        svc.start()
        try:
            yield
        finally:
            svc.stop()

    app = FastAPI(title="vfr", version=__version__, lifespan=lifespan, default_response_class=JSON,
                  description="Vision-free image search over text descriptions: BM25 + dense, fused. Every /v1 "
                              "call takes an API key (`Authorization: Bearer <key>`) that sees only its "
                              "collections; other collections' documents answer 404.")
    app.state.service = svc
    metrics = Metrics(lambda: svc.engine.stats() if svc.engine else {},
                      lambda: svc.engine.search_batching() if svc.engine else {})
    app.state.metrics = svc.metrics = metrics
    _install_errors(app)
    app.include_router(router)
    static = resources.files("vfr.server") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    page = (static / "index.html").read_text(encoding="utf-8")

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers=PAGE_HEADERS)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204)

    app.add_middleware(RequestMiddleware, max_body=settings.max_body_bytes, metrics=metrics)
    return app
