"""Where a stage's work runs: in this process (the default), or fanned out to workers by an :class:`Executor`.

A stage that fans out cuts its work into *units* (generation: whole groups, all K samples of a prompt;
evaluation: batches of traces, shipped as rows; agents: one episode) and describes its workers with a
:class:`WorkerJob`: a small picklable object that builds its backend once per worker (:meth:`WorkerJob.start`)
and then turns one unit's payload into one result (:meth:`WorkerJob.run`). The executor hands units to
workers, streams results back as they finish and calls the stage's ``on_result`` in the driver, which alone
writes the store with the same flush and resume logic as the in-process path.

A unit whose worker is lost is handed to another worker; its result reaches ``on_result`` at most once, and
the store's content keys make a unit that was finished twice (a driver killed between a worker's reply and
its store write) harmless.

Two executors: :class:`InlineExecutor` (simulated workers in this event loop; the contract without a
cluster, used by the tests) and :class:`cotscope.pipeline._ray.RayExecutor` (a Ray cluster; ``cotscope[ray]``).
:func:`get_executor` builds the Ray one lazily, so ``import cotscope.pipeline`` never imports Ray.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

__all__ = [
    "NODE_IP_ENV",
    "RAY_ENV",
    "Executor",
    "ExecutorStats",
    "InlineExecutor",
    "WorkerJob",
    "batches",
    "get_executor",
    "node_url",
]

#: The environment variable the CLI's ``--ray`` reads when the option is not given (``auto``, ``HOST:PORT``).
RAY_ENV = "COTSCOPE_RAY"

#: Set on every worker to the address of the node it runs on; ``{node_ip}`` in a base URL becomes this.
NODE_IP_ENV = "COTSCOPE_NODE_IP"

T = TypeVar("T")

#: ``on_result(key, result)``: called in the driver, once per unit, in order of completion.
ResultCallback = Callable[[int, Any], None]


@runtime_checkable
class WorkerJob(Protocol):
    """What every worker of one stage run does; pickled once and sent to each worker.

    It must hold only plain data (model names, options, settings): each worker builds its own backend from
    them in :meth:`start`, so nothing with open connections or loaded weights crosses the network.
    """

    async def start(self) -> None:
        """Build what the worker keeps for every unit (the backend); called once per worker, before any unit."""
        ...

    async def run(self, payload: Any) -> Any:
        """One unit's result. Failures of the work itself are part of the result (error outputs), not raised:
        an exception here fails the stage."""
        ...

    async def close(self) -> None:
        """Release what :meth:`start` built."""
        ...


@dataclass
class ExecutorStats:
    """What one :meth:`Executor.map` did.

    Attributes:
        workers: workers used.
        units: units finished (each reached ``on_result`` once).
        retried: units handed to another worker after theirs was lost.
        lost_workers: workers that died during the run.
    """

    workers: int = 0
    units: int = 0
    retried: int = 0
    lost_workers: int = 0

    def to_dict(self) -> dict[str, int]:
        """The stats as a JSON object."""
        return {"workers": self.workers, "units": self.units, "retried": self.retried,
                "lost_workers": self.lost_workers}


@runtime_checkable
class Executor(Protocol):
    """Runs a stage's units on workers and streams their results back to the driver.

    Attributes:
        name: recorded in the stage's stats (``inline``, ``ray``).
    """

    name: str

    @property
    def workers(self) -> int:
        """How many workers a :meth:`map` uses (stages size their units by it)."""
        ...

    async def map(self, job: WorkerJob, units: Iterable[tuple[int, Any]], on_result: ResultCallback,
                  ) -> ExecutorStats:
        """Run every ``(key, payload)`` unit through ``job`` on the workers; ``on_result(key, result)`` once per
        unit as it finishes. Units are drawn from ``units`` lazily, a few per worker ahead of need."""
        ...


def batches(items: Sequence[T], key: Callable[[T], Hashable], workers: int, max_items: int) -> list[list[T]]:
    """``items`` cut into batches that never split a key's run (a group's K samples stay together).

    Batches hold at most ``max_items`` items (one key with more stays whole), and are small enough that each
    worker gets about four: a lost worker then costs little, and the last batches do not leave workers idle.
    """
    if not items:
        return []
    target = max(1, min(max_items, -(-len(items) // (max(1, workers) * 4))))
    out: list[list[T]] = []
    cur: list[T] = []
    i = 0
    while i < len(items):
        j = i + 1
        while j < len(items) and key(items[j]) == key(items[i]):
            j += 1
        run = list(items[i:j])
        if cur and len(cur) + len(run) > target:
            out.append(cur)
            cur = []
        cur.extend(run)
        i = j
    if cur:
        out.append(cur)
    return out


def node_url(url: str | None) -> str | None:
    """A base URL with ``{node_ip}`` replaced by the address of the node this worker runs on.

    One ``vllm serve`` per node, each worker talking to its own node's server: give
    ``http://{node_ip}:8000/v1`` (or ``http://127.0.0.1:8000/v1``, which every worker resolves locally).
    """
    if url is None or "{node_ip}" not in url:
        return url
    return url.replace("{node_ip}", os.environ.get(NODE_IP_ENV, "127.0.0.1"))


class InlineExecutor:
    """Simulated workers in this event loop: each builds its own copy of the job, as a Ray worker would.

    It runs the same unit protocol as :class:`~cotscope.pipeline._ray.RayExecutor` without a cluster (tests,
    and a quick check of a stage's fan-out logic). Jobs are copied with pickle, so a job that would not
    reach a Ray worker fails here too.

    Args:
        workers: simulated workers.
        inflight: units per worker at once.
    """

    name = "inline"

    def __init__(self, workers: int = 2, inflight: int = 2) -> None:
        self.workers = max(1, workers)
        self.inflight = max(1, inflight)

    async def map(self, job: WorkerJob, units: Iterable[tuple[int, Any]], on_result: ResultCallback,
                  ) -> ExecutorStats:
        """See :meth:`Executor.map`."""
        import pickle

        stats = ExecutorStats(workers=self.workers)
        it = iter(units)

        async def worker() -> None:
            mine: WorkerJob = pickle.loads(pickle.dumps(job))
            await mine.start()
            try:
                gate = asyncio.Semaphore(self.inflight)

                async def one(key: int, payload: Any) -> None:
                    try:
                        result = await mine.run(payload)
                    finally:
                        gate.release()
                    on_result(key, result)
                    stats.units += 1

                tasks = []
                for key, payload in it:
                    await gate.acquire()
                    tasks.append(asyncio.ensure_future(one(key, payload)))
                await asyncio.gather(*tasks)
            finally:
                await mine.close()

        await asyncio.gather(*(worker() for _ in range(self.workers)))
        return stats


def get_executor(ray: str | Executor | None = None, workers: int | None = None) -> Executor | None:
    """The executor a stage runs on: ``None`` (in this process) unless ``ray`` names an executor or a cluster.

    The library never reads ``$COTSCOPE_RAY`` itself (a Python caller gets what it passes); the CLI's ``--ray``
    option does.

    Args:
        ray: an executor, or a Ray address: ``auto`` (the cluster ``ray start`` made on this machine),
            ``HOST:PORT`` / ``ray://HOST:PORT``, or ``local`` (start a private one-machine cluster). ``None``
            or an empty string: in this process.
        workers: Ray workers (default: one per alive node).

    Raises:
        ImportError: Ray is not installed (``pip install 'cotscope[ray]'``).
    """
    if ray is not None and not isinstance(ray, str):
        return ray
    if not ray:
        return None
    from cotscope.pipeline._ray import RayExecutor

    return RayExecutor(ray, workers=workers)
