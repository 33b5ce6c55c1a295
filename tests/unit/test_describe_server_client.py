"""The OpenAI-compatible engine against an in-process fake server (httpx MockTransport)."""
from __future__ import annotations

import json

import httpx
from PIL import Image

from vfr.describe.describer import ValidatingDescriber
from vfr.describe.engine_server import ServerEngine, ServerOptions
from vfr.describe.reader import ImageRef
from vfr.describe.schema import SceneDescription
from tests.describe_helpers import valid_json


def _refs(n):
    return [ImageRef(f"id{i}", f"p{i}", 10, 32, 24, Image.new("RGB", (32 + i, 24), (i, 2 * i, 3 * i))) for i in range(n)]


def _ok(body):
    return httpx.Response(200, json={
        "choices": [{"message": {"content": valid_json(_refs(1)[0])}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 50, "completion_tokens": 30}})


class Server:
    """Scripted responses per request; records request bodies and peak concurrency."""

    def __init__(self, script):
        self.script = list(script)
        self.bodies = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        action = self.script.pop(0) if self.script else "ok"
        if action == "ok":
            return _ok(body)
        if action == "drop":
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(int(action), text="busy")


def _engine(server, **kw):
    opts = ServerOptions(url="http://fake/v1", model="m", backoff_s=0.001, **kw)
    return ServerEngine(opts, transport=httpx.MockTransport(server))


def test_request_shape_and_valid_output():
    server = Server([])
    eng = _engine(server)
    out = ValidatingDescriber(eng).describe(_refs(3))
    assert all(isinstance(d, SceneDescription) for d in out)
    body = server.bodies[0]
    assert body["model"] == "m" and body["temperature"] == 0.0
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == SceneDescription.json_schema()
    url = body["messages"][1]["content"][0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert eng.generate(_refs(1))[0].prompt_tokens == 50


def test_retries_transient_errors_with_backoff():
    server = Server(["503", "drop", "429", "ok"])
    gen = _engine(server).generate(_refs(1))[0]
    assert gen.error is None and len(server.bodies) == 4


def test_client_errors_not_retried_and_give_up_after_max():
    server = Server(["400"])
    gen = _engine(server).generate(_refs(1))[0]
    assert gen.error.startswith("HTTP 400") and len(server.bodies) == 1
    server = Server(["500"] * 10)
    gen = _engine(server, max_retries=2).generate(_refs(1))[0]
    assert "gave up after 3 attempts" in gen.error and len(server.bodies) == 3


def test_engine_errors_become_describe_errors():
    server = Server(["400", "400"])
    out = ValidatingDescriber(_engine(server)).describe(_refs(1))
    assert out[0].reason == "engine_error" and len(server.bodies) == 2  # first try + one retry


def test_concurrency_is_bounded():
    import asyncio

    state = {"now": 0, "peak": 0}

    async def slow(request):
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        await asyncio.sleep(0.01)
        state["now"] -= 1
        return _ok(None)

    eng = ServerEngine(ServerOptions(url="http://fake/v1", model="m", concurrency=3),
                       transport=httpx.MockTransport(slow))
    assert len(eng.generate(_refs(12))) == 12
    assert state["peak"] == 3


def test_first_listed_model_is_default():
    def handler(request):
        assert request.url.path == "/v1/models"
        return httpx.Response(200, json={"data": [{"id": "served-tiny"}]})

    import vfr.describe.engine_server as es
    orig = es.httpx.get
    es.httpx.get = lambda url, **kw: httpx.Client(transport=httpx.MockTransport(handler)).get(url)
    try:
        assert ServerEngine(ServerOptions(url="http://fake/v1")).model == "served-tiny"
    finally:
        es.httpx.get = orig
