"""The one progress-bar layout every long loop uses (CLI commands and the generation engine)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def make_progress(console: Console | None = None, *, disable: bool = False) -> Progress:
    """A rich progress bar: spinner, description, bar, done/total, a free ``info`` field, times.

    Tasks must be added with an ``info`` field (``add_task(..., info="")``).
    """
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=disable,
        transient=False,
    )
