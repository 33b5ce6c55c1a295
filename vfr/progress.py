"""Progress bars for long work (rich), on stderr so piped output stays clean; silent when disabled."""
from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress as _Rich, TextColumn, TimeElapsedColumn, \
    TimeRemainingColumn

from vfr.common import console


class Progress:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bar = _Rich(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
                          disable=not enabled)

    def __enter__(self) -> "Progress":
        self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.__exit__(*exc)

    def add(self, description: str, total: int | None) -> int:
        return self._bar.add_task(description, total=total)

    def advance(self, task: int, n: int = 1) -> None:
        self._bar.advance(task, n)

    def callback(self):
        """A `progress(stage, advance, total)` function for lower layers (one bar per stage)."""
        tasks: dict[str, int] = {}

        def report(stage: str, advance: int, total: int | None = None) -> None:
            if stage not in tasks:
                tasks[stage] = self.add(stage, total)
            elif total is not None:
                self._bar.update(tasks[stage], total=total)
            if advance:
                self.advance(tasks[stage], advance)
        return report
