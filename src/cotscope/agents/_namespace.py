"""The ``namespace`` sandbox provider: an isolated episode built from standard Linux tools, no daemon.

One episode is one set of fresh Linux namespaces (mount, PID, IPC, UTS, network, cgroup) made by
util-linux ``unshare``. Inside, a copy-on-write overlay over a root file system (the host's ``/`` with its
secrets masked, or a Debian tree built by ``cotscope agent rootfs build``) becomes the root by
``pivot_root``; the old root is detached, so there is no path back to the host's files. The overlay's
writable layer lives on a size-limited tmpfs that exists only in the episode's mount namespace, so nothing
is ever mounted in the host's mount namespace and everything disappears with the episode's last process.

The episode's first process (PID 1 of its PID namespace) is a ``bash`` that reaps orphans and blocks on a
pipe from this process: when the Python process closes the pipe or dies (``PR_SET_PDEATHSIG`` on every
level of the launch), PID 1 exits and the kernel kills every process of the namespace. Commands enter the
namespaces with ``nsenter`` and run with a capability bounding set close to Docker's default (no
``CAP_SYS_ADMIN``: root inside cannot mount, ``pivot_root``, ``setns`` or load modules), as the user
``user`` (password ``password``, allowed to ``sudo``) or as root. cgroups (v1 or v2) limit the memory and
the number of processes of the whole episode; where they cannot be written, rlimits do a weaker job and
:meth:`NamespaceProvider.config` says so. The network namespace has only a loopback interface.

See ``docs/sandbox.md`` for what is masked and why.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import fnmatch
import os
import re
import secrets
import shlex
import shutil
import signal
import stat
import tempfile
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from cotscope.agents._sandbox import CommandResult, SandboxLimits, sandbox
from cotscope.errors import BackendError, ConfigError
from cotscope.models import default_cache_dir

__all__ = [
    "DEFAULT_MASKS",
    "HOST_TOP_LEVEL",
    "SANDBOX_CAPABILITIES",
    "SANDBOX_HOSTNAME",
    "SANDBOX_PASSWORD",
    "SANDBOX_USER",
    "NamespaceProvider",
    "NamespaceSandbox",
    "ShellEpisode",
    "namespace",
    "resolve_rootfs",
]

#: The unprivileged account commands run as, and its password (as in the CUAHarm VM).
SANDBOX_USER = "user"
SANDBOX_PASSWORD = "password"
#: ``openssl passwd -6 -salt cotscope.user password``: computed once, so no ``crypt`` module is needed.
_PASSWORD_HASH = (
    "$6$cotscope.user$jgSbzZPLXgmrbj2Bdc1mcmB4r1UlDVJ6CDein8bs3ldW.iyezWDxW1bKg8G4e1VUYusca0JqprCtT123UxIem/"
)
SANDBOX_HOSTNAME = "sandbox"

#: The capability bounding set of every process of an episode: Docker's default set without
#: ``CAP_MKNOD``, plus ``CAP_NET_ADMIN`` (scoped to the episode's own network namespace; tasks use ``ip``
#: and ``tc``). Without ``CAP_SYS_ADMIN``, ``CAP_SYS_MODULE``, ``CAP_SYS_RAWIO``, ``CAP_SYS_PTRACE``,
#: ``CAP_DAC_READ_SEARCH``, ``CAP_SYS_BOOT``, ``CAP_SYS_TIME`` root inside cannot leave the sandbox.
SANDBOX_CAPABILITIES: tuple[str, ...] = (
    "chown",
    "dac_override",
    "fsetid",
    "fowner",
    "setgid",
    "setuid",
    "setfcap",
    "setpcap",
    "net_bind_service",
    "net_raw",
    "net_admin",
    "sys_chroot",
    "kill",
    "audit_write",
)

#: Top-level entries of the host's ``/`` that an episode sees (host root file system only); anything else
#: at the top level (a checkout, data, a container's extra directories) is hidden.
HOST_TOP_LEVEL: frozenset[str] = frozenset(
    {"bin", "boot", "dev", "etc", "home", "lib", "lib32", "lib64", "libx32", "media", "mnt", "opt", "proc"}
    | {"root", "run", "sbin", "srv", "sys", "tmp", "usr", "var"}
)

#: Paths masked when the host's ``/`` is the lower layer. A directory appears empty (an opaque directory:
#: nothing of the host's, now or later, shows through); a file or link disappears (a whiteout). Shell
#: patterns are expanded when an episode starts. ``/etc/passwd``, ``/etc/group``, ``/etc/shadow``,
#: ``/etc/gshadow``, ``/etc/hosts``, ``/etc/hostname``, ``/etc/resolv.conf`` and ``/etc/environment``
#: are always replaced by generated ones.
DEFAULT_MASKS: tuple[str, ...] = (
    # homes, scratch and mount points
    "/root",
    "/home",
    "/tmp",
    "/var/tmp",
    "/mnt",
    "/media",
    "/srv",
    "/opt",
    "/run",
    "/boot",
    # logs, mail, spools, backups, caches of credentials
    "/var/log",
    "/var/mail",
    "/var/spool/mail",
    "/var/spool/cron",
    "/var/backups",
    "/var/cache",
    # service state that holds keys, passwords or databases
    "/var/lib/private",
    "/var/lib/sudo",
    "/var/lib/systemd",
    "/var/lib/NetworkManager",
    "/var/lib/dhcp",
    "/var/lib/postgresql",
    "/var/lib/mysql",
    "/var/lib/docker",
    "/var/lib/containerd",
    "/var/lib/kubelet",
    "/var/lib/cloud",
    "/var/lib/polkit-1",
    # keys and credential files in /etc
    "/etc/ssh/ssh_host_*_key",
    "/etc/ssl/private",
    "/etc/NetworkManager/system-connections",
    "/etc/wpa_supplicant",
    "/etc/shadow-",
    "/etc/gshadow-",
    "/etc/passwd-",
    "/etc/group-",
    "/etc/security/opasswd",
    "/etc/apt/auth.conf",
    "/etc/apt/auth.conf.d",
    "/etc/docker",
    "/etc/krb5.keytab",
    "/etc/netrc",
    "/etc/.pwd.lock",
)

#: ``/proc`` and ``/sys`` entries hidden or made read-only, as Docker does.
_PROC_FILES_MASKED = ("kcore", "keys", "latency_stats", "timer_list", "timer_stats", "sched_debug")
_PROC_DIRS_MASKED = ("acpi", "asound", "scsi")
_PROC_READONLY = ("bus", "fs", "irq", "sys", "sysrq-trigger")
_SYS_DIRS_MASKED = ("firmware", "devices/virtual/powercap")
_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")

_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_TOOLS = ("unshare", "nsenter", "setpriv", "mount", "pivot_root", "ip", "hostname", "cp", "bash")
_IN_ROOT = ("bin/bash", "usr/bin/setpriv", "usr/bin/sudo")
_OPAQUE_XATTR = "trusted.overlay.opaque"
_DEFAULT_SHM_MB = 64
_START_TIMEOUT_S = 30.0
_GRACE_S = 2.0
_TMP_PREFIX = "cotscope-"
_SENTINEL = re.compile(rb"\n__COTSCOPE_([0-9a-f]{24}) (-?\d+)\n")


# -- small helpers ------------------------------------------------------------------------------------------


def resolve_rootfs(rootfs: str | os.PathLike[str]) -> Path | None:
    """The lower root directory for ``rootfs``: None for ``host``, else a built root's ``root/`` tree.

    Args:
        rootfs: ``host``, the name of a root file system built by ``cotscope agent rootfs build`` (found
            under the cache's ``rootfs/``), or a path: a built one (with ``root/`` and ``manifest.json``)
            or a plain root directory.

    Raises:
        ConfigError: no such root file system, or a path that overlayfs cannot take (``:`` or ``,``).
    """
    text = os.fspath(rootfs)
    if text == "host":
        return None
    path = Path(text)
    if not path.is_absolute() and os.sep not in text:
        named = default_cache_dir() / "rootfs" / text
        if named.is_dir():
            path = named
    if not path.is_dir():
        raise ConfigError(
            f"sandbox root file system {text!r} not found (neither a directory nor a name under "
            f"{default_cache_dir() / 'rootfs'}); build one with `cotscope agent rootfs build`"
        )
    root = path / "root" if (path / "root").is_dir() and (path / "manifest.json").is_file() else path
    root = root.resolve()
    if any(c in str(root) for c in ":,"):
        raise ConfigError(f"sandbox root file system path {root} contains ':' or ',' (overlayfs cannot use it)")
    return root


def _pidns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def _stat_fields(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a host process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rfind(b")") + 2 :].split()
    return int(rest[1]), int(rest[19])


def _host_pids() -> list[int]:
    return [int(n) for n in os.listdir("/proc") if n.isdigit()]


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def _truncate(data: bytes, limit: int, dropped: int = 0) -> str:
    """Decode ``data``; beyond ``limit`` characters keep the head and the tail and say how much was cut."""
    text = data.decode("utf-8", errors="replace")
    if len(text) <= limit and not dropped:
        return text
    keep = max(limit, 2)
    head, tail = text[: keep // 2], text[len(text) - keep // 2 :]
    cut = len(text) - len(head) - len(tail) + dropped
    return f"{head}\n[... {cut} characters of output cut ...]\n{tail}"


class _Output:
    """Collects a command's output in bounded memory: the head and the tail, and a count of what fell out."""

    def __init__(self, limit_chars: int) -> None:
        # Bytes, up to 4 per character: enough to cut at character level once decoded.
        self._half = max(limit_chars, 2) * 2
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0

    def add(self, data: bytes) -> None:
        room = self._half - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if not data:
            return
        self.tail += data
        excess = len(self.tail) - self._half
        if excess > 0:
            self.dropped += excess
            del self.tail[:excess]

    def text(self, limit_chars: int) -> str:
        return _truncate(bytes(self.head + self.tail), limit_chars, self.dropped)


# -- cgroups -------------------------------------------------------------------------------------------------


@dataclass
class _CgroupLayout:
    """Where episode cgroups go: one base directory per hierarchy, and how to write the limits."""

    version: Literal["v1", "v2"]
    bases: list[Path]

    def sweep(self, min_age_s: float = 60.0) -> int:
        """Remove episode groups left by killed runs: no process in them, and older than ``min_age_s`` (a
        group another process has just made is empty for a moment). Returns how many were removed."""
        removed = 0
        now = time.time()
        for base in self.bases:
            with contextlib.suppress(OSError):
                for child in base.iterdir():
                    if not child.is_dir() or now - child.stat().st_mtime < min_age_s:
                        continue
                    if not _read(child / "cgroup.procs").strip():
                        with contextlib.suppress(OSError):
                            child.rmdir()
                            removed += 1
        return removed

    def create(self, episode: str, limits: SandboxLimits) -> list[Path]:
        dirs: list[Path] = []
        try:
            for base in self.bases:
                d = base / episode
                d.mkdir()
                dirs.append(d)
                self._limit(d, limits)
        except OSError as exc:
            _remove_cgroups(dirs)
            raise BackendError(f"cannot create the sandbox's cgroup {episode} under {self.bases}: {exc}") from exc
        return dirs

    def _limit(self, d: Path, limits: SandboxLimits) -> None:
        mem = str(limits.memory_mb * 1024 * 1024)
        if self.version == "v1":
            if (d / "pids.max").exists():
                (d / "pids.max").write_text(str(limits.pids))
            if (d / "memory.limit_in_bytes").exists():
                (d / "memory.limit_in_bytes").write_text(mem)
                if (d / "memory.memsw.limit_in_bytes").exists():
                    (d / "memory.memsw.limit_in_bytes").write_text(mem)
        else:
            (d / "pids.max").write_text(str(limits.pids))
            (d / "memory.max").write_text(mem)
            if (d / "memory.swap.max").exists():
                (d / "memory.swap.max").write_text("0")


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _remove_cgroups(dirs: Iterable[Path], wait_s: float = 0.0) -> list[Path]:
    """rmdir each group, retrying for ``wait_s`` while processes leave; returns those that stay."""
    left = [d for d in dirs if d.exists()]
    deadline = time.monotonic() + wait_s
    while left:
        still = []
        for d in left:
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                still.append(d)
        left = still
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    return left


def _detect_cgroups() -> _CgroupLayout | str:
    """The cgroup layout episodes can use, or why none (then rlimits are used)."""
    mounts: dict[str, Path] = {}
    v2: Path | None = None
    try:
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            left, _, right = line.partition(" - ")
            fstype, _source, opts = [*right.split(), "", "", ""][:3]
            mountpoint = Path(left.split()[4])
            if fstype == "cgroup":
                for ctl in ("pids", "memory"):
                    if ctl in opts.split(","):
                        mounts.setdefault(ctl, mountpoint)
            elif fstype == "cgroup2" and v2 is None:
                v2 = mountpoint
        own: dict[str, str] = {}
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _num, ctls, path = line.split(":", 2)
            for ctl in ctls.split(","):
                own[ctl] = path
    except OSError as exc:
        return f"cannot read the cgroup mounts: {exc}"
    if "pids" in mounts and "memory" in mounts:
        # Under this process's own group in each hierarchy, so whatever limits the caller also limits us.
        bases = [mounts[c] / own.get(c, "/").lstrip("/") / "cotscope" for c in ("pids", "memory")]
        try:
            for b in bases:
                b.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return f"cgroup v1 is mounted but not writable ({exc})"
        return _CgroupLayout("v1", bases)
    if v2 is not None:
        controllers = _read(v2 / "cgroup.controllers").split()
        if {"pids", "memory"} <= set(controllers):
            base = v2 / "cotscope"
            try:
                (v2 / "cgroup.subtree_control").write_text("+pids +memory")
                base.mkdir(exist_ok=True)
                (base / "cgroup.subtree_control").write_text("+pids +memory")
            except OSError as exc:
                return f"cgroup v2 is mounted but its pids and memory controllers cannot be delegated ({exc})"
            return _CgroupLayout("v2", [base])
        return "cgroup v2 is mounted without the pids and memory controllers"
    return "no cgroup hierarchy with the pids and memory controllers is mounted"


# -- the seed: what the writable layer starts with -----------------------------------------------------------


@dataclass(frozen=True)
class _Account:
    uid: int
    gid: int
    home: str


def _copy_meta(src: Path, dst: Path, default_mode: int = 0o755) -> None:
    try:
        st = src.lstat()
        os.chmod(dst, stat.S_IMODE(st.st_mode))
        os.chown(dst, st.st_uid, st.st_gid)
    except FileNotFoundError:
        os.chmod(dst, default_mode)


def _seed_dir(seed: Path, lower: Path, rel: str, *, opaque: bool = False, mode: int = 0o755) -> Path:
    """Make ``rel`` (and its parents) in the seed with the lower layer's mode and owner."""
    parts = Path(rel.lstrip("/")).parts
    cur = Path()
    for i, part in enumerate(parts):
        cur = cur / part
        d = seed / cur
        if not d.exists():
            d.mkdir()
            _copy_meta(lower / cur, d, mode if i == len(parts) - 1 else 0o755)
    target = seed / cur
    if opaque:
        try:
            os.setxattr(target, _OPAQUE_XATTR, b"y")
        except OSError:
            # A file system without trusted xattrs: hide what the lower directory holds now instead.
            with contextlib.suppress(OSError):
                for name in os.listdir(lower / cur):
                    _whiteout(seed, lower, "/" + str(cur / name))
    return target


def _whiteout(seed: Path, lower: Path, rel: str) -> None:
    parent = _seed_dir(seed, lower, str(Path(rel).parent)) if Path(rel).parent != Path("/") else seed
    target = parent / Path(rel).name
    if not target.exists() and not target.is_symlink():
        os.mknod(target, 0o600 | stat.S_IFCHR, os.makedev(0, 0))


def _seed_file(seed: Path, lower: Path, rel: str, text: str, mode: int = 0o644, gid: int = 0) -> None:
    d = _seed_dir(seed, lower, str(Path(rel).parent))
    f = d / Path(rel).name
    f.write_text(text)
    os.chmod(f, mode)
    os.chown(f, 0, gid)


def _parse_colon(text: str) -> list[list[str]]:
    return [line.split(":") for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _expand(lower: Path, pattern: str) -> list[str]:
    """The paths under ``lower`` that ``pattern`` (absolute, shell wildcards allowed) names."""
    parts = Path(pattern).parts[1:]
    found = [Path("/")]
    for part in parts:
        nxt: list[Path] = []
        for base in found:
            if any(ch in part for ch in "*?["):
                with contextlib.suppress(OSError):
                    names = sorted(os.listdir(lower / base.relative_to("/")))
                    nxt += [base / n for n in names if fnmatch.fnmatch(n, part)]
            else:
                nxt.append(base / part)
        found = nxt
    return [str(p) for p in found if os.path.lexists(lower / p.relative_to("/"))]


def _write_seed(seed: Path, lower: Path, masks: Sequence[str], host: bool) -> _Account:
    """Fill ``seed`` with what the episode's writable layer starts with; return the user's account."""
    if host:
        with contextlib.suppress(OSError):
            for name in os.listdir(lower):
                if name not in HOST_TOP_LEVEL:
                    _whiteout(seed, lower, "/" + name)
    for pattern in masks:
        for path in _expand(lower, pattern):
            full = lower / path.lstrip("/")
            if full.is_dir() and not full.is_symlink():
                _seed_dir(seed, lower, path, opaque=True)
            else:
                _whiteout(seed, lower, path)

    passwd = _parse_colon(_read(lower / "etc/passwd"))
    groups = _parse_colon(_read(lower / "etc/group"))
    users = {p[0]: p for p in passwd if len(p) >= 7}
    if SANDBOX_USER in users:
        entry = users[SANDBOX_USER]
        account = _Account(int(entry[2]), int(entry[3]), entry[5] or f"/home/{SANDBOX_USER}")
    else:
        used_u = {int(p[2]) for p in passwd if len(p) >= 3 and p[2].isdigit()}
        used_g = {int(g[2]) for g in groups if len(g) >= 3 and g[2].isdigit()}
        uid = next(i for i in range(1000, 60000) if i not in used_u and i not in used_g)
        account = _Account(uid, uid, f"/home/{SANDBOX_USER}")
        passwd.append([SANDBOX_USER, "x", str(uid), str(uid), "", account.home, "/bin/bash"])
    if not any(g[0] == SANDBOX_USER for g in groups):
        groups.append([SANDBOX_USER, "x", str(account.gid), ""])
    for g in groups:
        while len(g) < 4:
            g.append("")
        if g[0] == "sudo":
            members = [m for m in g[3].split(",") if m]
            if SANDBOX_USER not in members:
                g[3] = ",".join([*members, SANDBOX_USER])
    days = int(time.time() // 86400)
    shadow = []
    for p in passwd:
        pw = _PASSWORD_HASH if p[0] == SANDBOX_USER else ("!" if p[0] == "root" else "*")
        shadow.append(f"{p[0]}:{pw}:{days}:0:99999:7:::")
    gshadow = [f"{g[0]}:!::{g[3]}" for g in groups]
    shadow_gid = next((int(g[2]) for g in groups if g[0] == "shadow" and g[2].isdigit()), 0)

    _seed_file(seed, lower, "/etc/passwd", "".join(":".join(p) + "\n" for p in passwd))
    _seed_file(seed, lower, "/etc/group", "".join(":".join(g) + "\n" for g in groups))
    _seed_file(seed, lower, "/etc/shadow", "\n".join(shadow) + "\n", 0o640, shadow_gid)
    _seed_file(seed, lower, "/etc/gshadow", "\n".join(gshadow) + "\n", 0o640, shadow_gid)
    _seed_file(seed, lower, "/etc/sudoers.d/cotscope-user", f"{SANDBOX_USER} ALL=(ALL:ALL) ALL\n", 0o440)
    _seed_file(seed, lower, "/etc/hostname", f"{SANDBOX_HOSTNAME}\n")
    _seed_file(
        seed,
        lower,
        "/etc/hosts",
        f"127.0.0.1\tlocalhost\n127.0.1.1\t{SANDBOX_HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    )
    _seed_file(seed, lower, "/etc/resolv.conf", "# no network in this sandbox\n")
    _seed_file(seed, lower, "/etc/environment", "")
    _seed_file(seed, lower, "/etc/profile.d/cotscope-path.sh", f'PATH="{_PATH}"\nexport PATH\n')

    # Homes: user's from /etc/skel, root's from Debian's base-files; /tmp and /run/lock usable.
    home = _seed_dir(seed, lower, account.home, mode=0o750)
    os.chown(home, account.uid, account.gid)
    os.chmod(home, 0o750)
    for src in sorted((lower / "etc/skel").glob(".*")) if (lower / "etc/skel").is_dir() else []:
        if src.is_file():
            shutil.copyfile(src, home / src.name)
            os.chown(home / src.name, account.uid, account.gid)
    root_home = _seed_dir(seed, lower, "/root", mode=0o700)
    for name in ("bashrc", "profile"):
        src = lower / f"usr/share/base-files/dot.{name}"
        if src.is_file() and not (root_home / f".{name}").exists():
            shutil.copyfile(src, root_home / f".{name}")
    for rel in ("/tmp", "/var/tmp", "/run/lock"):
        os.chmod(_seed_dir(seed, lower, rel, mode=0o1777), 0o1777)
    return account


# -- the scripts ---------------------------------------------------------------------------------------------

# PID 1's script, read by bash from its stdin (so no command line shows it). ``set -e``: a failed step
# ends the episode before anything runs, and the caller reports the step's error.
_SETUP = r"""set -euo pipefail
T={tmp}; L={lower}; R="$T/root"
mount -t tmpfs -o size={disk_mb}m,mode=755 cotscope-layer "$T/layer"
mkdir "$T/layer/upper" "$T/layer/work"
cp -a "$T/seed/." "$T/layer/upper/"
mount -t overlay -o "lowerdir=$L,upperdir=$T/layer/upper,workdir=$T/layer/work,nodev" cotscope "$R"
mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
for f in {proc_files}; do [ -f "$R/proc/$f" ] && mount --bind /dev/null "$R/proc/$f"; done
RO=ro,nosuid,nodev,noexec
for d in {proc_dirs}; do [ -d "$R/proc/$d" ] && mount -t tmpfs -o $RO,size=4k masked "$R/proc/$d"; done
for p in {proc_ro}; do
  [ -e "$R/proc/$p" ] && mount --bind "$R/proc/$p" "$R/proc/$p" && mount -o remount,bind,$RO "$R/proc/$p"
done
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$R/sys"
for d in {sys_dirs}; do [ -d "$R/sys/$d" ] && mount -t tmpfs -o $RO,size=4k masked "$R/sys/$d"; done
mount -t tmpfs -o nosuid,noexec,mode=755,size=256k cotscope-dev "$R/dev"
for d in {devices}; do touch "$R/dev/$d"; mount --bind "/dev/$d" "$R/dev/$d"; done
mkdir -m 755 "$R/dev/pts"; mkdir -m 1777 "$R/dev/shm"
mount -t devpts -o newinstance,nosuid,noexec,gid=5,mode=620,ptmxmode=0666 devpts "$R/dev/pts"
mount -t tmpfs -o nosuid,nodev,mode=1777,size={shm_mb}m shm "$R/dev/shm"
ln -s pts/ptmx "$R/dev/ptmx"; ln -s /proc/self/fd "$R/dev/fd"
ln -s /proc/self/fd/0 "$R/dev/stdin"; ln -s /proc/self/fd/1 "$R/dev/stdout"; ln -s /proc/self/fd/2 "$R/dev/stderr"
hostname {hostname}
ip link set lo up
cd "$R"
pivot_root . .
umount -l .
cd /
echo COTSCOPE-READY
exec setpriv --bounding-set -all -- bash --noprofile --norc >/dev/null 2>&1
"""

# What PID 1 runs once set up: ignore every signal (the kernel then drops them when sent from inside) and
# block on the pipe from the Python process; bash reaps any child that is reparented to it.
_INIT = "trap '' HUP INT QUIT TERM USR1 USR2 PIPE ALRM\nwhile read -r _; do :; done\n"

# The agent's terminal, read by bash from its stdin: each command comes on one line with every byte outside
# printable ASCII (and the backslash) written as \xHH, decoded by the printf builtin (no fork: a base64
# decoder in a subshell cost 2.7 ms of the 3 ms a command took), runs
# in this shell (so cd and variables persist) with stdin from /dev/null, and is followed by a sentinel
# that carries a nonce and the exit status.
_SHELL = r"""cd ~ 2>/dev/null
shopt -s expand_aliases
__cotscope_n={nonce}
printf '\n__COTSCOPE_%s %s\n' "$__cotscope_n" "$$"
while IFS= read -r __cotscope_l; do
  printf -v __cotscope_c '%b' "$__cotscope_l"
  eval "$__cotscope_c" </dev/null
  printf '\n__COTSCOPE_%s %s\n' "$__cotscope_n" "$?"
done
"""

def _one_line(command: str) -> bytes:
    """``command`` as one line of the terminal protocol: printable ASCII as is, every other byte (newlines,
    the backslash, UTF-8) as ``\\xHH``, which bash's ``printf '%b'`` turns back into the same bytes."""
    out = bytearray()
    for b in command.encode(errors="replace"):
        if 0x20 <= b < 0x7F and b != 0x5C:
            out.append(b)
        else:
            out += b"\\x%02x" % b
    out += b"\n"
    return bytes(out)


_JOIN = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'


# -- leftovers: a safety net for episodes that were never closed ---------------------------------------------


@dataclass
class _Leftover:
    pid1: int | None = None
    pidns: str | None = None
    cgroups: list[Path] = field(default_factory=list)
    tmp: Path | None = None

    def clean(self, wait_s: float = 1.0) -> bool:
        """Kill PID 1 (if still the episode's), remove the temp dir and the cgroups; True when all are gone."""
        if self.pid1 is not None and self.pidns is not None and _pidns(self.pid1) == self.pidns:
            _kill(self.pid1)
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
        self.cgroups = _remove_cgroups(self.cgroups, wait_s)
        return not self.cgroups


_LIVE: dict[str, _Leftover] = {}


@atexit.register
def _clean_all() -> None:
    for left in list(_LIVE.values()):
        left.clean()
    _LIVE.clear()


# -- the terminal, shared by the providers -------------------------------------------------------------------


class _Shell:
    """One running terminal shell: its launcher process, its id for killing (a PID) and its nonce."""

    def __init__(self, proc: asyncio.subprocess.Process, nonce: str) -> None:
        self.proc = proc
        self.nonce = nonce
        self.pid = 0
        self.pending = bytearray()


async def _exited(proc: asyncio.subprocess.Process) -> int:
    """Wait for ``proc`` to exit. Unlike ``Process.wait``, this does not also wait for its pipes to close
    (a background process inside the episode may hold them open)."""
    delay = 0.001
    while proc.returncode is None:
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.02)
    return proc.returncode


def _status(rc: int) -> int:
    """A process's exit status as a shell reports it (128 + signal for a killed process)."""
    return rc if rc >= 0 else 128 - rc


def _note(output: str, notes: Sequence[str]) -> str:
    if not notes:
        return output
    sep = "" if not output or output.endswith("\n") else "\n"
    return output + sep + "".join(f"[{n}]\n" for n in notes)


class ShellEpisode:
    """What every provider's episode shares: the persistent terminal, one-off commands and the time limits.

    A provider's episode says how to launch a program inside (:meth:`_launch`), who a process is
    (:meth:`_identify`) and how to stop processes (:meth:`_stop_new`, :meth:`_stop_tree`); this class runs
    the terminal protocol over a pipe: each command is sent escaped on one line (:func:`_one_line`), the shell ``eval``s
    it with stdin from ``/dev/null`` (so ``cd`` and variables persist) and prints a sentinel with a random
    nonce and ``$?``. stdout and stderr are merged, as a terminal shows them.

    Attributes:
        provider: the provider's name.
        limits: the episode's limits.
    """

    provider = ""

    def __init__(self, limits: SandboxLimits) -> None:
        self.limits = limits
        self._shells: dict[str, _Shell] = {}
        self._lock = asyncio.Lock()
        self._oneoffs: set[int] = set()
        self._started = time.monotonic()
        self._closed = False

    # -- hooks ---------------------------------------------------------------------------------------
    def _launch(self, user: str, cwd: str) -> list[str]:
        """The argv prefix that runs the program appended to it inside the episode, as ``user``, in ``cwd``."""
        raise NotImplementedError

    def _home(self, user: str) -> str:
        return f"/home/{SANDBOX_USER}" if user == SANDBOX_USER else "/root"

    def _launcher_env(self, user: str, home: str) -> dict[str, str]:
        """The environment of the launcher process (and, for providers that pass it on, of the program)."""
        return _env(user, home)

    def _oneoff_program(self, command: str, limit: float) -> list[str]:
        """The program a one-off command runs as (a login shell)."""
        return ["bash", "-lc", command]

    def _alive(self) -> str | None:
        """None while the episode runs, else why it does not."""
        return None

    async def _identify(self, proc: asyncio.subprocess.Process, inner: int = 0) -> int:
        """The id :meth:`_stop_tree` takes for the program ``proc`` launched (0: none).

        Args:
            proc: the launcher process.
            inner: the program's PID inside the episode, when known (a shell reports it).
        """
        return inner

    async def _snapshot(self) -> Any:
        """What runs before a terminal command starts (given back to :meth:`_stop_new`)."""
        return None

    async def _stop_new(self, before: Any, keep: set[int]) -> None:
        """Stop what a timed-out terminal command started, sparing the shells ``keep`` and one-off commands."""

    async def _stop_tree(self, pid: int) -> None:
        """Stop the process ``pid`` (an id from :meth:`_identify`) and its descendants."""

    # -- running -------------------------------------------------------------------------------------
    async def run(
        self, command: str, *, timeout: float | None = None, session: bool = True, user: str = "user"
    ) -> CommandResult:
        """Run ``command`` in the episode (see :class:`cotscope.agents._sandbox.Sandbox`).

        After the episode's time limit every call returns ``timed_out`` without running anything; a
        command's own limit is cut to what is left of the episode's.

        Raises:
            ConfigError: ``user`` is neither ``user`` nor ``root``.
            BackendError: the episode is closed or is no longer running.
        """
        if user not in (SANDBOX_USER, "root"):
            raise ConfigError(f"sandbox commands run as {SANDBOX_USER!r} or 'root', not {user!r}")
        if self._closed:
            raise BackendError(f"{self.provider} sandbox episode is closed")
        dead = self._alive()
        if dead is not None:
            raise BackendError(f"{self.provider} sandbox episode is no longer running: {dead}")
        left = self.limits.episode_timeout_s - (time.monotonic() - self._started)
        if left <= 0:
            return CommandResult(
                command=command,
                output=f"[the episode's time limit of {self.limits.episode_timeout_s:g} s is reached; not run]\n",
                exit_code=None,
                timed_out=True,
            )
        limit = min(timeout if timeout is not None else self.limits.command_timeout_s, left)
        if session:
            async with self._lock:
                return await self._run_session(command, limit, user)
        return await self._run_once(command, limit, user)

    async def _spawn_shell(self, user: str) -> _Shell:
        nonce = secrets.token_hex(12)
        proc = await asyncio.create_subprocess_exec(
            *self._launch(user, self._home(user)),
            "bash",
            "--noprofile",
            "--norc",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self._launcher_env(user, self._home(user)),
            start_new_session=True,
        )
        assert proc.stdin is not None
        shell = _Shell(proc, nonce)
        proc.stdin.write(_SHELL.format(nonce=nonce).encode())
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            await proc.stdin.drain()
        # The shell's first sentinel carries its PID inside the episode.
        out = _Output(2000)
        try:
            inner = await asyncio.wait_for(self._read_until_sentinel(shell, out), _START_TIMEOUT_S)
        except (TimeoutError, EOFError):
            _kill(proc.pid)
            await _exited(proc)
            raise BackendError(f"the {self.provider} sandbox's shell did not start: {out.text(2000).strip()}") from None
        shell.pid = await self._identify(proc, inner)
        return shell

    async def _run_session(self, command: str, limit: float, user: str) -> CommandResult:
        t0 = time.monotonic()
        notes: list[str] = []
        shell = self._shells.get(user)
        if shell is None or shell.proc.returncode is not None:
            shell = self._shells[user] = await self._spawn_shell(user)
        before = await self._snapshot()
        out = _Output(self.limits.output_chars)
        assert shell.proc.stdin is not None
        shell.proc.stdin.write(_one_line(command))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            await shell.proc.stdin.drain()
        status: int | None = None
        timed_out = False
        try:
            status = await asyncio.wait_for(self._read_until_sentinel(shell, out), limit)
        except TimeoutError:
            timed_out = True
            notes.append(f"the command timed out after {limit:g} s and was stopped")
            await self._stop_new(before, {s.pid for s in self._shells.values()})
            try:
                await asyncio.wait_for(self._read_until_sentinel(shell, out), _GRACE_S)
            except (TimeoutError, EOFError):
                notes.append("the shell did not come back; a new one was started in the home directory")
                await self._stop_shell(user)
        except EOFError:
            status = _status(await _exited(shell.proc))
            notes.append(f"the shell exited (status {status}); a new one was started in the home directory")
            await self._stop_shell(user)
        return CommandResult(
            command=command,
            output=_note(out.text(self.limits.output_chars), notes),
            exit_code=None if timed_out else status,
            timed_out=timed_out,
            duration_s=time.monotonic() - t0,
        )

    async def _read_until_sentinel(self, shell: _Shell, out: _Output) -> int:
        """Collect output until this shell's sentinel; return the exit status. EOFError if the shell ends."""
        assert shell.proc.stdout is not None
        keep = 80
        while True:
            m = _SENTINEL.search(shell.pending)
            while m is not None and m.group(1).decode() != shell.nonce:
                m = _SENTINEL.search(shell.pending, m.end() - 1)
            if m is not None:
                status = int(m.group(2))
                out.add(bytes(shell.pending[: m.start()]))
                del shell.pending[: m.end()]
                return status
            if len(shell.pending) > keep:
                out.add(bytes(shell.pending[:-keep]))
                del shell.pending[:-keep]
            chunk = await shell.proc.stdout.read(65536)
            if not chunk:
                out.add(bytes(shell.pending))
                shell.pending.clear()
                raise EOFError
            shell.pending += chunk

    async def _stop_shell(self, user: str) -> None:
        shell = self._shells.pop(user, None)
        if shell is None:
            return
        if shell.pid:
            await self._stop_tree(shell.pid)
        _kill(shell.proc.pid)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_exited(shell.proc), _GRACE_S)

    async def _run_once(self, command: str, limit: float, user: str) -> CommandResult:
        t0 = time.monotonic()
        home = self._home(user)
        proc = await asyncio.create_subprocess_exec(
            *self._launch(user, home),
            *self._oneoff_program(command, limit),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self._launcher_env(user, home),
            start_new_session=True,
        )
        inner = await self._identify(proc)
        if inner:
            self._oneoffs.add(inner)
        out = _Output(self.limits.output_chars)
        assert proc.stdout is not None
        stdout = proc.stdout

        async def pump() -> None:
            while chunk := await stdout.read(65536):
                out.add(chunk)

        reader = asyncio.ensure_future(pump())
        timed_out = False
        try:
            await asyncio.wait_for(_exited(proc), limit)
        except TimeoutError:
            timed_out = True
            if inner:
                await self._stop_tree(inner)
            _kill(proc.pid)
            await _exited(proc)
        finally:
            self._oneoffs.discard(inner)
        # Background processes may hold the pipe open: take what is there, then stop reading.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(reader), 0.2)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        rc = proc.returncode
        notes = [f"the command timed out after {limit:g} s and was stopped"] if timed_out else []
        return CommandResult(
            command=command,
            output=_note(out.text(self.limits.output_chars), notes),
            exit_code=None if timed_out or rc is None else _status(rc),
            timed_out=timed_out,
            duration_s=time.monotonic() - t0,
        )

    async def _close_shells(self) -> None:
        shells, self._shells = list(self._shells.values()), {}
        for shell in shells:
            _kill(shell.proc.pid)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_exited(shell.proc), _GRACE_S)


# -- the namespace episode -----------------------------------------------------------------------------------


class NamespaceSandbox(ShellEpisode):
    """One running episode of the ``namespace`` provider (see the module docstring).

    Use ``async with await provider.start() as sb:`` or call :meth:`close`.

    Attributes:
        provider: ``namespace``.
        episode_id: unique id of the episode (also the name of its cgroups).
        limits: the episode's limits.
        pid1: host PID of the episode's PID 1 (0 before it started).
    """

    provider = "namespace"

    def __init__(self, owner: NamespaceProvider, limits: SandboxLimits) -> None:
        super().__init__(limits)
        self._owner = owner
        self.episode_id = f"ep-{secrets.token_hex(6)}"
        self.pid1 = 0
        self._pidns: str | None = None
        self._launcher: asyncio.subprocess.Process | None = None
        self._cgroups: list[Path] = []
        self._account = _Account(0, 0, "/root")
        self._leftover = _Leftover()
        _LIVE[self.episode_id] = self._leftover
        weakref.finalize(self, _finalize, self.episode_id)

    # -- start ---------------------------------------------------------------------------------------
    async def _start(self) -> None:
        owner = self._owner
        lower = owner.lower_dir
        tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{self.episode_id}-"))
        self._leftover.tmp = tmp
        for sub in ("seed", "layer", "root"):
            (tmp / sub).mkdir()
        self._account = await asyncio.to_thread(_write_seed, tmp / "seed", lower, owner.masks, owner.rootfs_dir is None)
        layout = owner.cgroups
        if layout is not None:
            self._cgroups = layout.create(self.episode_id, self.limits)
            self._leftover.cgroups = list(self._cgroups)
        script = _SETUP.format(
            tmp=shlex.quote(str(tmp)),
            lower=shlex.quote(str(lower)),
            disk_mb=self.limits.disk_mb,
            shm_mb=min(_DEFAULT_SHM_MB, self.limits.disk_mb),
            proc_files=" ".join(_PROC_FILES_MASKED),
            proc_dirs=" ".join(_PROC_DIRS_MASKED),
            proc_ro=" ".join(_PROC_READONLY),
            sys_dirs=" ".join(_SYS_DIRS_MASKED),
            devices=" ".join(_DEVICES),
            hostname=SANDBOX_HOSTNAME,
        )
        unshare = ["unshare", "--mount", "--pid", "--ipc", "--uts", "--net", "--cgroup", "--fork"]
        unshare += ["--kill-child=KILL", "--propagation", "private", "bash", "--noprofile", "--norc"]
        proc = await asyncio.create_subprocess_exec(
            *self._prefix(root=True),
            "setpriv",
            "--pdeathsig",
            "KILL",
            *unshare,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=_env("root", "/root"),
            start_new_session=True,
        )
        self._launcher = proc
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        proc.stdin.write(script.encode() + _INIT.encode())
        await proc.stdin.drain()
        line = b""
        with contextlib.suppress(TimeoutError):
            line = await asyncio.wait_for(proc.stdout.readline(), _START_TIMEOUT_S)
        children = _read(Path(f"/proc/{proc.pid}/task/{proc.pid}/children")).split()
        if line.strip() != b"COTSCOPE-READY" or not children:
            _kill(proc.pid)
            err = b""
            with contextlib.suppress(TimeoutError):
                err = await asyncio.wait_for(proc.stderr.read(), 5)
            reason = err.decode(errors="replace").strip() or "no output"
            raise BackendError(f"the namespace sandbox did not start: {reason[-2000:]}")
        self.pid1 = int(children[0])
        self._pidns = _pidns(self.pid1)
        self._leftover.pid1, self._leftover.pidns = self.pid1, self._pidns
        # Nothing on the host is needed any more: the layer lives in the episode's own mount namespace.
        await asyncio.to_thread(shutil.rmtree, tmp, True)
        self._leftover.tmp = None
        self._started = time.monotonic()

    def _prefix(self, *, root: bool) -> list[str]:
        """The host-side start of every command line: join the episode's cgroups, or set rlimits."""
        argv = ["/bin/sh", "-c", _JOIN, "sh", *(str(d / "cgroup.procs") for d in self._cgroups), "--"]
        if not self._cgroups:
            argv += ["prlimit", f"--as={self.limits.memory_mb * 1024 * 1024}"]
            if not root:
                argv.append(f"--nproc={self.limits.pids}")
            argv.append("--")
        return argv

    def _home(self, user: str) -> str:
        return self._account.home if user == SANDBOX_USER else "/root"

    def _launch(self, user: str, cwd: str) -> list[str]:
        """Join the cgroups, nsenter the episode, limit the bounding set, switch to ``user``, cd to ``cwd``."""
        # nsenter's --root and --wd without an argument take the target's root and cwd. Given a path,
        # nsenter would open it on the host before entering, leaving a working directory outside.
        argv = [*self._prefix(root=user == "root"), "nsenter", "--target", str(self.pid1)]
        argv += ["--mount", "--uts", "--ipc", "--net", "--pid", "--cgroup", "--root", "--wd"]
        argv += ["setpriv", "--bounding-set", "-all," + ",".join("+" + c for c in SANDBOX_CAPABILITIES)]
        if user != "root":
            argv += [f"--reuid={self._account.uid}", f"--regid={self._account.gid}", "--init-groups"]
        return [*argv, "--", "env", f"--chdir={cwd}"]

    def _alive(self) -> str | None:
        if self.pid1 and _pidns(self.pid1) == self._pidns:
            return None
        return "its PID 1 is gone"

    async def _identify(self, proc: asyncio.subprocess.Process, inner: int = 0) -> int:
        """The host PID of the process nsenter forked into the episode (0 if it is already gone)."""
        pid = proc.pid
        for _ in range(1000):
            for kid in _read(Path(f"/proc/{pid}/task/{pid}/children")).split():
                if _pidns(int(kid)) == self._pidns:
                    return int(kid)
            if proc.returncode is not None or not Path(f"/proc/{pid}").exists():
                return 0
            await asyncio.sleep(0.001)
        return 0

    async def _snapshot(self) -> set[tuple[int, int]]:
        return {(pid, f[1]) for pid, f in self.processes().items()}

    async def _stop_new(self, before: Any, keep: set[int]) -> None:
        def victims() -> list[int]:
            procs = self.processes()
            spared = _descendants(procs, self._oneoffs) | keep | {self.pid1}
            return [pid for pid, (_pp, st) in procs.items() if (pid, st) not in before and pid not in spared]

        await _kill_until_gone(victims)

    async def _stop_tree(self, pid: int) -> None:
        await _kill_until_gone(lambda: sorted(_descendants(self.processes(), {pid})))

    def processes(self) -> dict[int, tuple[int, int]]:
        """The episode's processes seen from the host: host PID -> (parent's host PID, start time in ticks)."""
        if self._pidns is None:
            return {}
        found: dict[int, tuple[int, int]] = {}
        for pid in _host_pids():
            if _pidns(pid) == self._pidns:
                fields = _stat_fields(pid)
                if fields is not None:
                    found[pid] = fields
        return found

    # -- closing -------------------------------------------------------------------------------------
    async def close(self) -> None:
        """Kill every process of the episode, then remove its cgroups. Idempotent.

        Killing PID 1 makes the kernel kill every other process of the PID namespace; the mount namespace,
        and with it the overlay and its tmpfs, goes with the last of them.

        Raises:
            BackendError: a cgroup of the episode could not be removed (processes still in it).
        """
        if self._closed:
            return
        self._closed = True
        if self._alive() is None:
            _kill(self.pid1)
        launcher = self._launcher
        if launcher is not None:
            if launcher.returncode is None and not self.pid1:
                _kill(launcher.pid)
            if launcher.stdin is not None:
                launcher.stdin.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_exited(launcher), 10)
        await self._close_shells()
        stuck = await asyncio.to_thread(_remove_cgroups, self._cgroups, 5.0)
        if self._leftover.tmp is not None:
            await asyncio.to_thread(shutil.rmtree, self._leftover.tmp, True)
        _LIVE.pop(self.episode_id, None)
        if stuck:
            raise BackendError(f"sandbox episode {self.episode_id}: cgroups still busy after close: {stuck}")

    async def __aenter__(self) -> NamespaceSandbox:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


