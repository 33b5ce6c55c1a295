"""The server engine: any OpenAI-compatible chat endpoint (`vllm serve`, a gateway, a hosted API).

Images go as base64 data URLs of the already downscaled picture (pixels are sent, never stored).
The schema goes as `response_format: json_schema` (strict). Requests run concurrently up to a bound;
connection errors, timeouts, 429 and 5xx are retried with exponential backoff and jitter.
"""
from __future__ import annotations

import asyncio
import base64
import io
import os
import random
from dataclasses import dataclass
from typing import Any, Sequence

import httpx

from vfr.describe import prompt
from vfr.describe.describer import Generation
from vfr.describe.reader import ImageRef
from vfr.describe.schema import SceneDescription

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


@dataclass
class ServerOptions:
    url: str = "http://127.0.0.1:8000/v1"
    model: str | None = None          # None: the first model the server lists
    api_key: str | None = None        # None: $VFR_SERVER_API_KEY, then $OPENAI_API_KEY, then none
    max_tokens: int = 1024
    temperature: float = 0.0
    retry_temperature: float = 0.7
    seed: int = 0
    concurrency: int = 8
    timeout_s: float = 120.0
    max_retries: int = 4
    backoff_s: float = 0.5


class ServerEngine:
    def __init__(self, opts: ServerOptions, transport: httpx.AsyncBaseTransport | None = None) -> None:
        """`transport` lets tests put an in-process fake server behind the real client."""
        self.opts = opts
        self.transport = transport
        self.name = "server"
        self.base = opts.url.rstrip("/")
        key = opts.api_key or os.environ.get("VFR_SERVER_API_KEY") or os.environ.get("OPENAI_API_KEY")
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._schema = SceneDescription.json_schema()
        self.model = opts.model or self._first_model()

    def _first_model(self) -> str:
        try:
            r = httpx.get(f"{self.base}/models", headers=self.headers, timeout=self.opts.timeout_s)
            r.raise_for_status()
            return r.json()["data"][0]["id"]
        except (httpx.HTTPError, KeyError, IndexError, ValueError) as e:
            raise ConnectionError(f"cannot list models at {self.base}/models ({e}); is the server up? "
                                  "Pass --model to skip this check.") from None

    def generate(self, batch: Sequence[ImageRef], retry: bool = False) -> list[Generation]:
        return asyncio.run(self._batch(batch, retry))

    async def _batch(self, batch: Sequence[ImageRef], retry: bool) -> list[Generation]:
        sem = asyncio.Semaphore(max(self.opts.concurrency, 1))
        limits = httpx.Limits(max_connections=max(self.opts.concurrency, 1))
        async with httpx.AsyncClient(headers=self.headers, timeout=self.opts.timeout_s, limits=limits,
                                     transport=self.transport) as client:
            async def one(ref: ImageRef) -> Generation:
                async with sem:
                    return await self._request(client, self.body(ref, retry))
            return list(await asyncio.gather(*(one(r) for r in batch)))

    def body(self, ref: ImageRef, retry: bool) -> dict[str, Any]:
        o = self.opts
        part = {"type": "image_url", "image_url": {"url": data_url(ref)}}
        return {
            "model": self.model, "messages": prompt.messages(part), "max_tokens": o.max_tokens,
            "temperature": o.retry_temperature if retry else o.temperature,
            "seed": o.seed + 1 if retry else o.seed,
            "response_format": {"type": "json_schema", "json_schema": {
                "name": "scene_description", "schema": self._schema, "strict": True}},
        }

    async def _request(self, client: httpx.AsyncClient, body: dict[str, Any]) -> Generation:
        last = "no attempt"
        for attempt in range(self.opts.max_retries + 1):
            if attempt:
                await asyncio.sleep(self.opts.backoff_s * 2 ** (attempt - 1) * (0.5 + random.random()))
            try:
                r = await client.post(f"{self.base}/chat/completions", json=body)
            except (httpx.TransportError, httpx.TimeoutException) as e:
                last = f"{type(e).__name__}: {e}"
                continue
            if r.status_code in RETRY_STATUS:
                last = f"HTTP {r.status_code}: {r.text[:200]}"
                continue
            if r.status_code >= 400:
                return Generation(None, error=f"HTTP {r.status_code}: {r.text[:300]}")
            return _generation(r.json())
        return Generation(None, error=f"gave up after {self.opts.max_retries + 1} attempts; last: {last}")


def _generation(payload: dict[str, Any]) -> Generation:
    try:
        choice = payload["choices"][0]
        usage = payload.get("usage") or {}
        return Generation(text=choice["message"].get("content"), prompt_tokens=usage.get("prompt_tokens", 0),
                          completion_tokens=usage.get("completion_tokens", 0),
                          finish_reason=choice.get("finish_reason"))
    except (KeyError, IndexError, TypeError) as e:
        return Generation(None, error=f"unexpected response shape: {type(e).__name__}: {e}")


def data_url(ref: ImageRef) -> str:
    """The in-memory image as a JPEG data URL (PNG for tiny images, where JPEG blocks would dominate)."""
    buf = io.BytesIO()
    im = ref.image
    if im is None:
        raise ValueError(f"image {ref.id} was not decoded")
    fmt = "PNG" if im.width * im.height < 64 * 64 else "JPEG"
    im.save(buf, format=fmt, quality=92) if fmt == "JPEG" else im.save(buf, format=fmt)
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buf.getvalue()).decode()}"
