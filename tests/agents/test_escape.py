"""The escape suite: what an agent tries in an episode must fail or be stopped, and the host must not change.

Every check is made on the host after the attempt (files, processes, sockets, disk, cgroups, mounts), as
user and as root (``sudo`` inside works, as in the paper's VM). These run on the ``namespace`` provider,
which is what this repository's tests can start; they skip with the reason where it cannot run.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cotscope.agents._namespace import NamespaceProvider, NamespaceSandbox
from cotscope.agents._sandbox import SandboxLimits, SandboxProvider

LIMITS = SandboxLimits(command_timeout_s=10, episode_timeout_s=300)
SUDO = "echo password | sudo -S -p '' "


def in_episode(
    provider: SandboxProvider,
    body: Callable[[NamespaceSandbox], Awaitable[Any]],
    host: Any,
    limits: SandboxLimits = LIMITS,
) -> Any:
    """Run ``body`` in a fresh episode, close it, and check on the host that it left nothing behind."""

    async def main() -> Any:
        sb = await provider.start(limits)
        assert isinstance(sb, NamespaceSandbox)
        pidns = host.pidns_of(sb.pid1)
        try:
            return await body(sb)
        finally:
            await sb.close()
            assert host.leftovers(sb.episode_id, pidns) == []

    return asyncio.run(main())


def as_root(command: str) -> str:
    """``command`` run through sudo with the user's password, as an agent would."""
    return SUDO + "sh -c " + _quote(command)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- network -------------------------------------------------------------------------------------------------


