"""Helpers shared by CLI modules: options, error exit, the console."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, NoReturn

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
    console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    sys.exit(code)
