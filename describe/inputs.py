"""Check what `vfr describe` was asked to read before anything heavy starts.

Loading a vision LLM costs seconds to minutes and gigabytes; a typo in a folder name must cost
neither. `collect` expands the command line exactly as the job would (`reader.discover`) and refuses,
with one line that says what to do, inputs that cannot give a single image: a path that does not
exist, an unreadable folder or file list, or nothing but empty folders and globs that match nothing.
Files that exist but turn out to be bad still become error rows during the job, as before.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from vfr.describe.reader import IMAGE_SUFFIXES, discover

WHAT_TO_PASS = "pass image files, folders (searched recursively), quoted globs or @list.txt files"


class InputError(ValueError):
    """Nothing can be described from these inputs; the message is one line saying why and what to do."""


@dataclass
class Inputs:
    files: list[Path]
    empty: list[str] = field(default_factory=list)   # specs that gave no file (worth a note, not an error)


def collect(specs: Sequence[str]) -> Inputs:
    """The files the job will read, in the job's order, or an `InputError`."""
    if not specs:
        raise InputError(f"no images given: {WHAT_TO_PASS} (e.g. `vfr describe photos/`)")
    files: list[Path] = []
    seen: set[str] = set()
    empty: list[str] = []
    for spec in specs:
        _check(spec)
        found = 0
        for path in discover([spec]):
            found += 1
            key = os.path.abspath(path)
            if key not in seen:
                seen.add(key)
                files.append(path)
        if not found:
            empty.append(spec)
    if not files:
        suffixes = " ".join(sorted(IMAGE_SUFFIXES))
        raise InputError(f"no image files in {', '.join(empty)} (vfr looked recursively for {suffixes}); "
                         f"{WHAT_TO_PASS}")
    return Inputs(files, empty)


def _check(spec: str) -> None:
    """Refuse a spec that cannot be read at all (reader.discover would skip it or stop with a traceback)."""
    if spec.startswith("@"):
        try:
            with open(spec[1:], encoding="utf-8") as fh:
                for _ in fh:   # the whole list: a bad byte on line 90,000 must not stop the job later
                    pass
        except (OSError, UnicodeDecodeError) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
            raise InputError(f"cannot read the file list {spec[1:]} ({why}; vfr looked at "
                             f"{os.path.abspath(spec[1:])}); {WHAT_TO_PASS}") from None
        return
    p = Path(spec)
    if p.is_dir():
        try:
            with os.scandir(p) as it:
                next(it, None)
        except OSError as e:
            raise InputError(f"cannot read folder {spec} ({e.strerror or type(e).__name__}); check its "
                             "permissions, or run vfr as a user who can read it") from None
    elif not (p.exists() or p.is_symlink() or glob.has_magic(spec)):
        raise InputError(f"{spec}: no such file or folder (vfr looked at {os.path.abspath(spec)}); "
                         "check the path")
