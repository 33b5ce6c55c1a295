"""Image ids shared by every reader of public datasets (evaluation benchmarks, calibration pairs): COCO file
names and numeric ids normalise to one id, so one image is one id in every source."""
from __future__ import annotations

import re

_COCO_NAME = re.compile(r"(?:COCO_(?:val|train|test)20\d\d_)?0*(\d+)(?:\.jpg)?$")


def coco_id(name: str | int) -> str:
    """`COCO_val2014_000000001290.jpg`, `000000001290.jpg`, `1290` → `"1290"`."""
    m = _COCO_NAME.fullmatch(str(name))
    if not m:
        raise ValueError(f"not a COCO image name or id: {name!r}")
    return m.group(1)
