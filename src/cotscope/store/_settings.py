"""DuckDB resource settings of a store: how much memory and how many threads it may use.

DuckDB's own defaults are 80% of the machine's memory and one thread per core of the host. A store is
usually one of several things running (a model server, judges, the parsing thread of an ingest), and on a
container the host's memory and cores are not the process's, so cotscope caps both by default:

- ``memory_limit``: ``min(2 GiB, 25% of the memory available to the process)``. DuckDB's buffer pool
  spills to a temporary directory next to the store beyond it, so large queries still finish. Ingest
  holds a few 5,000-row batches at a time and needs far less.
- ``threads``: the cores this process may run on (its CPU affinity), not the host's.

Both can be set per store (``Store(path, memory_limit="4GB", threads=8)``) or for every store of a process
through ``$COTSCOPE_DUCKDB_MEMORY`` and ``$COTSCOPE_DUCKDB_THREADS``; an argument wins over the variable.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from cotscope.errors import ConfigError

MEMORY_ENV = "COTSCOPE_DUCKDB_MEMORY"
THREADS_ENV = "COTSCOPE_DUCKDB_THREADS"

#: The default cap of DuckDB's memory, before the share of the machine's memory is taken into account.
MAX_DEFAULT_MEMORY = 2 << 30
#: The share of the available memory DuckDB may use by default.
MEMORY_SHARE = 0.25

# The sizes DuckDB's memory_limit reads: a number with a byte unit, or a percentage of the machine's memory.
_SIZE = re.compile(r"\d+(\.\d+)?\s*(b|bytes|[kmgt]i?b|%)", re.IGNORECASE)


def available_memory() -> int | None:
    """Bytes of memory this process may use: the machine's, or its cgroup's limit when lower; ``None`` if unknown."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
    # A container's limit (cgroup v2, then v1) is what the kernel enforces, whatever the machine has.
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
        break
    return total


def available_cpus() -> int:
    """Cores this process may run on (its affinity), else the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_memory_limit() -> int:
    """``min(2 GiB, 25% of the available memory)`` in bytes (2 GiB when the memory is unknown)."""
    total = available_memory()
    if total is None:
        return MAX_DEFAULT_MEMORY
    return max(64 << 20, min(MAX_DEFAULT_MEMORY, int(total * MEMORY_SHARE)))


def _memory_setting(value: str | int) -> str:
    """A memory size as DuckDB reads it: bytes as an integer, or a string such as ``2GB`` or ``512MiB``."""
    if isinstance(value, bool):
        raise ConfigError(f"memory_limit must be a size such as '2GB' or a number of bytes, got {value!r}")
    if isinstance(value, int):
        if value <= 0:
            raise ConfigError(f"memory_limit must be positive, got {value}")
        return f"{value}B"
    text = str(value).strip()
    if text.isdigit():
        return _memory_setting(int(text))
    if not _SIZE.fullmatch(text):
        raise ConfigError(f"memory_limit must be a size such as '2GB', '512MiB' or '50%', got {value!r}")
    return text


def _threads_setting(value: str | int, where: str) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} must be a whole number of threads, got {value!r}") from None
    if n < 1:
        raise ConfigError(f"{where} must be at least 1, got {n}")
    return n


def duckdb_config(memory_limit: str | int | None = None, threads: int | None = None) -> dict[str, Any]:
    """The ``memory_limit`` and ``threads`` settings of a DuckDB connection.

    Args:
        memory_limit: a size DuckDB understands (``"2GB"``, ``"512MiB"``) or bytes; ``None`` reads
            ``$COTSCOPE_DUCKDB_MEMORY``, else :func:`default_memory_limit`.
        threads: DuckDB's worker threads; ``None`` reads ``$COTSCOPE_DUCKDB_THREADS``, else the cores this
            process may use.

    Raises:
        ConfigError: a value (argument or variable) that is not a size or a positive count.
    """
    if memory_limit is None:
        env = os.environ.get(MEMORY_ENV, "").strip()
        memory = _memory_setting(env) if env else _memory_setting(default_memory_limit())
    else:
        memory = _memory_setting(memory_limit)
    if threads is None:
        env = os.environ.get(THREADS_ENV, "").strip()
        n = _threads_setting(env, f"${THREADS_ENV}") if env else available_cpus()
    else:
        n = _threads_setting(threads, "threads")
    return {"memory_limit": memory, "threads": n}
