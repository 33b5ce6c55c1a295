"""Defaults shared by every surface; environment variables override them."""
from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DB = "vfr.duckdb"


def default_db() -> Path:
    return Path(os.environ.get("VFR_DB", DEFAULT_DB))


def default_index(db: Path) -> Path:
    """The index folder lives next to its database: `photos.duckdb` → `photos.index/`."""
    return db.with_name(db.name.removesuffix(".duckdb") + ".index")
