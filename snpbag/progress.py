"""One progress bar for every long command (rich, on stderr, with ETA and rate)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def progress_bar(*, total: int, description: str, unit: str = "items", enabled: bool = True
                 ) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; a no-op when ``enabled`` is False. Off a terminal (logs, SLURM)
    the bar is not drawn, so job logs do not fill with redraws and an error raised while it
    runs stays the only line on stderr."""
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    console = Console(file=sys.stderr)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[rate]}"),
                  TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console,
                  disable=not console.is_terminal) as prog:
        task = prog.add_task(description, total=total, rate="")

        def advance(n: int) -> None:
            prog.advance(task, n)
            speed = prog.tasks[task].speed
            if speed:
                prog.update(task, rate=f"{speed:.1f} {unit}/s")

        yield advance