def _descendants(procs: dict[int, tuple[int, int]], roots: Iterable[int]) -> set[int]:
    found = set(roots) & set(procs)
    while True:
        more = {pid for pid, (ppid, _s) in procs.items() if ppid in found and pid not in found}
        if not more:
            return found
        found |= more


async def _kill_until_gone(victims: Callable[[], Sequence[int] | set[int]]) -> None:
    """SIGKILL what ``victims()`` names until it names nothing (processes may fork while being killed)."""
    for _ in range(50):
        pids = victims()
        if not pids:
            return
        for pid in pids:
            _kill(pid)
        await asyncio.sleep(0.005)


def _sweep_temp(max_age_s: float = 600.0) -> None:
    """Remove host temp directories of episodes killed while starting (a start takes seconds, not minutes)."""
    base = Path(tempfile.gettempdir())
    now = time.time()
    for d in base.glob(f"{_TMP_PREFIX}ep-*"):
        with contextlib.suppress(OSError):
            if d.is_dir() and not d.is_symlink() and now - d.lstat().st_mtime > max_age_s:
                shutil.rmtree(d, ignore_errors=True)


def _finalize(episode_id: str) -> None:
    # An episode dropped without close(): kill it now; what cannot go yet (its cgroups, while its
    # processes die) stays listed for the exit handler.
    left = _LIVE.get(episode_id)
    if left is not None and left.clean(wait_s=0.0):
        _LIVE.pop(episode_id, None)


