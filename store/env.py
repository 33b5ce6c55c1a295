"""Numeric settings from environment variables (VFR_LOCK_TIMEOUT, VFR_LUCENE_THREADS, …), validated like
command-line options: a value that is not a number, NaN, or out of range is one clear error, not a silent
default and not a traceback."""
from __future__ import annotations

import math
import os


class EnvError(ValueError):
    """An environment variable holds a bad value; the message names it and says what is allowed."""


def env_number(name: str, default: float, minimum: float, maximum: float = math.inf, integer: bool = False) -> float:
    """The value of `name` (or `default` when unset or empty), checked: a number (an integer if `integer`)
    from `minimum` to `maximum`; `inf` is allowed where `maximum` is (for "wait forever")."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    kind = "a whole number" if integer else "a number"
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise EnvError(f"{name}={raw!r} is not {kind}") from None
    if math.isnan(value) or not minimum <= value <= maximum:
        upper = "" if maximum == math.inf else f" to {maximum:g}"
        raise EnvError(f"{name}={raw!r}: give {kind} from {minimum:g}{upper}")
    return value
