"""Around every request (plain ASGI, no per-request task): a request id, a Server-Timing header (the time
the server spent until the response started), the body size limit (413 before
the body is read when Content-Length says so, and while reading otherwise), a structured access log line
(JSON) and the request metrics.

The access log holds the method, the route, the status, timing, sizes, the key id and the client address,
never the query string or the body: queries and descriptions can be personal data."""
from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

access_log = logging.getLogger("vfr.access")


class TooLarge(Exception):
    pass


def _error_body(status: int, code: str, message: str) -> bytes:
    return json.dumps({"status": status, "error": code, "message": message}).encode()


class RequestMiddleware:
    def __init__(self, app: Any, max_body: int, metrics: Any) -> None:
        self.app, self.max_body, self.metrics = app, max_body, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        rid = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        info = {"status": 500, "bytes_out": 0, "bytes_in": 0}

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                info["status"] = message["status"]
                message.setdefault("headers", [])
                took = f"app;dur={(time.perf_counter() - start) * 1000:.3f}".encode()
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode("latin-1")),
                                      (b"server-timing", took)]
            elif message["type"] == "http.response.body":
                info["bytes_out"] += len(message.get("body", b""))
            await send(message)

        async def receive_counting() -> dict:
            message = await receive()
            if message["type"] == "http.request":
                info["bytes_in"] += len(message.get("body", b""))
            return message

        try:
            length = int(headers.get(b"content-length", b"0") or 0)
        except ValueError:
            length = 0
        try:
            if length > self.max_body:
                raise TooLarge
            if b"content-length" not in headers and scope["method"] in ("POST", "PUT", "PATCH", "DELETE"):
                receive_counting = await self._buffered(receive_counting, info)  # chunked: read it bounded
            await self.app(scope, receive_counting, send_wrapper)
        except TooLarge:
            body = _error_body(413, "too_large", f"the request body is over {self.max_body} bytes: "
                                                 "send fewer documents or queries per request")
            await send_wrapper({"type": "http.response.start", "status": 413,
                                "headers": [(b"content-type", b"application/json"),
                                            (b"content-length", str(len(body)).encode()),
                                            (b"connection", b"close")]})
            await send_wrapper({"type": "http.response.body", "body": body})
        finally:
            self._record(scope, info, time.perf_counter() - start, rid)

    async def _buffered(self, receive: Any, info: dict) -> Any:
        """Read a body that came without Content-Length (up to the limit), then replay it."""
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return _replay([message])
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
            if info["bytes_in"] > self.max_body:
                raise TooLarge
        return _replay([{"type": "http.request", "body": b"".join(chunks), "more_body": False}], receive)

    def _record(self, scope: dict, info: dict, seconds: float, rid: str) -> None:
        route = getattr(scope.get("route"), "path", None) or ("static" if scope["path"].startswith("/static")
                                                              else "unmatched")
        self.metrics.observe(scope["method"], route, info["status"], seconds)
        if access_log.isEnabledFor(logging.INFO):
            client = scope.get("client") or ("", 0)
            access_log.info(json.dumps({
                "ts": round(time.time(), 3), "event": "access", "request_id": rid, "method": scope["method"],
                "route": route, "status": info["status"], "ms": round(seconds * 1000, 2),
                "bytes_in": info["bytes_in"], "bytes_out": info["bytes_out"],
                "key": scope.get("state", {}).get("key_id"), "client": client[0]}))


def _replay(messages: list, then: Any = None) -> Any:
    async def receive() -> dict:
        if messages:
            return messages.pop(0)
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}
    return receive
