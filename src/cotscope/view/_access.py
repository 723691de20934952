"""How the viewer opens the store: briefly, so other cotscope commands can use the file.

DuckDB lets one process open a file for writing, or any number of processes open it read-only, never both at
once. A viewer that kept the file open would lock ``cotscope judge`` (or ``ingest``, ``run``...) out of the store
for as long as it runs. So the viewer opens the store read-only when a request comes, keeps it open while
requests keep coming (opening costs about 0.1 s), and closes it after ``keep_open`` seconds without one (2 s by
default). To store a label it closes that connection, opens the file for writing, appends the label and closes
it again. A cotscope command can therefore write the store while the viewer is open, as long as nobody is
clicking in the viewer at that moment; while a command holds the file, a request finds it locked and the viewer
answers "busy, retry" (HTTP 503) instead of waiting, and a label is not stored (the page says so).

Within the process, requests take turns on a lock: DuckDB refuses to open one file twice with different
settings (read-only and read-write) in one process, and one connection must not run two queries at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cotscope.errors import CotscopeError
from cotscope.store import Store, store_locked


class StoreBusy(CotscopeError):
    """The store file is held by another process (a cotscope command writing it)."""


class StoreAccess:
    """Opens the store for one request at a time.

    Args:
        path: the store file (it must exist).
        keep_open: seconds a read-only connection stays open after the last request (0: close at once).
        memory_limit: DuckDB's memory limit for each open (as :class:`~cotscope.store.Store` reads it).
        threads: DuckDB's threads for each open.

    Raises:
        FileNotFoundError: the store file does not exist.
    """

    def __init__(self, path: str | Path, *, keep_open: float = 2.0, memory_limit: str | int | None = None,
                 threads: int | None = None):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no such store")
        self.keep_open = keep_open
        self._lock = threading.Lock()
        self._memory_limit = memory_limit
        self._threads = threads
        self._reader: Store | None = None
        #: Values computed from the store (the filter choices...): valid while the file is unchanged, so they
        #: outlive a connection closed for idleness (on a 1M-trace store the choices cost about a second) and
        #: are dropped when the file (or its write-ahead log) changed, or by our own writes.
        self.cache: dict[str, Any] = {}
        self._cached_for: tuple[Any, ...] | None = None
        self._last_used = 0.0
        self._timer: threading.Timer | None = None

    def _connect(self, read_only: bool) -> Store:
        try:
            # The page answers 'busy, retry' at once rather than hold the request.
            return Store(self.path, read_only=read_only, memory_limit=self._memory_limit, threads=self._threads,
                         lock_wait_s=0)
        except OSError as e:
            if store_locked(e):
                raise StoreBusy(f"{self.path} is held by another process (a cotscope command writing it?);"
                                " retry when it is done") from None
            raise

    def _signature(self) -> tuple[Any, ...]:
        """What changes when another process writes the store: size and time of the file and of its WAL."""
        out: list[Any] = []
        for p in (self.path, self.path.with_name(self.path.name + ".wal")):
            try:
                st = p.stat()
                out.append((st.st_mtime_ns, st.st_size))
            except OSError:
                out.append(None)
        return tuple(out)

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _close_if_idle(self) -> None:
        with self._lock:
            self._timer = None
            if self._reader is None:
                return
            idle = time.monotonic() - self._last_used
            if idle >= self.keep_open:
                self._close_reader()
            else:
                self._schedule(self.keep_open - idle)

    def _schedule(self, delay: float) -> None:
        self._timer = threading.Timer(delay, self._close_if_idle)
        self._timer.daemon = True
        self._timer.start()

    @contextmanager
    def read(self) -> Iterator[Store]:
        """The store opened read-only for the duration of a ``with`` block.

        Raises:
            StoreBusy: another process holds the file for writing.
        """
        with self._lock:
            if self._reader is None:
                self._reader = self._connect(True)
                sig = self._signature()
                if sig != self._cached_for:
                    self.cache.clear()
                    self._cached_for = sig
            try:
                yield self._reader
            finally:
                self._last_used = time.monotonic()
                if self.keep_open <= 0:
                    self._close_reader()
                elif self._timer is None:
                    self._schedule(self.keep_open)

    @contextmanager
    def write(self) -> Iterator[Store]:
        """The store opened for writing (an older store is migrated to the current schema on open).

        Raises:
            StoreBusy: another process holds the file.
        """
        with self._lock:
            self._close_reader()
            self.cache.clear()
            self._cached_for = None
            store = self._connect(False)
            try:
                yield store
            finally:
                store.close()

    def close(self) -> None:
        """Close the read-only connection if one is open."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._close_reader()
