"""Sandbox fixtures: providers that skip with their reason, and checks made on the host (not assumed).

``namespace`` needs root, util-linux (``unshare``, ``nsenter``, ``setpriv``), overlayfs and ``sudo`` on the
host; ``docker`` needs a daemon that answers. Where one is missing its tests skip and say why.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from cotscope.agents._sandbox import SandboxProvider


@pytest.fixture(params=["namespace", "docker"])
def provider(request: pytest.FixtureRequest) -> SandboxProvider:
    """Each provider in turn (functional tests that every provider must pass); the providers themselves are the
    session fixtures ``namespace_provider`` and ``docker_provider`` of tests/conftest.py, which skip with why."""
    found: SandboxProvider = request.getfixturevalue(f"{request.param}_provider")
    return found


# -- host-side observations -------------------------------------------------------------------------------


def pidns_of(pid: int) -> str | None:
    """The PID namespace of a host process (``pid:[inode]``), or None if it is gone."""
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def host_processes_in(pidns: str) -> list[str]:
    """Host processes in the PID namespace ``pidns``, as ``PID cmdline``."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and pidns_of(int(name)) == pidns:
            try:
                cmd = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            found.append(f"{name} {cmd}")
    return found


def cgroup_dirs(episode_id: str) -> list[Path]:
    """Existing cgroup directories named ``episode_id`` under a ``cotscope`` group, in every hierarchy."""
    own: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _n, ctls, path = line.split(":", 2)
        for ctl in ctls.split(",") or [""]:
            own[ctl] = path
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields = right.split()
        if not fields or fields[0] not in ("cgroup", "cgroup2"):
            continue
        mountpoint = Path(left.split()[4])
        opts = fields[2].split(",") if len(fields) > 2 else []
        paths = {"/"} | {own[c] for c in opts if c in own} | ({own[""]} if "" in own else set())
        for p in paths:
            d = mountpoint / p.lstrip("/") / "cotscope" / episode_id
            if d.exists():
                found.append(d)
    return found


def leftovers(episode_id: str, pidns: str | None) -> list[str]:
    """Everything an episode left on the host: processes, mounts, cgroups, temp directories."""
    problems: list[str] = []
    if pidns is not None:
        problems += [f"process {p}" for p in host_processes_in(pidns)]
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if f"cotscope/{episode_id}" in Path(f"/proc/{name}/cgroup").read_text():
                    problems.append(f"process {name} in the episode's cgroup")
            except OSError:
                pass
    problems += [
        f"mount {line}" for line in Path("/proc/self/mountinfo").read_text().splitlines() if "cotscope" in line
    ]
    problems += [f"cgroup {d}" for d in cgroup_dirs(episode_id)]
    problems += [f"temp dir {d}" for d in Path(tempfile.gettempdir()).glob(f"cotscope-{episode_id}*")]
    return problems


class HostProbe:
    """What the tests observe on the host, independently of the sandbox's own bookkeeping."""

    pidns_of = staticmethod(pidns_of)
    processes_in = staticmethod(host_processes_in)
    cgroup_dirs = staticmethod(cgroup_dirs)
    leftovers = staticmethod(leftovers)


@pytest.fixture
def host() -> type[HostProbe]:
    """Host-side probes: ``host.leftovers(episode_id, pidns)`` is empty when an episode left nothing."""
    return HostProbe
