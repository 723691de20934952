"""The ``cotscope`` command line."""

from cotscope.cli._app import app
from cotscope.cli import _core  # noqa: F401  (registers commands)


def main() -> None:
    """Entry point of the ``cotscope`` command."""
    app()


__all__ = ["app", "main"]
