"""The ``cotscope`` command line."""

from cotscope.cli._app import app
from cotscope.cli import _core, _demo  # noqa: F401  (registers commands)
from cotscope.cli import _run  # noqa: F401
from cotscope.cli import _judge  # noqa: F401
from cotscope.cli import _generate  # noqa: F401
from cotscope.cli._cot2 import cot2_app; app.add_typer(cot2_app, name="cot2")  # noqa: E702


def main() -> None:
    """Entry point of the ``cotscope`` command."""
    app()


__all__ = ["app", "main"]
