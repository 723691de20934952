"""The ``cotscope`` command line."""

from cotscope.cli import _core, _demo, _generate, _judge, _run, _view  # noqa: F401  (each registers its commands)
from cotscope.cli._agent import agent_app
from cotscope.cli._app import app
from cotscope.cli._cot2 import cot2_app
from cotscope.cli._data import data_app
from cotscope.cli._guard import guard_app  # noqa: F401  (registers `cotscope guard` itself)
from cotscope.cli._train import train_app
from cotscope.cli._train_demo import demo_app
from cotscope.cli._verify import verify_app

app.add_typer(cot2_app, name="cot2")
app.add_typer(agent_app, name="agent")
app.add_typer(verify_app, name="verify")
app.add_typer(data_app, name="data")
train_app.add_typer(demo_app, name="demo")
app.add_typer(train_app, name="train")


def main() -> None:
    """Entry point of the ``cotscope`` command."""
    app()


__all__ = ["app", "main"]
