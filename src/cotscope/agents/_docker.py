"""The ``docker`` sandbox provider: the same episodes in a Docker container, for machines with a daemon.

Everything goes through the ``docker`` command line, so a remote daemon (``DOCKER_HOST``, a context) works
too. One episode is one container started with ``--network none``, the same capability set as the
``namespace`` provider, ``--memory``/``--pids-limit`` from the limits and ``--init`` (so orphans are
reaped); commands enter it with ``docker exec`` and speak the same terminal protocol
(:class:`cotscope.agents._namespace.ShellEpisode`). The image needs ``bash``, ``sudo``, coreutils and the
user ``user`` (password ``password``, in group ``sudo``): by default it is imported once from the root
file system that ``cotscope agent rootfs build`` made. The disk limit is only enforced where the storage
driver takes ``--storage-opt size=`` (``storage_opt=True``); see ``docs/sandbox.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from cotscope.agents._namespace import (
    SANDBOX_CAPABILITIES,
    SANDBOX_HOSTNAME,
    SANDBOX_USER,
    ShellEpisode,
    _env,
    resolve_rootfs,
)
from cotscope.agents._sandbox import SandboxLimits, sandbox
from cotscope.errors import BackendError, ConfigError

__all__ = ["DockerProvider", "DockerSandbox", "docker"]

# Kills every descendant of the PIDs given as arguments (not the PIDs themselves), reading /proc with
# shell builtins only: the command that timed out may have used up the episode's processes.
_KILL_DESCENDANTS = r"""roots=" $* "; found=" "
while :; do
  new=""
  for s in /proc/[0-9]*/stat; do
    read -r line < "$s" 2>/dev/null || continue
    pid=${line%% *}; rest=${line##*) }; set -- $rest
    case "$roots$found" in *" $2 "*) case "$found" in *" $pid "*) ;; *) new="$new$pid ";; esac;; esac
  done
  [ -z "$new" ] && break
  found="$found$new"
