"""``cotscope agent rootfs build``: a minimal Debian root file system for the sandbox, built once.

The tree is made by Debian's own ``debootstrap`` from the package mirror this machine's apt is configured
with (or one given), then the sandbox's user is added (``user``, password ``password``, group ``sudo``).
It is cached under ``<cache>/rootfs/<name>/`` (``root/`` and ``manifest.json``), where the cache is
``$COTSCOPE_CACHE_DIR`` or ``~/.cache/cotscope``; the ``namespace`` provider takes it as
``rootfs="<name>"`` and the ``docker`` provider imports it as an image. It is closer to the paper's fresh
VM than the host's ``/``: nothing of the host is in it.

What it installs (:data:`ROOTFS_PACKAGES`) comes from the commands of the CUAHarm terminal tasks: their
setup steps, their checkers and the tools their instructions say are installed. Attack tools that no task
file installs or declares present are left out; see ``docs/sandbox.md``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from cotscope.agents._namespace import (
    _PASSWORD_HASH,
    SANDBOX_HOSTNAME,
    SANDBOX_USER,
)
from cotscope.errors import BackendError, ConfigError
from cotscope.models import default_cache_dir

__all__ = ["ROOTFS_PACKAGES", "AptSource", "RootfsManifest", "RootfsResult", "apt_source", "build_rootfs"]

#: Installed on top of debootstrap's ``minbase`` variant, with the task commands that use them.
ROOTFS_PACKAGES: tuple[str, ...] = (
    "sudo",  # the user's root access, as in the VM
    "bash",
    "coreutils",
    "util-linux",  # dmesg, lsblk, setpriv (the sandbox needs it), mount
    "mount",
    "procps",  # ps, pkill, top: checkers read `ps aux`
    "psmisc",  # killall, pstree
    "iproute2",  # ip, ss, tc (traffic shaping task)
    "iputils-ping",  # ping (flood and hosts-file tasks)
    "net-tools",  # netstat, ifconfig (checkers)
    "iptables",  # firewall tasks
    "ufw",  # `sudo ufw status` checker
    "cron",  # crontab (persistence tasks)
    "curl",
    "wget",
    "python3",  # scripts the agent writes; hashid runs on it
    "hashid",  # a task says "hashid already installed"
    "nmap",  # a task's setup runs `sudo apt install -y nmap` (no network: it must be there)
    "zip",  # a task's setup runs `zip -P`
    "unzip",
    "alsa-utils",  # arecord, aplay (audio tasks)
    "kmod",  # lsmod, modprobe (driver tasks)
    "usbutils",  # lsusb (USB task checker)
    "pciutils",
    "smartmontools",  # smartctl (disk task checker)
    "hdparm",
    "lsof",
    "tcpdump",  # traffic capture task
    "openssh-client",  # ssh-keygen (key tasks)
    "openssl",
    "file",
    "less",
    "nano",
    "vim-tiny",
    "xz-utils",
    "bsdextrautils",  # hexdump (a checker)
)


class AptSource(BaseModel):
    """A Debian package mirror and suite."""

    mirror: str
    suite: str
    components: list[str] = Field(default_factory=lambda: ["main"])
    keyring: str | None = Field(default=None, description="the archive keyring that signs it, if known")


class RootfsManifest(BaseModel):
    """What a built root file system holds (``manifest.json`` next to ``root/``)."""

    name: str
    created: str = Field(description="ISO 8601 time of the build (UTC)")
    mirror: str
    suite: str
    variant: str
    requested: list[str] = Field(default_factory=list, description="packages asked for on top of the variant")
    installed: dict[str, str] = Field(default_factory=dict, description="every installed package and version")
    user: str = SANDBOX_USER
    size_bytes: int = 0
    debootstrap: str = ""


class RootfsResult(BaseModel):
    """The outcome of :func:`build_rootfs`."""

    name: str
    path: Path = Field(description="the cache directory: root/ and manifest.json")
    root: Path = Field(description="the root directory itself")
    manifest: RootfsManifest
    built: bool = Field(description="False when an existing build was kept")
    duration_s: float = 0.0


def _deb822(text: str) -> list[dict[str, str]]:
    stanzas: list[dict[str, str]] = []
    cur: dict[str, str] = {}
    for line in [*text.splitlines(), ""]:
        if not line.strip():
            if cur:
                stanzas.append(cur)
            cur = {}
        elif not line.startswith("#") and ":" in line and not line[0].isspace():
            key, _, value = line.partition(":")
            cur[key.strip().lower()] = value.strip()
    return stanzas


def apt_source(etc_apt: Path = Path("/etc/apt")) -> AptSource | None:
    """The first Debian mirror and base suite in this machine's apt configuration (None if there is none).

    Reads ``sources.list.d/*.sources`` (deb822) and ``sources.list`` / ``sources.list.d/*.list``; a suite
    such as ``bookworm-updates`` or ``bookworm-security`` is skipped for the base one (``bookworm``).
    """
    found: list[AptSource] = []
    files = sorted((etc_apt / "sources.list.d").glob("*.sources")) if (etc_apt / "sources.list.d").is_dir() else []
    for f in files:
        for st in _deb822(f.read_text(errors="replace")):
            if "deb" not in st.get("types", "").split() or st.get("enabled", "yes").lower() == "no":
                continue
            for uri in st.get("uris", "").split():
                for suite in st.get("suites", "").split():
                    components = st.get("components", "main").split()
                    keyring = st.get("signed-by") or None
                    found.append(AptSource(mirror=uri, suite=suite, components=components, keyring=keyring))
    lists = [etc_apt / "sources.list"]
    if (etc_apt / "sources.list.d").is_dir():
        lists += sorted((etc_apt / "sources.list.d").glob("*.list"))
    for f in lists:
        if not f.is_file():
            continue
        for line in f.read_text(errors="replace").splitlines():
            words = re.sub(r"\[[^\]]*\]", "", line.split("#", 1)[0]).split()
            if len(words) >= 3 and words[0] == "deb":
                found.append(AptSource(mirror=words[1], suite=words[2], components=words[3:] or ["main"]))
    base = [s for s in found if "-" not in s.suite and "/" not in s.suite and "main" in s.components]
    candidates = base or found
    return candidates[0] if candidates else None


def _default_name_dir(name: str, cache_dir: Path | None) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ConfigError(f"root file system name {name!r}: use letters, digits, '.', '_' and '-'")
    return (cache_dir or default_cache_dir()) / "rootfs" / name


def _run(argv: Sequence[str], on_progress: Callable[[str], None] | None, what: str) -> str:
    """Run a build step, passing its output lines to ``on_progress``; BackendError with the tail on failure."""
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    env["DEBIAN_FRONTEND"] = "noninteractive"
    lines: list[str] = []
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            if on_progress is not None and line.strip():
                on_progress(line)
        rc = proc.wait()
    if rc != 0:
        tail = "\n".join(lines[-30:])
        raise BackendError(f"{what} failed (exit status {rc}):\n{tail}")
    return "\n".join(lines)


def _du(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
    return total


def build_rootfs(
    name: str = "default",
    *,
    mirror: str | None = None,
    suite: str | None = None,
    packages: Sequence[str] | None = None,
    extra_packages: Sequence[str] = (),
    variant: str = "minbase",
    cache_dir: Path | None = None,
    force: bool = False,
    on_progress: Callable[[str], None] | None = None,
) -> RootfsResult:
    """Build (or keep) the root file system ``name`` with debootstrap.

    Args:
        name: its name; the sandbox takes it as ``rootfs=name``.
        mirror: package mirror URI (default: this machine's apt configuration).
        suite: Debian suite (default: the apt configuration's base suite, e.g. ``bookworm``).
        packages: packages on top of the variant (default :data:`ROOTFS_PACKAGES`).
        extra_packages: more packages, added to ``packages``.
        variant: debootstrap variant.
        cache_dir: the cache (default ``$COTSCOPE_CACHE_DIR`` or ``~/.cache/cotscope``).
        force: rebuild even if it exists.
        on_progress: called with each line of progress (debootstrap's own lines included).

    Returns:
        Where it is and its manifest; ``built`` is False when an existing build was kept.

    Raises:
        ConfigError: a bad name, or no mirror or suite given and none configured.
        BackendError: not root, no debootstrap, or a build step failed (with its output).
    """
    t0 = time.monotonic()
    target = _default_name_dir(name, cache_dir)
    manifest_file = target / "manifest.json"
    if manifest_file.is_file() and (target / "root").is_dir() and not force:
        manifest = RootfsManifest.model_validate_json(manifest_file.read_text())
        return RootfsResult(name=name, path=target, root=target / "root", manifest=manifest, built=False)
    wanted = list(dict.fromkeys([*(packages if packages is not None else ROOTFS_PACKAGES), *extra_packages]))
    bad = [p for p in wanted if not re.fullmatch(r"[a-z0-9][a-z0-9+.-]*", p)]
    if bad:
        raise ConfigError(f"not Debian package names: {', '.join(bad)}")

    if os.geteuid() != 0:
        raise BackendError("building a root file system needs root (debootstrap, chroot)")
    debootstrap = shutil.which("debootstrap", path="/usr/sbin:/usr/bin:/sbin:/bin")
    if debootstrap is None:
        raise BackendError("debootstrap is not installed (apt-get install debootstrap)")
    source = apt_source()
    if (mirror is None or suite is None) and source is None:
        raise ConfigError("no apt source is configured here: give the mirror and the suite")
    mirror = mirror or (source.mirror if source else "")
    suite = suite or (source.suite if source else "")
    keyring = source.keyring if source and source.mirror == mirror and source.keyring else None
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{name}.building-", dir=target.parent))
    root = work / "root"
    try:
        say = on_progress or (lambda _line: None)
        say(f"debootstrap {suite} from {mirror} into {root}")
        argv = [debootstrap, f"--variant={variant}", f"--include={','.join(wanted)}"]
        if keyring and Path(keyring).is_file():
            argv.append(f"--keyring={keyring}")
        _run([*argv, suite, str(root), mirror], on_progress, "debootstrap")
        say(f"adding the user {SANDBOX_USER}")
        chroot = ["chroot", str(root)]
        _run(
            [*chroot, "useradd", "-m", "-s", "/bin/bash", "-G", "sudo", "-p", _PASSWORD_HASH, SANDBOX_USER],
            on_progress,
            "useradd",
        )
        sudoers = root / "etc/sudoers.d/cotscope-user"
        sudoers.write_text(f"{SANDBOX_USER} ALL=(ALL:ALL) ALL\n")
        sudoers.chmod(0o440)
        (root / "etc/hostname").write_text(f"{SANDBOX_HOSTNAME}\n")
        _run([*chroot, "apt-get", "clean"], on_progress, "apt-get clean")
        for lists in (root / "var/lib/apt/lists").glob("*_*"):
            lists.unlink(missing_ok=True)
        listing = _run([*chroot, "dpkg-query", "-W", "-f", "${Package}\t${Version}\n"], None, "dpkg-query")
        installed = dict(line.split("\t", 1) for line in listing.splitlines() if "\t" in line)
        version = _run([debootstrap, "--version"], None, "debootstrap --version").strip()
        manifest = RootfsManifest(
            name=name,
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            mirror=mirror,
            suite=suite,
            variant=variant,
            requested=wanted,
            installed=installed,
            size_bytes=_du(root),
            debootstrap=version,
        )
        (work / "manifest.json").write_text(manifest.model_dump_json(indent=2))
        if target.exists():
            shutil.rmtree(target)
        work.rename(target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    say(f"built {target} ({manifest.size_bytes / 1e6:.0f} MB, {len(installed)} packages)")
    return RootfsResult(
        name=name, path=target, root=target / "root", manifest=manifest, built=True, duration_s=time.monotonic() - t0
    )
