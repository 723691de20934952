"""The sandbox's terminal and its life cycle: what an agent and a checker rely on.

Functional tests run on every provider that can run here (``docker`` skips without a daemon); the
``namespace`` provider also gets tests of its options, its fallback and its clean-up. The escape suite is
in ``test_escape.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from cotscope.agents._namespace import (
    DEFAULT_MASKS,
    SANDBOX_CAPABILITIES,
    NamespaceProvider,
    NamespaceSandbox,
    resolve_rootfs,
)
from cotscope.agents._rootfs import ROOTFS_PACKAGES, apt_source, build_rootfs
from cotscope.agents._sandbox import SANDBOXES, Sandbox, SandboxLimits, SandboxProvider, get_sandbox
from cotscope.errors import BackendError, ConfigError

FAST = SandboxLimits(command_timeout_s=10, episode_timeout_s=120)


def in_episode(
    provider: SandboxProvider, body: Callable[[Sandbox], Awaitable[Any]], limits: SandboxLimits = FAST
) -> Any:
    """Start an episode, run ``body`` in it, close it whatever happens."""

    async def main() -> Any:
        sb = await provider.start(limits)
        try:
            return await body(sb)
        finally:
            await sb.close()

    return asyncio.run(main())


# -- every provider ----------------------------------------------------------------------------------------


def test_terminal_keeps_cwd_and_variables(provider: SandboxProvider) -> None:
    async def body(sb: Sandbox) -> None:
        first = await sb.run("pwd")
        assert first.output.strip() == "/home/user" and first.exit_code == 0
        await sb.run("cd /etc && export COTSCOPE_X=42 && alias ll='echo aliased'")
        r = await sb.run("pwd; echo $COTSCOPE_X; ll")
        assert r.output.split() == ["/etc", "42", "aliased"]
        # stdout and stderr come interleaved, in order
        r = await sb.run("echo out; echo err >&2; echo out2")
        assert r.output.split() == ["out", "err", "out2"]
        # a command cannot read the terminal's input stream
        r = await sb.run("cat; echo after-cat")
        assert r.output.strip() == "after-cat"

    in_episode(provider, body)


def test_any_command_text_reaches_the_shell_unchanged(provider: SandboxProvider) -> None:
    """Backslashes, quotes, %, printf escapes, newlines, tabs and UTF-8 survive the one-line terminal protocol."""
    text = "a\\b \\c \\x41 %s %% 'q' \"d\" $HOME\ttab é→漢"

    async def body(sb: Sandbox) -> None:
        r = await sb.run(f"cat <<'EOF'\n{text}\nEOF")
        assert r.output == text + "\n" and r.exit_code == 0
        r = await sb.run("printf '%s\\n' one \\\n  two")  # a continued line
        assert r.output.split() == ["one", "two"]

    in_episode(provider, body)


def test_exit_codes_and_exit_restarts_the_shell(provider: SandboxProvider) -> None:
    async def body(sb: Sandbox) -> None:
        assert (await sb.run("false")).exit_code == 1
        assert (await sb.run("(exit 7)")).exit_code == 7
        assert (await sb.run("echo 'unclosed")).exit_code == 2  # a syntax error is the command's, not ours
        await sb.run("cd /tmp")
        r = await sb.run("echo bye; exit 3")
        assert r.exit_code == 3 and "bye" in r.output and "new one was started" in r.output
        r = await sb.run("pwd")
        assert r.output.strip() == "/home/user" and r.exit_code == 0

    in_episode(provider, body)


def test_user_host_name_and_clean_environment(provider: SandboxProvider, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-host-secret-should-not-leak")

    async def body(sb: Sandbox) -> None:
        r = await sb.run("id -un; id -Gn; hostname; echo $HOME")
        name, groups, hostname, home = r.output.splitlines()
        assert name == "user" and "sudo" in groups.split() and hostname == "sandbox" and home == "/home/user"
        for session in (True, False):
            env = (await sb.run("env", session=session)).output
            assert "sk-host-secret" not in env and "OPENAI_API_KEY" not in env
        root = await sb.run("id -u; pwd", session=False, user="root")
        assert root.output.split() == ["0", "/root"]
        await sb.run("cd /etc", user="root")  # root has a terminal of its own
        assert (await sb.run("id -u; pwd", user="root")).output.split() == ["0", "/etc"]
        assert (await sb.run("pwd")).output.strip() == "/home/user"  # the user's terminal is its own

    in_episode(provider, body)


def test_sudo_takes_password_and_refuses_a_wrong_one(provider: SandboxProvider) -> None:
    async def body(sb: Sandbox) -> None:
        wrong = await sb.run("echo nope | sudo -S -k id -u")
        assert wrong.exit_code != 0 and "incorrect password" in wrong.output
        right = await sb.run("echo password | sudo -S -k id -u")
        assert right.exit_code == 0 and right.output.strip().endswith("0")

    in_episode(provider, body)


def test_one_off_commands_run_in_a_fresh_login_shell(provider: SandboxProvider) -> None:
    async def body(sb: Sandbox) -> None:
        await sb.run("cd /tmp && export ONLY_IN_TERMINAL=1")
        r = await sb.run("pwd; echo x${ONLY_IN_TERMINAL}x; exit 4", session=False)
        assert r.output.split() == ["/home/user", "xx"] and r.exit_code == 4
        assert (await sb.run("pwd")).output.strip() == "/tmp"  # the terminal is untouched
        r = await sb.run("echo data > /root/f && cat /root/f", session=False, user="root")
        assert r.output.strip() == "data"
        # a one-off that leaves a background process behind still returns promptly
        t0 = time.monotonic()
        r = await sb.run("sleep 30 & echo started", session=False)
        assert r.output.strip() == "started" and time.monotonic() - t0 < 5

    in_episode(provider, body)


def test_output_is_cut_to_the_limit_keeping_head_and_tail(provider: SandboxProvider) -> None:
    limits = FAST.model_copy(update={"output_chars": 1000})

    async def body(sb: Sandbox) -> None:
        for session in (True, False):
            r = await sb.run("echo HEAD; head -c 300000 /dev/zero | tr '\\0' a; echo; echo TAIL", session=session)
            assert r.output.startswith("HEAD") and r.output.rstrip().endswith("TAIL")
            assert "characters of output cut" in r.output and len(r.output) < 1200
            assert r.exit_code == 0

    in_episode(provider, body, limits)


def test_command_and_episode_time_limits(provider: SandboxProvider) -> None:
    limits = FAST.model_copy(update={"episode_timeout_s": 4.0})

    async def body(sb: Sandbox) -> None:
        t0 = time.monotonic()  # the episode's clock started just before
        r = await sb.run("sleep 30", timeout=1)
        assert r.timed_out and r.exit_code is None and "timed out" in r.output
        assert (await sb.run("echo alive")).output.strip() == "alive"
        r = await sb.run("sleep 30", timeout=1, session=False)
        assert r.timed_out and r.exit_code is None
        await asyncio.sleep(max(0.0, 4.1 - (time.monotonic() - t0)))
        r = await sb.run("echo never")
        assert r.timed_out and "never" not in r.output and "time limit" in r.output

    in_episode(provider, body, limits)


def test_concurrent_episodes_are_isolated(provider: SandboxProvider) -> None:
    async def main() -> None:
        eps = await asyncio.gather(*(provider.start(FAST) for _ in range(3)))
        try:
            await asyncio.gather(*(sb.run(f"echo {i} > /tmp/mine; sleep 100{i} &") for i, sb in enumerate(eps)))
            outs = await asyncio.gather(*(sb.run("cat /tmp/mine; ls /tmp") for sb in eps))
            for i, r in enumerate(outs):
                assert r.output.split() == [str(i), "mine"]
            ps = await asyncio.gather(*(sb.run("ps -e -o args=") for sb in eps))
            for i, r in enumerate(ps):
                sleeps = [line for line in r.output.splitlines() if line.startswith("sleep")]
                assert sleeps == [f"sleep 100{i}"]
        finally:
            await asyncio.gather(*(sb.close() for sb in eps))

    asyncio.run(main())


# -- the namespace provider --------------------------------------------------------------------------------


def test_registry_builds_providers_and_config_says_what_matters() -> None:
    assert {"namespace", "docker"} <= set(SANDBOXES.names())
    ns = get_sandbox("namespace")
    assert isinstance(ns, NamespaceProvider) and ns.name == "namespace"
    cfg = ns.config()
    assert cfg["rootfs"] == "host" and cfg["masks"] == list(DEFAULT_MASKS)
    assert cfg["capabilities"] == list(SANDBOX_CAPABILITIES) and "sys_admin" not in cfg["capabilities"]
    assert cfg["network"].startswith("none")
    assert get_sandbox("namespace", extra_masks=["/srv/x"]).config()["masks"][-1] == "/srv/x"
    docker = get_sandbox("docker")
    assert docker.name == "docker" and docker.config()["network"] == "none"


def test_bad_options_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="absolute"):
        NamespaceProvider(masks=["relative/path"])
    with pytest.raises(ConfigError, match="not found"):
        NamespaceProvider(rootfs="no-such-rootfs-name")
    weird = tmp_path / "a,b"
    weird.mkdir()
    with pytest.raises(ConfigError, match="overlayfs"):
        resolve_rootfs(weird)
    built = tmp_path / "built"
    (built / "root").mkdir(parents=True)
    (built / "manifest.json").write_text("{}")
    assert resolve_rootfs(built) == (built / "root").resolve()


def test_unavailable_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    reason = NamespaceProvider().available()
    assert reason is not None and "root" in reason
    with pytest.raises(BackendError, match="root"):
        asyncio.run(NamespaceProvider().start())


def test_docker_without_daemon_says_why() -> None:
    reason = get_sandbox("docker").available()
    if reason is None:
        pytest.skip("a Docker daemon answers here")
    assert "docker" in reason.lower() or "daemon" in reason.lower()


def test_bad_user_and_closed_episode(namespace_provider: SandboxProvider) -> None:
    async def main() -> None:
        sb = await namespace_provider.start(FAST)
        with pytest.raises(ConfigError):
            await sb.run("id", user="bob")
        await sb.close()
        await sb.close()  # idempotent
        with pytest.raises(BackendError, match="closed"):
            await sb.run("id")

    asyncio.run(main())


def test_a_setup_that_fails_is_reported_and_cleaned(
    namespace_provider: SandboxProvider, host: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cotscope.agents._namespace as ns

    monkeypatch.setattr(ns, "_SETUP", "echo 'mount: something went wrong' >&2; exit 3\n")
    made: list[NamespaceSandbox] = []
    real_init = ns.NamespaceSandbox.__init__

    def spy(self: NamespaceSandbox, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(ns.NamespaceSandbox, "__init__", spy)
    with pytest.raises(BackendError, match="something went wrong"):
        asyncio.run(namespace_provider.start(FAST))
    assert made and host.leftovers(made[0].episode_id, None) == []


def test_docker_kill_script_kills_descendants_only() -> None:
    from cotscope.agents._docker import _KILL_DESCENDANTS

    parent = subprocess.Popen(["sh", "-c", "sleep 100 & sleep 102 & wait; exit 5"])
    try:
        time.sleep(0.3)
        subprocess.run(["sh", "-c", _KILL_DESCENDANTS, "sh", str(parent.pid)], check=True, timeout=30)
        assert parent.wait(timeout=5) == 5  # its children were killed, it was not: its `wait` returned
    finally:
        parent.kill()
        parent.wait()


def test_orphans_are_reaped(namespace_provider: SandboxProvider, host: Any) -> None:
    async def body(sb: Sandbox) -> None:
        assert isinstance(sb, NamespaceSandbox)
        await sb.run("for i in 1 2 3 4 5; do (sleep 0.1 &); done; (echo password | sudo -S sh -c '(sleep 0.1 &)')")
        await asyncio.sleep(0.6)
        states = []
        for line in host.processes_in(host.pidns_of(sb.pid1)):
            pid = line.split()[0]
            with open(f"/proc/{pid}/stat") as f:
                states.append(f.read().rsplit(")", 1)[1].split()[0])
        assert "Z" not in states and len(states) <= 3  # PID 1, the shell, maybe nothing else

    in_episode(namespace_provider, body)


def test_rlimit_fallback_without_cgroups(namespace_provider: SandboxProvider, host: Any) -> None:
    provider = NamespaceProvider(cgroups=False)
    assert provider.config()["limits_by"].startswith("rlimits")
    limits = FAST.model_copy(update={"memory_mb": 256})

    async def body(sb: Sandbox) -> None:
        assert isinstance(sb, NamespaceSandbox)
        assert not host.cgroup_dirs(sb.episode_id)
        r = await sb.run("python3 -c 'x = bytearray(1024 * 1024 * 1024); print(len(x))'")
        assert r.exit_code != 0 and "MemoryError" in r.output
        assert (await sb.run("echo ok")).output.strip() == "ok"

    in_episode(provider, body, limits)


def test_close_leaves_nothing_and_reports_timing(namespace_provider: SandboxProvider, host: Any) -> None:
    async def main() -> dict[str, float]:
        t0 = time.monotonic()
        sb = await namespace_provider.start(FAST)
        started = time.monotonic() - t0
        assert isinstance(sb, NamespaceSandbox)
        pidns = host.pidns_of(sb.pid1)
        assert host.cgroup_dirs(sb.episode_id), "the episode runs in its own cgroups"
        await sb.run("true")  # starts the terminal
        t1 = time.monotonic()
        for _ in range(20):
            await sb.run("true")
        per_command = (time.monotonic() - t1) / 20
        t2 = time.monotonic()
        for _ in range(5):
            await sb.run("true", session=False)
        per_oneoff = (time.monotonic() - t2) / 5
        await sb.run("sleep 1000 & (sleep 1000 &)")
        t3 = time.monotonic()
        await sb.close()
        closed = time.monotonic() - t3
        assert host.leftovers(sb.episode_id, pidns) == []
        return {"start_s": started, "command_s": per_command, "oneoff_s": per_oneoff, "close_s": closed}

    timing = asyncio.run(main())
    print("namespace timing", json.dumps({k: round(v, 4) for k, v in timing.items()}))
    assert timing["start_s"] < 10 and timing["close_s"] < 10


def test_built_rootfs_when_present(host: Any) -> None:
    # The test cache is a fresh directory, so a built root file system is named by path.
    path = os.environ.get("COTSCOPE_TEST_ROOTFS")
    if not path:
        pytest.skip("COTSCOPE_TEST_ROOTFS does not name a root file system built by `cotscope agent rootfs build`")
    provider = NamespaceProvider(rootfs=path)
    reason = provider.available()
    if reason is not None:
        pytest.skip(reason)

    async def body(sb: Sandbox) -> None:
        r = await sb.run("cat /etc/debian_version; ls /; echo password | sudo -S -k id -u; command -v ip ping ufw")
        assert r.exit_code == 0 and "work" not in r.output.split() and "user: 0\n" in r.output
        assert (await sb.run("id -un")).output.strip() == "user"

    in_episode(provider, body)


# -- the root file system builder --------------------------------------------------------------------------


def test_apt_source_reads_deb822_and_one_line_formats(tmp_path: Path) -> None:
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm-updates bookworm\n"
        "Components: main contrib\nSigned-By: /usr/share/keyrings/k.gpg\n\n"
        "Types: deb-src\nURIs: http://src.example\nSuites: bookworm\nComponents: main\n"
    )
    src = apt_source(tmp_path)
    assert src is not None and (src.mirror, src.suite) == ("http://mirror.example/debian", "bookworm")
    assert src.keyring == "/usr/share/keyrings/k.gpg"
    (d / "debian.sources").unlink()
    (tmp_path / "sources.list").write_text("# c\ndeb [arch=amd64] http://old.example/debian bullseye main\n")
    src = apt_source(tmp_path)
    assert src is not None and (src.mirror, src.suite) == ("http://old.example/debian", "bullseye")
    (tmp_path / "sources.list").unlink()
    assert apt_source(tmp_path) is None


def test_build_rootfs_checks_names_and_keeps_an_existing_build(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        build_rootfs("../evil", cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="package"):
        build_rootfs("x", cache_dir=tmp_path, extra_packages=["bad name"], mirror="http://m", suite="s")
    existing = tmp_path / "rootfs" / "kept"
    (existing / "root").mkdir(parents=True)
    manifest = {"name": "kept", "created": "2025-01-01T00:00:00+00:00", "mirror": "m", "suite": "s", "variant": "v"}
    (existing / "manifest.json").write_text(json.dumps(manifest))
    res = build_rootfs("kept", cache_dir=tmp_path)
    assert not res.built and res.root == existing / "root" and res.manifest.suite == "s"
    assert "sudo" in ROOTFS_PACKAGES and "python3" in ROOTFS_PACKAGES