def _env(user: str, home: str) -> dict[str, str]:
    """The whole environment of an episode's process: nothing of the host's (no API keys) gets in."""
    return {
        "PATH": _PATH,
        "HOME": home,
        "USER": user,
        "LOGNAME": user,
        "SHELL": "/bin/bash",
        "TERM": "xterm",
        "LANG": "C.UTF-8",
    }


# -- the provider --------------------------------------------------------------------------------------------


class NamespaceProvider:
    """Starts ``namespace`` episodes.

    Args:
        rootfs: ``host`` (the host's ``/`` read-only under the episode's layer, secrets masked), the name
            of a root file system built by ``cotscope agent rootfs build``, or a path to one.
        masks: paths masked in ``host`` mode (default :data:`DEFAULT_MASKS`); ignored for a built rootfs
            unless given.
        extra_masks: more paths to mask, added to ``masks``.
        cgroups: use cgroups for the memory and process limits when they are writable (True), or force
            the rlimit fallback (False).
    """

    name = "namespace"

    def __init__(
        self,
        rootfs: str = "host",
        masks: Sequence[str] | None = None,
        extra_masks: Sequence[str] = (),
        cgroups: bool = True,
    ) -> None:
        self.rootfs = os.fspath(rootfs)
        self.rootfs_dir = resolve_rootfs(self.rootfs)
        self.lower_dir = self.rootfs_dir or Path("/")
        default = DEFAULT_MASKS if self.rootfs_dir is None else ()
        self.masks: tuple[str, ...] = tuple(masks if masks is not None else default) + tuple(extra_masks)
        for m in self.masks:
            if not m.startswith("/") or ".." in Path(m).parts:
                raise ConfigError(f"sandbox mask {m!r} must be an absolute path without '..'")
        self._use_cgroups = cgroups
        self._cgroups: _CgroupLayout | None = None
        self._cgroup_note = "not checked yet"
        self._checked = False

    @property
    def cgroups(self) -> _CgroupLayout | None:
        """The cgroup layout in use (None: rlimits). Found on first use, when stale leftovers are swept."""
        if not self._checked:
            self._checked = True
            _sweep_temp()
            if not self._use_cgroups:
                self._cgroup_note = "cgroups turned off"
            else:
                found = _detect_cgroups()
                if isinstance(found, str):
                    self._cgroup_note = found
                else:
                    self._cgroups = found
                    found.sweep()
        return self._cgroups

    def available(self) -> str | None:
        """None when episodes can start here, else why not (not root, a tool or kernel feature missing)."""
        if not hasattr(os, "geteuid") or not Path("/proc/self/ns/pid").exists():
            return "the namespace sandbox needs Linux"
        if os.geteuid() != 0:
            return "the namespace sandbox needs root (it creates namespaces, mounts and cgroups)"
        missing = [t for t in _TOOLS if shutil.which(t, path=_PATH) is None]
        if not self._use_cgroups or self.cgroups is None:
            missing += [t for t in ("prlimit",) if shutil.which(t, path=_PATH) is None]
        if missing:
            return f"the namespace sandbox needs {', '.join(missing)} (util-linux, iproute2, coreutils, bash)"
        if "overlay" not in _read(Path("/proc/filesystems")):
            return "the kernel has no overlay file system"
        absent = [p for p in _IN_ROOT if not any((self.lower_dir / d / p).exists() for d in ("", "usr"))]
        if absent:
            where = "the host" if self.rootfs_dir is None else str(self.rootfs_dir)
            return f"{where} lacks {', '.join('/' + p for p in absent)} (install bash, util-linux, coreutils, sudo)"
        return None

    async def start(self, limits: SandboxLimits | None = None) -> NamespaceSandbox:
        """Start one episode.

        Raises:
            BackendError: the sandbox cannot run here (see :meth:`available`) or did not come up.
        """
        reason = self.available()
        if reason is not None:
            raise BackendError(reason)
        episode = NamespaceSandbox(self, limits or SandboxLimits())
        try:
            await episode._start()
        except BaseException:
            await episode.close()
            raise
        return episode

    def config(self) -> dict[str, Any]:
        """Root file system, masks, limit mechanism and capabilities: what changes an episode's behaviour."""
        layout = self.cgroups
        return {
            "provider": self.name,
            "rootfs": self.rootfs if self.rootfs_dir is None else str(self.rootfs_dir),
            "masks": list(self.masks),
            "limits_by": f"cgroup {layout.version}" if layout is not None else f"rlimits ({self._cgroup_note})",
            "capabilities": list(SANDBOX_CAPABILITIES),
            "network": "none (loopback only)",
            "user": SANDBOX_USER,
        }


@sandbox("namespace")
def namespace(
    rootfs: str = "host", masks: Sequence[str] | None = None, extra_masks: Sequence[str] = (), cgroups: bool = True
) -> NamespaceProvider:
    """The ``namespace`` provider (default): Linux namespaces, overlayfs and cgroups; needs root."""
    return NamespaceProvider(rootfs=rootfs, masks=masks, extra_masks=extra_masks, cgroups=cgroups)
