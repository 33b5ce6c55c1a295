"""Named points in write paths where the fault-injection tests stop a process (tests/faults/).

`point("publish:manifest-written")` does nothing unless the environment asks for that point
(VFR_FAULT_POINT, a glob): then it appends the point's name to VFR_FAULT_MARKER and hangs (or exits
at once with VFR_FAULT_ACTION=exit), so a test can kill -9 the process exactly there and know where the
kill landed. VFR_FAULT_SKIP=N lets the first N passes through the point go by (the second batch of a job,
say). One environment lookup when unused."""
from __future__ import annotations

import os
import time
from fnmatch import fnmatch

_TARGET = os.environ.get("VFR_FAULT_POINT")
_passes: dict[str, int] = {}


def point(name: str) -> None:
    if _TARGET is None or not fnmatch(name, _TARGET):
        return
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] <= int(os.environ.get("VFR_FAULT_SKIP", "0")):
        return
    marker = os.environ.get("VFR_FAULT_MARKER")
    if marker:
        with open(marker, "a") as f:
            f.write(f"{name} {os.getpid()}\n")
            f.flush()
            os.fsync(f.fileno())
    if os.environ.get("VFR_FAULT_ACTION") == "exit":
        os._exit(137)
    time.sleep(3600)  # the test kills us here
