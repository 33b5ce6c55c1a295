"""The one reader of Karpathy split files (`[{split, image_name, captions[]}]`, the COCO / Flickr30k
caption splits): evaluation builds its caption benchmarks from them and calibration its caption-proxy pairs.

Image ids: COCO file names become their numeric id (`image_ids.coco_id`), Flickr30k names their stem, so an
image has one id in every source. Errors name the file and the item (or the line of a JSON syntax error)."""
from __future__ import annotations

import json
from pathlib import Path

from vfr.store.image_ids import coco_id


class KarpathyError(ValueError):
    """A file that is not a valid Karpathy split; the message names the file and item."""


def read_karpathy(path: Path) -> list[tuple[str, tuple[str, ...]]]:
    """(image id, captions) per image, in file order; every image has one or more non-empty captions."""
    try:
        with path.open(encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise KarpathyError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    except UnicodeDecodeError as e:
        raise KarpathyError(f"{path}: not UTF-8 text ({e.reason})") from None
    except OSError as e:
        raise KarpathyError(f"{path}: cannot read: {e.strerror or e}") from None
    if not isinstance(data, list):
        raise KarpathyError(f"{path}: a Karpathy split is a JSON list of {{\"image_name\", \"captions\"}} objects")
    out, seen = [], set()
    for n, rec in enumerate(data):
        name, caps = (rec.get("image_name"), rec.get("captions")) if isinstance(rec, dict) else (None, None)
        if not isinstance(name, str) or not name.strip():
            raise KarpathyError(f"{path} item {n}: needs \"image_name\" (a non-empty string)")
        if not isinstance(caps, list) or not caps or not all(isinstance(c, str) and c.strip() for c in caps):
            raise KarpathyError(f"{path} item {n}: 'captions' must be a non-empty list of non-empty strings")
        image_id = coco_id(name) if name.startswith("COCO_") else Path(name).stem
        if image_id in seen:
            raise KarpathyError(f"{path}: image {image_id!r} appears twice")
        seen.add(image_id)
        out.append((image_id, tuple(caps)))
    return out
