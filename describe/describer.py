"""Engines generate raw JSON; the `Describer` validates it, retries once, and never lets a bad one through.

An `Engine` (offline vLLM, OpenAI-compatible server, or a fake in tests) turns a batch of images into
raw generations. `ValidatingDescriber` parses each against `SceneDescription`, re-asks the engine once
(sampling instead of greedy, so the retry can differ) for the ones that fail, applies redaction, and
keeps per-stage timings and token counts for the job row.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol, Sequence

from pydantic import ValidationError

from vfr.describe.prompt import redact
from vfr.describe.reader import ImageRef
from vfr.describe.schema import SceneDescription

# Error reasons produced here (reader reasons live in describe.reader).
INVALID_OUTPUT, ENGINE_ERROR = "invalid_output", "engine_error"


@dataclass(frozen=True, slots=True)
class Generation:
    """What an engine returned for one image: text, or an error message when the request failed."""

    text: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class DescribeError:
    reason: str
    detail: str


class Engine(Protocol):
    """Backends implement this; `retry=True` asks for a sampled (not greedy) second attempt."""

    name: str

    def generate(self, batch: Sequence[ImageRef], retry: bool = False) -> list[Generation]: ...


class Describer(Protocol):
    def describe(self, batch: Sequence[ImageRef]) -> list[SceneDescription | DescribeError]: ...


@dataclass
class Stats:
    engine_s: float = 0.0
    validate_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retried: int = 0
    invalid: int = 0
    extra: dict[str, float] = field(default_factory=dict)


def parse(gen: Generation) -> SceneDescription | DescribeError:
    """Validate one generation; the error detail says why (truncated, bad JSON, schema violation)."""
    if gen.error is not None or gen.text is None:
        return DescribeError(ENGINE_ERROR, (gen.error or "no output")[:500])
    try:
        return SceneDescription.model_validate_json(gen.text)
    except ValidationError as e:
        why = "output cut at max_tokens; " if gen.finish_reason == "length" else ""
        first = e.errors()[0]
        return DescribeError(INVALID_OUTPUT, f"{why}{e.error_count()} error(s), first at "
                                             f"{'.'.join(map(str, first['loc'])) or '(root)'}: {first['msg']}"[:500])


class ValidatingDescriber:
    """The one place where engine output becomes a `SceneDescription` (or a recorded error)."""

    def __init__(self, engine: Engine, redact_text: bool = True) -> None:
        self.engine = engine
        self.redact = redact_text
        self.stats = Stats()

    def describe(self, batch: Sequence[ImageRef]) -> list[SceneDescription | DescribeError]:
        results = self._round(batch, retry=False)
        again = [i for i, r in enumerate(results) if isinstance(r, DescribeError)]
        if again:
            self.stats.retried += len(again)
            for i, r in zip(again, self._round([batch[i] for i in again], retry=True)):
                results[i] = r
        self.stats.invalid += sum(isinstance(r, DescribeError) for r in results)
        if self.redact:
            results = [redact(r) if isinstance(r, SceneDescription) else r for r in results]
        return results

    def _round(self, batch: Sequence[ImageRef], retry: bool) -> list[SceneDescription | DescribeError]:
        t0 = time.perf_counter()
        gens = self.engine.generate(batch, retry=retry)
        t1 = time.perf_counter()
        if len(gens) != len(batch):
            raise RuntimeError(f"engine {self.engine.name} returned {len(gens)} outputs for {len(batch)} images")
        out = [parse(g) for g in gens]
        self.stats.engine_s += t1 - t0
        self.stats.validate_s += time.perf_counter() - t1
        self.stats.prompt_tokens += sum(g.prompt_tokens for g in gens)
        self.stats.completion_tokens += sum(g.completion_tokens for g in gens)
        return out
