"""What a model folder records about its training: the images (groups) it was calibrated on.

`vfr calibrate` writes them to calibration.json (`train_group_ids`); `vfr models soup` writes soup.json, whose
model saw every image any ingredient saw. Two readers need them: cross-fitted distillation (each teacher scores
only images it never trained on, retrieve/calibrate/distil.py) and `vfr tune`, which leaves out the dev
queries whose image the encoder trained on, so a fusion is not chosen on what the model memorised
(docs/sweeps.md: on coco-val those queries reward memorising).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def trained_groups(location: str | Path) -> set[str] | None:
    """The images a model folder trained on: calibration.json's `train_group_ids`, or for a soup the union of
    its ingredients' (an uncalibrated ingredient, such as the packaged model of a WiSE-FT soup, adds none).
    None when the folder does not say: not calibrated by vfr, from a version that did not record them, or a
    soup with such an ingredient or one no longer on disk (its images are unknown, so nothing is unseen)."""
    folder = Path(location)
    card = _read(folder / "calibration.json")
    if card is not None:
        ids = card.get("train_group_ids")
        return set(map(str, ids)) if isinstance(ids, list) and ids else None
    soup = _read(folder / "soup.json")
    if soup is None or not isinstance(soup.get("ingredients"), list):
        return None
    seen: set[str] = set()
    for part in soup["ingredients"]:
        where = _ingredient(part)
        if not where.is_dir():
            return None  # gone from disk (or an installed model's name): what it saw cannot be read
        if not (where / "calibration.json").is_file() and not (where / "soup.json").is_file():
            continue  # an uncalibrated model saw no images
        groups = trained_groups(where)
        if groups is None:
            return None
        seen |= groups
    return seen or None


def _read(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _ingredient(part: Any) -> Path:
    """Where a soup ingredient is: its recorded absolute location if still there, else its name as given
    (a folder relative to where the soup was made)."""
    if not isinstance(part, dict):
        return Path("")
    where = Path(str(part.get("location") or part.get("model") or ""))
    if where.exists():
        return where
    return Path(str(part.get("model") or ""))
