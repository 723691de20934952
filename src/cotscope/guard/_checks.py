"""Monitor checks of every stream the guard serves, batched and run off the event loop.

The embedded monitors are CPU models whose ``monitor()`` computes in the calling thread; called on the
server's event loop they would stall every stream for the length of an encoder pass. So the monitor lives on
its own event loop in its own thread (:class:`MonitorThread`), and the streams hand their checks to a
:class:`CheckBatcher`: while one monitor call runs, the checks that arrive queue up, and the next call scores
all of them at once (one encoder batch for 32 streams instead of 32 calls). The batch size therefore follows
the load by itself; no stream waits for a batch to fill.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cotscope.monitors import Monitor, MonitorResult
from cotscope.traces import Trace

T = TypeVar("T")


class MonitorError(RuntimeError):
    """A check could not be scored: the monitor raised, timed out or returned the wrong number of results."""


class MonitorThread:
    """An event loop in a daemon thread, on which the monitor's coroutines run."""

    def __init__(self, name: str = "cotscope-guard-monitor") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the monitor loop and await its result from the caller's loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def stop(self) -> None:
        """Stop the loop (after cancelling what still runs on it) and join the thread."""
        if not self._thread.is_alive():
            return

        async def _cancel_rest() -> None:
            me = asyncio.current_task()
            rest = [t for t in asyncio.all_tasks() if t is not me]
            for t in rest:
                t.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(_cancel_rest(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self.loop.close()


@dataclass
class BatchStats:
    """How the batcher has worked: monitor calls, windows scored, the largest batch, failures."""

    calls: int = 0
    windows: int = 0
    max_batch: int = 0
    errors: int = 0
    busy_s: float = 0.0
    sizes: list[int] = field(default_factory=list)


@dataclass
class _Pending:
    traces: list[Trace]
    future: asyncio.Future[list[MonitorResult]]


class CheckBatcher:
    """Scores the windows of many streams' checks in shared monitor calls.

    Args:
        monitor: the monitor (its ``monitor()`` runs on ``thread``'s loop).
        max_batch: most windows per call; a check is never split across calls.
        concurrency: monitor calls in flight at once.
        timeout_s: a call that takes longer fails every check in it with :class:`MonitorError`.
    """

    def __init__(self, monitor: Monitor, *, max_batch: int = 64, concurrency: int = 1,
                 timeout_s: float = 30.0) -> None:
        self.monitor = monitor
        self.max_batch = max_batch
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.stats = BatchStats()
        self.thread = MonitorThread()
        self._queue: list[_Pending] = []
        self._wake: asyncio.Event | None = None
        self._workers: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start the batch workers on the running loop."""
        self._wake = asyncio.Event()
        self._workers = [asyncio.create_task(self._work(), name=f"guard-batcher-{i}")
                         for i in range(self.concurrency)]

    async def check(self, traces: Sequence[Trace]) -> list[MonitorResult]:
        """One result per trace, in order.

        Raises:
            MonitorError: the monitor failed on the batch this check was scored in.
        """
        if self._wake is None:
            raise RuntimeError("CheckBatcher.start() was not called")
        fut: asyncio.Future[list[MonitorResult]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(list(traces), fut))
        self._wake.set()
        return await fut

    def _take(self) -> list[_Pending]:
        batch: list[_Pending] = []
        n = 0
        while self._queue:
            p = self._queue[0]
            if p.future.done():  # its stream went away while it waited
                self._queue.pop(0)
                continue
            if batch and n + len(p.traces) > self.max_batch:
                break
            batch.append(self._queue.pop(0))
            n += len(p.traces)
        return batch

    async def _work(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
            batch = self._take()
            if not batch:
                continue
            flat = [t for p in batch for t in p.traces]
            t0 = loop.time()
            try:
                results = await asyncio.wait_for(self.thread.call(self.monitor.monitor(flat)), self.timeout_s)
                if len(results) != len(flat):
                    raise MonitorError(f"the monitor returned {len(results)} results for {len(flat)} windows")
            except asyncio.CancelledError:
                for p in batch:
                    if not p.future.done():
                        p.future.cancel()
                raise
            except Exception as e:  # any monitor failure is reported to each check as data
                self.stats.errors += 1
                err = e if isinstance(e, MonitorError) else MonitorError(
                    f"monitor {self.monitor.name} failed: {type(e).__name__}: {e}"
                    if not isinstance(e, TimeoutError) else f"monitor {self.monitor.name} timed out "
                                                            f"after {self.timeout_s:g} s")
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(err)
                continue
            finally:
                self.stats.busy_s += loop.time() - t0
            self.stats.calls += 1
            self.stats.windows += len(flat)
            self.stats.max_batch = max(self.stats.max_batch, len(flat))
            if len(self.stats.sizes) < 100_000:
                self.stats.sizes.append(len(flat))
            i = 0
            for p in batch:
                part = list(results[i:i + len(p.traces)])
                i += len(p.traces)
                if not p.future.done():
                    p.future.set_result(part)

    async def aclose(self) -> None:
        """Stop the workers, close the monitor on its loop, stop the thread."""
        for w in self._workers:
            w.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        for p in self._queue:
            if not p.future.done():
                p.future.cancel()
        self._queue.clear()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.thread.call(self.monitor.aclose()), 10)
        await asyncio.to_thread(self.thread.stop)