done
[ "$found" = " " ] || kill -9 $found 2>/dev/null
exit 0
"""


def _cli_env() -> dict[str, str]:
    """The docker CLI's own environment: where the daemon is, never the caller's other variables."""
    env = {k: v for k, v in os.environ.items() if k.startswith("DOCKER_")}
    env["PATH"] = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    if "HOME" in os.environ:
        env["HOME"] = os.environ["HOME"]
    return env


class DockerSandbox(ShellEpisode):
    """One running episode of the ``docker`` provider: one container.

    Attributes:
        provider: ``docker``.
        container: the container's name.
        limits: the episode's limits.
    """

    provider = "docker"

    def __init__(self, cli: str, container: str, limits: SandboxLimits) -> None:
        super().__init__(limits)
        self._cli = cli
        self.container = container

    def _launch(self, user: str, cwd: str) -> list[str]:
        argv = [self._cli, "exec", "-i", "-u", user, "-w", cwd]
        for key, value in _env(user, cwd).items():
            argv += ["-e", f"{key}={value}"]
        return [*argv, self.container]

    def _launcher_env(self, user: str, home: str) -> dict[str, str]:
        return _cli_env()

    def _oneoff_program(self, command: str, limit: float) -> list[str]:
        # Killing the docker client does not stop what runs inside; timeout(1) kills its process group.
        return ["timeout", "-s", "KILL", f"{limit:g}s", "bash", "-lc", command]

    async def _stop_new(self, before: Any, keep: set[int]) -> None:
        # The terminal's command is what its shell started: everything below the shells.
        if keep - {0}:
            await self._kill_inside(sorted(keep - {0}))

    async def _stop_tree(self, pid: int) -> None:
        await self._kill_inside([pid])

    async def _kill_inside(self, roots: list[int]) -> None:
        proc = await asyncio.create_subprocess_exec(
            self._cli,
            "exec",
            "-u",
            "root",
            self.container,
            "sh",
            "-c",
            _KILL_DESCENDANTS,
            "sh",
            *map(str, roots),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env=_cli_env(),
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 30)

    async def close(self) -> None:
        """Remove the container (``docker rm -f``) and every process in it. Idempotent.

        Raises:
            BackendError: the docker CLI could not remove the container.
        """
        if self._closed:
            return
        self._closed = True
        proc = await asyncio.create_subprocess_exec(
            self._cli,
            "rm",
            "-f",
            self.container,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=_cli_env(),
        )
        _out, err = await proc.communicate()
        await self._close_shells()
        if proc.returncode != 0 and b"No such container" not in err:
            raise BackendError(f"docker rm -f {self.container} failed: {err.decode(errors='replace').strip()}")

    async def __aenter__(self) -> DockerSandbox:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class DockerProvider:
    """Starts ``docker`` episodes.

    Args:
        image: the image to run; it must have bash, sudo, coreutils and the user ``user`` (password
            ``password``, in group ``sudo``). Default: ``cotscope-sandbox:<rootfs>``, imported once from
            the root file system ``rootfs`` built by ``cotscope agent rootfs build``.
        rootfs: the built root file system to import when ``image`` is not given (a name or a path).
        cli: the docker command (``docker``, or ``podman`` which takes the same options).
        storage_opt: pass ``--storage-opt size=<disk_mb>M`` (only some storage drivers take it; without
            it the disk limit is not enforced).
        run_args: more ``docker run`` options (e.g. ``--runtime=runsc`` for gVisor).
    """

    name = "docker"

    def __init__(
        self,
        image: str | None = None,
        rootfs: str = "default",
        cli: str = "docker",
        storage_opt: bool = False,
        run_args: Sequence[str] = (),
    ) -> None:
        if image is not None and not image.strip():
            raise ConfigError("the docker sandbox's image name is empty")
        self.image = image or f"cotscope-sandbox:{os.path.basename(rootfs.rstrip('/')) or 'default'}"
        self.rootfs = rootfs
        self.cli = cli
        self.storage_opt = storage_opt
        self.run_args = tuple(run_args)
        self._imported = image is not None

    def available(self) -> str | None:
        """None when a Docker daemon answers, else why not (no CLI, no daemon)."""
        if shutil.which(self.cli) is None:
            return f"the {self.cli} command line is not installed"
        try:
            res = subprocess.run(
                [self.cli, "version", "--format", "{{.Server.Version}}"],
                capture_output=True,
                text=True,
                timeout=15,
                env=_cli_env(),
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"no Docker daemon answers ({exc})"
        if res.returncode != 0 or not res.stdout.strip():
            first = (res.stderr.strip().splitlines() or ["no server version"])[-1]
            return f"no Docker daemon answers ({first})"
        return None

    async def _ensure_image(self) -> None:
        if self._imported:
            return
        probe = await asyncio.create_subprocess_exec(
            self.cli,
            "image",
            "inspect",
            self.image,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env=_cli_env(),
        )
        if await probe.wait() != 0:
            root = resolve_rootfs(self.rootfs)
            if root is None:
                raise ConfigError("the docker sandbox needs an image or a built root file system, not 'host'")
            tar = f"tar -C {shlex.quote(str(root))} -c . | {shlex.quote(self.cli)} import - {shlex.quote(self.image)}"
            proc = await asyncio.create_subprocess_exec(
                "/bin/sh", "-c", tar, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=_cli_env()
            )
            out, _ = await proc.communicate()
            if proc.returncode != 0:
                raise BackendError(f"importing {root} as {self.image} failed: {out.decode(errors='replace')[-2000:]}")
        self._imported = True

    async def start(self, limits: SandboxLimits | None = None) -> DockerSandbox:
        """Start one episode: one container with no network.

        Raises:
            BackendError: no daemon, the image cannot be made, or the container does not start.
        """
        reason = self.available()
        if reason is not None:
            raise BackendError(reason)
        limits = limits or SandboxLimits()
        await self._ensure_image()
        name = f"cotscope-{secrets.token_hex(6)}"
        argv = [self.cli, "run", "-d", "--rm", "--name", name, "--label", "cotscope.sandbox=1", "--init"]
        argv += ["--network", "none", "--hostname", SANDBOX_HOSTNAME, "--ipc", "private"]
        argv += ["--memory", f"{limits.memory_mb}m", "--memory-swap", f"{limits.memory_mb}m"]
        argv += ["--pids-limit", str(limits.pids), "--cap-drop", "ALL"]
        argv += [f"--cap-add={c.upper()}" for c in SANDBOX_CAPABILITIES]
        argv += ["--shm-size", f"{min(64, limits.disk_mb)}m"]
        if self.storage_opt:
            argv += ["--storage-opt", f"size={limits.disk_mb}M"]
        argv += [*self.run_args, "--entrypoint", "sleep", self.image, "infinity"]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=_cli_env()
        )
        _out, err = await proc.communicate()
        if proc.returncode != 0:
            raise BackendError(f"docker run failed: {err.decode(errors='replace').strip()[-2000:]}")
        episode = DockerSandbox(self.cli, name, limits)
        try:
            check = await episode.run(f"id -u {SANDBOX_USER} && command -v sudo", session=False, timeout=30)
        except BaseException:
            await episode.close()
            raise
        if check.exit_code != 0:
            await episode.close()
            raise BackendError(f"image {self.image} lacks the user {SANDBOX_USER!r} or sudo: {check.output.strip()}")
        return episode

    def config(self) -> dict[str, Any]:
        """Image, capabilities and how the limits are enforced."""
        return {
            "provider": self.name,
            "image": self.image,
            "capabilities": list(SANDBOX_CAPABILITIES),
            "network": "none",
            "limits_by": "docker" + (" (disk by --storage-opt)" if self.storage_opt else " (disk not limited)"),
            "run_args": list(self.run_args),
            "user": SANDBOX_USER,
        }


@sandbox("docker")
def docker(
    image: str | None = None,
    rootfs: str = "default",
    cli: str = "docker",
    storage_opt: bool = False,
    run_args: Sequence[str] = (),
) -> DockerProvider:
    """The ``docker`` provider: one container per episode, through the docker command line."""
    return DockerProvider(image=image, rootfs=rootfs, cli=cli, storage_opt=storage_opt, run_args=run_args)
