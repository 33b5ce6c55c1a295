"""vfr: vision-free retrieval. The library API is `vfr.Engine` (vfr/engine.py); `vfr` is the CLI."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Engine", "EngineError", "__version__"]

if TYPE_CHECKING:
    from vfr.engine import Engine, EngineError


def __getattr__(name: str) -> Any:  # lazy: `vfr --help` must not import the engine's dependencies
    if name in ("Engine", "EngineError"):
        from vfr import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'vfr' has no attribute {name!r}")