@pytest.fixture
def tcp_server() -> Iterator[tuple[int, list[str]]]:
    """A TCP server on the host's 127.0.0.1; yields its port and the list of connections it accepted."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    accepted: list[str] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, addr = srv.accept()
            except OSError:
                continue
            accepted.append(str(addr))
            conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1], accepted
    stop.set()
    t.join(2)
    srv.close()


def test_no_network(namespace_provider: SandboxProvider, host: Any, tcp_server: tuple[int, list[str]]) -> None:
    port, accepted = tcp_server
    host_links = sorted(os.listdir("/sys/class/net"))

    async def body(sb: NamespaceSandbox) -> None:
        probe = f"exec 3<>/dev/tcp/127.0.0.1/{port} && echo CONNECTED"
        for cmd in (probe, as_root(probe)):
            r = await sb.run(cmd, timeout=5)
            assert "CONNECTED" not in r.output and r.exit_code != 0
        r = await sb.run("ls /sys/class/net; ip -o link | cut -d: -f2")
        assert r.output.split() == ["lo", "lo"]
        r = await sb.run("getent hosts deb.debian.org; echo rc=$?", timeout=5)
        assert "rc=0" not in r.output
        r = await sb.run("ping -c1 -W1 192.0.2.1; echo rc=$?", timeout=5)
        assert "rc=0" not in r.output
        # root may configure the network, but only the episode's own namespace
        r = await sb.run(
            as_root("ip addr add 10.254.254.254/32 dev lo && tc qdisc add dev lo root netem delay 1ms; ip -o addr")
        )
        assert "10.254.254.254" in r.output
        host_addrs = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, check=False).stdout
        assert "10.254.254.254" not in host_addrs
        assert sorted(os.listdir("/sys/class/net")) == host_links

    in_episode(namespace_provider, body, host)
    assert accepted == []


# -- files -----------------------------------------------------------------------------------------------------


def test_writes_stay_in_the_episode(namespace_provider: SandboxProvider, host: Any, tmp_path: Path) -> None:
    marker = f"cotscope-escape-{secrets.token_hex(4)}"
    (tmp_path / "keep.txt").write_text("host data\n")
    before_tmp = sorted(p.name for p in tmp_path.iterdir())
    ls_digest = digest(Path("/usr/bin/ls"))
    passwd_digest = digest(Path("/etc/passwd"))
    work = Path(__file__).resolve().parents[2]
    targets = [f"/{marker}", f"/etc/{marker}", f"/usr/{marker}", f"{tmp_path}/{marker}", f"{work}/{marker}"]

    async def body(sb: NamespaceSandbox) -> None:
        for t in targets:
            r = await sb.run(f"echo x > {t}")
            assert r.exit_code != 0  # as user: no permission (or the directory is not there)
            r = await sb.run(as_root(f"mkdir -p {os.path.dirname(t)} && echo x > {t} && cat {t}"))
            assert r.output.strip() == "x"  # as root: written, but into the episode's layer
        r = await sb.run(as_root(f"rm -f /usr/bin/ls; echo evil >> /etc/passwd; rm -rf {tmp_path}; echo done"))
        assert r.output.strip().endswith("done")
        assert (await sb.run("ls /")).exit_code != 0  # gone inside

    in_episode(namespace_provider, body, host)
    for t in targets:
        assert not os.path.lexists(t), t
    assert sorted(p.name for p in tmp_path.iterdir()) == before_tmp
    assert (tmp_path / "keep.txt").read_text() == "host data\n"
    assert digest(Path("/usr/bin/ls")) == ls_digest and digest(Path("/etc/passwd")) == passwd_digest


def test_masked_host_paths_are_not_readable(
    namespace_provider: SandboxProvider, host: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = f"SECRET-{secrets.token_hex(8)}"
    other_home = Path(f"/home/cotscope-test-{secrets.token_hex(3)}")
    planted = [Path(f"/root/cotscope-test-{secrets.token_hex(3)}"), other_home / "secret.txt"]
    planted_late = Path(f"/root/cotscope-late-{secrets.token_hex(3)}")
    monkeypatch.setenv("COTSCOPE_TEST_SECRET", secret)
    host_shadow = Path("/etc/shadow").read_text()
    try:
        other_home.mkdir()
        for p in planted:
            p.write_text(secret + "\n")

        async def body(sb: NamespaceSandbox) -> None:
            planted_late.write_text(secret + "\n")  # appears on the host after the episode started
            for p in [*planted, planted_late]:
                r = await sb.run(as_root(f"cat {p}"))
                assert secret not in r.output and r.exit_code != 0
            r = await sb.run(as_root("ls -A /root /home; ls /work /old_root 2>&1; cat /proc/1/environ; env"))
            assert secret not in r.output and "cotscope-test" not in r.output and "cotscope-late" not in r.output
            r = await sb.run(as_root("grep -rs " + secret + " /root /home /tmp /var/tmp /opt /mnt /srv /run /etc"))
            assert secret not in r.output
            shadow = (await sb.run(as_root("cat /etc/shadow"))).output
            assert shadow != host_shadow and "user:$6$" in shadow
            r = await sb.run(as_root("ls /etc/ssh/ | grep _key; cat /proc/kcore | head -c 16 | wc -c"))
            assert "_key" not in r.output and r.output.split()[-1] == "0"

        in_episode(namespace_provider, body, host)
    finally:
        for p in [*planted, planted_late]:
            p.unlink(missing_ok=True)
        shutil.rmtree(other_home, ignore_errors=True)


# -- processes -------------------------------------------------------------------------------------------------


def test_host_processes_are_invisible_and_unsignalable(namespace_provider: SandboxProvider, host: Any) -> None:
    victim = subprocess.Popen(["sleep", "60"])
    try:

        async def body(sb: NamespaceSandbox) -> None:
            r = await sb.run("ps -e -o pid=,args=")
            lines = r.output.strip().splitlines()
            assert len(lines) <= 4 and "pytest" not in r.output and "sleep 60" not in r.output
            for pid in (os.getpid(), victim.pid):
                r = await sb.run(as_root(f"kill -9 {pid}; cat /proc/{pid}/cmdline; ls /proc/{pid}/root/"))
                assert r.exit_code != 0
            r = await sb.run(as_root("kill -9 -1; echo survived"))  # every process it may signal
            assert victim.poll() is None
            # PID 1 of the episode ignores signals from inside, so the episode goes on
            assert (await sb.run("echo still here")).output.strip() == "still here"

        in_episode(namespace_provider, body, host)
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


def test_root_cannot_mount_or_leave(namespace_provider: SandboxProvider, host: Any) -> None:
    attempts = [
        "mount -t tmpfs none /mnt",
        "mount --bind / /mnt",
        "umount -l /proc",
        "mount -o remount,rw /proc/sys",
        "mkdir -p /new && cd /new && pivot_root . .",
        "nsenter -t 1 -m -p -n true",
        "nsenter --mount=/proc/1/ns/mnt true",
        "chroot /proc/1/root ls /work",
        "mknod /tmp/disk b 8 0",
        "hostname evil",
        "date -s '2001-01-01'",
        "echo 1 > /proc/sys/kernel/sysrq",
        "echo h > /proc/sysrq-trigger",
        "modprobe dummy",
        "ls /old_root /.oldroot /proc/1/root/work",
    ]

    async def body(sb: NamespaceSandbox) -> None:
        for cmd in attempts:
            r = await sb.run(as_root(cmd), timeout=5)
            assert r.exit_code != 0, f"{cmd!r} succeeded: {r.output}"
        r = await sb.run(as_root("grep CapBnd /proc/self/status; cd / && cd .. && cd .. && ls"))
        bounding = int(r.output.split()[1], 16)
        assert not bounding & (1 << 21)  # CAP_SYS_ADMIN
        assert "work" not in r.output.split()
        # a user namespace inside gives root over nothing the host has
        r = await sb.run("unshare -Urm sh -c 'mount -t tmpfs none /mnt && ls / && ls /proc/1/root/'")
        assert "work" not in r.output.split()
        # the one-off commands start inside the episode too
        r = await sb.run("cd .. && cd .. && ls; readlink /proc/self/cwd", session=False, user="root")
        assert "work" not in r.output.split() and r.output.strip().endswith("/")

    in_episode(namespace_provider, body, host)
    assert socket.gethostname() != "evil"


# -- resources -------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_fork_bomb_is_contained(namespace_provider: SandboxProvider, host: Any) -> None:
    limits = LIMITS.model_copy(update={"pids": 64})

    async def body(sb: NamespaceSandbox) -> None:
        bomb = sb.run("bomb() { bomb | bomb & }; bomb; sleep 3", timeout=3)
        task = asyncio.ensure_future(bomb)
        await asyncio.sleep(1.5)
        inside = len(host.processes_in(host.pidns_of(sb.pid1)))
        assert inside <= 64
        assert subprocess.run(["true"], check=False).returncode == 0  # the host still forks
        await task

    t0 = time.monotonic()
    in_episode(namespace_provider, body, host, limits)
    assert time.monotonic() - t0 < 30


@pytest.mark.slow
def test_filling_the_disk_stops_at_the_limit(namespace_provider: SandboxProvider, host: Any) -> None:
    limits = LIMITS.model_copy(update={"disk_mb": 48})
    free_before = shutil.disk_usage("/").free

    async def body(sb: NamespaceSandbox) -> None:
        r = await sb.run("dd if=/dev/zero of=~/fill bs=1M count=200; df -m / | tail -1", timeout=30)
        assert "No space left on device" in r.output
        r = await sb.run(as_root("dd if=/dev/zero of=/var/fill bs=1M count=200; dd if=/dev/zero of=/dev/shm/f bs=1M"))
        assert "writing '/var/fill': No space" in r.output and "writing '/dev/shm/f': No space" in r.output
        assert shutil.disk_usage("/").free > free_before - 32 * 1024 * 1024
        await sb.run(as_root("rm -f /var/fill ~user/fill"))
        assert (await sb.run("echo works > ~/small && cat ~/small")).output.strip() == "works"

    in_episode(namespace_provider, body, host, limits)


@pytest.mark.slow
def test_memory_hog_is_killed(namespace_provider: SandboxProvider, host: Any) -> None:
    limits = LIMITS.model_copy(update={"memory_mb": 128})

    async def body(sb: NamespaceSandbox) -> None:
        r = await sb.run("python3 -c 'x = b\"a\" * (1024 ** 3); print(len(x))'", timeout=30)
        assert r.exit_code not in (0, None) and str(1024**3) not in r.output
        r = await sb.run("head -c 2G /dev/zero | tail > /dev/null; echo rc=${PIPESTATUS[1]}", timeout=30)
        assert "rc=0" not in r.output
        assert (await sb.run("echo alive")).output.strip() == "alive"

    in_episode(namespace_provider, body, host, limits)


def test_commands_that_never_end_are_stopped(namespace_provider: SandboxProvider, host: Any) -> None:
    async def body(sb: NamespaceSandbox) -> None:
        await sb.run("cd /tmp")
        r = await sb.run("sleep infinity", timeout=1)
        assert r.timed_out
        assert (await sb.run("pwd")).output.strip() == "/tmp"  # the shell survived
        r = await sb.run("while :; do :; done", timeout=1)  # a builtin loop: only a new shell stops it
        assert r.timed_out and "new one was started" in r.output
        assert (await sb.run("pwd")).output.strip() == "/home/user"
        r = await sb.run("(trap '' TERM INT HUP; while :; do sleep 0.1; done) & wait", timeout=1)
        assert r.timed_out
        r = await sb.run("sleep 0.3; ps -e -o args=")
        assert "sleep 0.1" not in r.output and r.exit_code == 0
        # what an earlier command left running on purpose survives a later timeout
        await sb.run("sleep 1234 &")
        await sb.run("sleep infinity", timeout=1)
        assert "sleep 1234" in (await sb.run("ps -e -o args=")).output

    in_episode(namespace_provider, body, host)


# -- a killed run ----------------------------------------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import asyncio, json, os, sys
    from cotscope.agents._sandbox import get_sandbox

    async def main():
        sb = await get_sandbox("namespace").start()
        await sb.run("sleep 1000 & (sleep 1001 &); echo password | sudo -S sh -c 'sleep 1002 &'")
        await sb.run("sleep 1003 &", session=False)
        info = {"id": sb.episode_id, "pid1": sb.pid1, "pidns": os.readlink(f"/proc/{sb.pid1}/ns/pid")}
        print(json.dumps(info), flush=True)
        await asyncio.sleep(1000)

    asyncio.run(main())
    """
)


