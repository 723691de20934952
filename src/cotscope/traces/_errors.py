"""Errors raised while reading traces."""

from __future__ import annotations

from typing import Any

from cotscope.errors import DataError


class RecordError(DataError):
    """A record that cannot be read as a trace, with where it is and what is wrong."""

    def __init__(self, error: str, source: str | None = None, line: int | None = None) -> None:
        self.error = error
        self.source = source
        self.line = line
        where = f"{source}:{line}: " if source is not None and line is not None else ""
        super().__init__(f"{where}{error}")

    def to_dict(self) -> dict[str, Any]:
        """The error as ``{"source", "line", "error"}``."""
        return {"source": self.source, "line": self.line, "error": self.error}


class TraceFileError(DataError, OSError):
    """A file that cannot be read at all (missing, unreadable, or of an unknown format)."""
