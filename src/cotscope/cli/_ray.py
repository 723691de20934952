"""The ``--ray`` and ``--ray-workers`` options shared by the commands whose stage can fan out over a Ray cluster."""

from __future__ import annotations

from typing import Annotated

import typer

# cotscope.pipeline._executor.RAY_ENV, spelled out: importing the pipeline here would load it for every command.
RAY_ENV = "COTSCOPE_RAY"

RayOpt = Annotated[str | None, typer.Option(
    "--ray", envvar=RAY_ENV, show_envvar=True,
    help="Fan the work out over a Ray cluster: auto (the cluster `ray start` made here), HOST:PORT, ray://HOST:PORT, "
    "or local (a private one-machine cluster). Workers build their own backends (`{node_ip}` in --model-base-url "
    "names each worker's node); this process alone writes the store. Needs cotscope[ray].")]
RayWorkersOpt = Annotated[int | None, typer.Option(
    "--ray-workers", min=1, help="Ray workers (actors), each with its own backend (default: one per node).")]


def check_ray(address: str | None) -> None:
    """One clear error line when ``--ray`` is given and Ray is not installed (before any work starts)."""
    import importlib.util

    from cotscope.cli._app import fail

    if address and importlib.util.find_spec("ray") is None:
        fail(f"--ray {address}: Ray is not installed; pip install 'cotscope[ray]'")
