"""The sandbox protocol: one isolated episode in which an agent's shell commands run.

A :class:`SandboxProvider` (``namespace``, ``docker``, ...) starts :class:`Sandbox` episodes. An episode
has a persistent terminal (the agent's shell: ``cd`` and variables persist between commands, as in the
paper's VM terminal) and can also run one-off commands (task setup, checker commands) in a fresh shell.
Commands run as the unprivileged user ``user`` (password ``password``, sudo allowed) unless
``user="root"``. Everything an episode creates is torn down by :meth:`Sandbox.close`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from cotscope._registry import Registry


class SandboxLimits(BaseModel):
    """Limits of one episode. Exceeding one stops the command or the episode; it never reaches the host."""

    command_timeout_s: float = Field(default=60.0, gt=0, description="wall time of one command")
    episode_timeout_s: float = Field(default=900.0, gt=0, description="wall time of the whole episode")
    memory_mb: int = Field(default=1024, gt=0, description="memory of all processes of the episode")
    pids: int = Field(default=256, gt=0, description="processes and threads of the episode at once")
    disk_mb: int = Field(default=512, gt=0, description="what the episode may write (its copy-on-write layer)")
    output_chars: int = Field(default=20_000, gt=0, description="command output kept (head and tail beyond it)")


class CommandResult(BaseModel):
    """What one command printed (stdout and stderr interleaved, as a terminal shows them) and how it ended."""

    command: str
    output: str = ""
    exit_code: int | None = Field(default=None, description="None when the command was stopped")
    timed_out: bool = False
    duration_s: float = 0.0


@runtime_checkable
class Sandbox(Protocol):
    """One running episode."""

    #: The provider's name, e.g. ``namespace``.
    provider: str

    async def run(
        self, command: str, *, timeout: float | None = None, session: bool = True, user: str = "user"
    ) -> CommandResult:
        """Run ``command`` and return its output.

        Args:
            command: shell text, run by bash.
            timeout: seconds before the command is stopped (default: the limits' ``command_timeout_s``).
            session: run in the persistent terminal (True) or in a fresh login shell (False).
            user: ``user`` or ``root``.
        """
        ...

    async def close(self) -> None:
        """Stop every process of the episode and remove its layer, mounts and limits. Idempotent."""
        ...


@runtime_checkable
class SandboxProvider(Protocol):
    """Starts episodes."""

    name: str

    def available(self) -> str | None:
        """None when episodes can start on this machine, else the reason they cannot."""
        ...

    async def start(self, limits: SandboxLimits | None = None) -> Sandbox:
        """Start one episode (a fresh layer over the root file system)."""
        ...

    def config(self) -> dict[str, Any]:
        """What changes behaviour (root file system, masks): recorded with results."""
        ...


def _load_builtins() -> None:
    from cotscope.agents import _docker, _namespace  # noqa: F401


#: Sandbox providers by name; a factory is called with the provider's options.
SANDBOXES: Registry[SandboxProvider] = Registry("sandbox", loader=_load_builtins)


def sandbox(name: str) -> Callable[[Callable[..., SandboxProvider]], Callable[..., SandboxProvider]]:
    """Register a sandbox provider factory: ``@sandbox("namespace")``."""
    return SANDBOXES.register(name)


def get_sandbox(name: str = "namespace", **options: Any) -> SandboxProvider:
    """Build a sandbox provider by name (``namespace`` or ``docker``)."""
    return SANDBOXES.get(name, **options)
