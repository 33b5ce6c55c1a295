"""Helpers shared by CLI modules: options, error exit, the console."""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Annotated, Iterator, NoReturn

import typer
from rich.console import Console

from vfr.settings import default_db

console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

DbOption = Annotated[Path, typer.Option("--db", help="DuckDB database file (env VFR_DB).",
                                        default_factory=default_db, show_default="./vfr.duckdb")]
IndexOption = Annotated[Path | None, typer.Option("--index", help="Index folder (default: next to the database).")]


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr and a non-zero exit: how every user-facing error ends."""
    from rich.markup import escape

    # The message is plain text: paths, package extras (`vfr[ray]`) and exception texts keep their brackets.
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, markup=True)
    sys.exit(code)


def counted(n: int, noun: str) -> str:
    """"1 image", "3 images", "2 queries": a count with its noun (regular plurals and -y after a consonant)."""
    if n == 1:
        return f"{n} {noun}"
    if noun.endswith("y") and noun[-2:-1] not in ("a", "e", "i", "o", "u"):
        return f"{n} {noun[:-1]}ies"
    return f"{n} {noun}s"


def require_empty_out(folder: Path, force: bool) -> None:
    """Refuse to write a model into a non-empty folder (or onto a file) unless --force says so."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())) and not force:
        fail(f"{folder} exists and is not empty: choose another --out or pass --force")


@contextmanager
def stdout_for_results() -> Iterator[Console]:
    """While the block runs, whatever anything writes to stdout (print, logging handlers such as vLLM's,
    C libraries, child processes) goes to stderr; the console yielded writes to the real stdout, so
    machine-readable results (`--json`) stay parseable whatever the libraries log."""
    sys.stdout.flush()
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):   # stdout is not a file (e.g. a test runner's buffer)
        real = sys.stdout
        with redirect_stdout(sys.stderr):
            yield Console(file=real, soft_wrap=True)
        return
    saved = os.dup(fd)
    os.dup2(sys.stderr.fileno(), fd)
    real_file = os.fdopen(os.dup(saved), "w", encoding="utf-8")
    try:
        with redirect_stdout(sys.stderr):
            yield Console(file=real_file, soft_wrap=True)
    finally:
        real_file.flush()
        sys.stdout.flush()
        os.dup2(saved, fd)
        os.close(saved)
        real_file.close()
