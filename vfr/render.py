"""Human-readable result tables."""
from __future__ import annotations

from rich.table import Table

from vfr.retrieve.types import Hit


def snippet(text: str, width: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1].rsplit(" ", 1)[0] + "…"


def results_table(title: str | None, hits: list[Hit], docs: dict) -> Table:
    table = Table(title=f"“{title}”" if title else None, title_justify="left", show_lines=False, expand=False)
    table.add_column("rank", justify="right")
    table.add_column("score", justify="right")
    table.add_column("id", overflow="fold", max_width=24)
    table.add_column("description", overflow="fold")
    for h in hits:
        doc = docs.get(h.id)
        table.add_row(str(h.rank), f"{h.score:.3f}", h.id, snippet(doc["text"]) if doc else "(not in index)")
    if not hits:
        table.add_row("", "", "", "no results")
    return table
