"""How library code reports progress: a small protocol that the CLI draws with rich and notebooks ignore.

It sits at the root of the package (it imports nothing) so that every layer may report through it; only
``cotscope.cli`` turns it into progress bars.
"""

from __future__ import annotations

from typing import Protocol


class ProgressTask(Protocol):
    """One long loop being reported."""

    def advance(self, n: int = 1, info: str = "") -> None:
        """``n`` more units are done; ``info`` is a short status text (rates, error counts)."""
        ...

    def total(self, total: int | None) -> None:
        """The number of units, once known."""
        ...

    def done(self) -> None:
        """The loop ended (normally or not)."""
        ...


class Progress(Protocol):
    """Starts reported tasks. Stages take a ``Progress`` and never draw anything themselves."""

    def task(self, description: str, total: int | None = None) -> ProgressTask:
        """Begin reporting one loop."""
        ...


class _NullTask:
    def advance(self, n: int = 1, info: str = "") -> None:
        return None

    def total(self, total: int | None) -> None:
        return None

    def done(self) -> None:
        return None


class NullProgress:
    """Reports nothing: the default of every stage."""

    def task(self, description: str, total: int | None = None) -> ProgressTask:
        """A task that ignores every update."""
        return _NullTask()