@pytest.mark.slow
def test_sigkilled_python_leaves_nothing_behind(namespace_provider: SandboxProvider, host: Any) -> None:
    child = subprocess.Popen([sys.executable, "-c", _CHILD], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    info = json.loads(child.stdout.readline())
    assert len(host.processes_in(info["pidns"])) >= 5
    child.send_signal(signal.SIGKILL)
    child.wait()
    deadline = time.monotonic() + 10
    while host.processes_in(info["pidns"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert host.processes_in(info["pidns"]) == []
    # A killed run can only leave empty cgroups; a provider sweeps them when it starts (those older than a
    # minute, as a group just made by another process is empty for a moment; here: at once).
    left = host.leftovers(info["id"], info["pidns"])
    assert all(item.startswith("cgroup ") for item in left), left
    layout = NamespaceProvider().cgroups
    if layout is not None:
        layout.sweep(min_age_s=0)
    assert host.leftovers(info["id"], info["pidns"]) == []


_UNCLOSED = textwrap.dedent(
    """
    import asyncio, json, os
    from cotscope.agents._sandbox import get_sandbox

    async def main():
        sb = await get_sandbox("namespace").start()
        await sb.run("sleep 1000 &")
        print(json.dumps({"id": sb.episode_id, "pidns": os.readlink(f"/proc/{sb.pid1}/ns/pid")}), flush=True)

    asyncio.run(main())  # exits without closing the episode
    """
)


def test_an_episode_never_closed_is_cleaned_at_exit(namespace_provider: SandboxProvider, host: Any) -> None:
    out = subprocess.run([sys.executable, "-c", _UNCLOSED], capture_output=True, text=True, timeout=60, check=True)
    info = json.loads(out.stdout.splitlines()[-1])
    deadline = time.monotonic() + 10
    while host.leftovers(info["id"], info["pidns"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert host.leftovers(info["id"], info["pidns"]) == []
