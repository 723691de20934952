"""The Ray executor: a stage's units fanned out over a Ray cluster, results streamed back to the driver.

Imported only when a stage is given ``ray=...`` (``cotscope[ray]``). Each worker is a Ray actor holding one
copy of the stage's :class:`~cotscope.pipeline._executor.WorkerJob`: it builds its backend once, on its
first unit, and keeps it (a vLLM server it starts or finds, a transformers or llama.cpp model, or a client of
the OpenAI-compatible server it is given; ``{node_ip}`` in a base URL names the worker's own node). The driver
keeps a few units in flight per worker, takes results as they finish (``ray.wait``) and hands them to the
stage, which writes the store. A worker that dies has its in-flight units handed to the survivors.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import deque
from collections.abc import Iterable
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from cotscope.pipeline._executor import NODE_IP_ENV, ExecutorStats, ResultCallback, WorkerJob

__all__ = ["RayExecutor"]

#: Lost workers replaced when none is left (a cluster that keeps killing them fails the stage instead).
MAX_REPLACEMENTS = 3

class _Worker:
    """One worker: the job, started on the first unit and kept for every later one."""

    def __init__(self, job: WorkerJob) -> None:
        # Before the job builds anything, so that a base URL's {node_ip} names this worker's node.
        os.environ[NODE_IP_ENV] = ray.util.get_node_ip_address()
        self.job = job
        self.started = False
        self.lock: asyncio.Lock | None = None

    async def run(self, payload: Any) -> Any:
        if not self.started:
            self.lock = self.lock or asyncio.Lock()
            async with self.lock:  # two first units arriving together start the job once
                if not self.started:
                    await self.job.start()
                    self.started = True
        return await self.job.run(payload)

    async def close(self) -> None:
        if self.started:
            self.started = False
            await self.job.close()

    def pid(self) -> int:
        return os.getpid()


_REMOTE: Any = None


def _remote_worker() -> Any:
    # Made once per process: every ray.remote() of a class exports it to the cluster again.
    global _REMOTE
    if _REMOTE is None:
        _REMOTE = ray.remote(_Worker)
    return _REMOTE


class RayExecutor:
    """Fans units out over a Ray cluster.

    Args:
        address: ``auto`` (the cluster ``ray start`` made on this machine), ``HOST:PORT``, ``ray://HOST:PORT``
            (Ray Client), or ``local`` (a private one-machine cluster started here). Ignored when this process
            is already connected (``ray.init`` done by the caller).
        workers: actors to start (default: one per alive node that has ``num_cpus`` to give; each keeps one
            backend, and the backend's own concurrency, e.g. vLLM's batching, fills its node). More than the
            cluster can place are not started.
        inflight: units per worker at once (two keep a worker busy while the driver handles a result).
        num_cpus: CPUs each actor reserves.
        num_gpus: GPUs each actor reserves (in-process GPU backends; ``vllm serve`` per node needs none).
        runtime_env: Ray's runtime environment for the actors (``env_vars``, ``pip``, ...).
        startup_timeout: seconds to wait for the actors to be placed; those still pending then (the cluster has
            no room for them) are given up, and with none placed the stage fails.
    """

    name = "ray"

    def __init__(self, address: str = "auto", workers: int | None = None, *, inflight: int = 2,
                 num_cpus: float = 1.0, num_gpus: float = 0.0, runtime_env: dict[str, Any] | None = None,
                 startup_timeout: float = 300.0) -> None:
        self.address = address
        self._workers = workers
        self.inflight = max(1, inflight)
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.runtime_env = runtime_env
        self.startup_timeout = startup_timeout
        #: The live actors of the current :meth:`map` (tests kill one to play a lost node).
        self.actors: list[Any] = []

    @property
    def workers(self) -> int:
        """Workers a :meth:`map` starts."""
        self.connect()
        total = ray.cluster_resources()
        room = int(total.get("CPU", 0) // self.num_cpus) if self.num_cpus > 0 else 1 << 30
        if self.num_gpus > 0:
            room = min(room, int(total.get("GPU", 0) // self.num_gpus))
        if self._workers is not None:
            return max(1, min(self._workers, room))
        nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) >= self.num_cpus]
        return max(1, min(len(nodes), room))

    def connect(self) -> None:
        """Join the cluster (once per process)."""
        if ray.is_initialized():
            return
        # ``local`` starts a fresh one-machine cluster (Ray's own spelling); the rest name an existing cluster.
        ray.init(address=self.address, include_dashboard=False, log_to_driver=False, configure_logging=False)

    def _spawn(self, job_ref: Any) -> Any:
        cls = _remote_worker().options(
            num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_concurrency=self.inflight + 2,
            scheduling_strategy="SPREAD", runtime_env=self.runtime_env)
        return cls.remote(job_ref)

    async def map(self, job: WorkerJob, units: Iterable[tuple[int, Any]], on_result: ResultCallback,
                  ) -> ExecutorStats:
        """See :meth:`cotscope.pipeline.Executor.map`."""
        n = self.workers  # connects
        stats = ExecutorStats(workers=n)
        job_ref = ray.put(job)
        self.actors = await self._placed([self._spawn(job_ref) for _ in range(n)])
        stats.workers = len(self.actors)
        load: dict[int, int] = {id(a): 0 for a in self.actors}
        it = iter(units)
        retry: deque[tuple[int, Any]] = deque()
        inflight: dict[Any, tuple[Any, int, Any]] = {}
        replaced = 0
        exhausted = False

        def next_unit() -> tuple[int, Any] | None:
            nonlocal exhausted
            if retry:
                return retry.popleft()
            if exhausted:
                return None
            u = next(it, None)
            exhausted = u is None
            return u

        def fill() -> None:
            for a in self.actors:
                while load[id(a)] < self.inflight:
                    u = next_unit()
                    if u is None:
                        return
                    inflight[a.run.remote(u[1])] = (a, *u)
                    load[id(a)] += 1

        def lose(actor: Any) -> None:
            nonlocal replaced
            if actor in self.actors:
                self.actors.remove(actor)
                stats.lost_workers += 1
                with contextlib.suppress(Exception):
                    ray.kill(actor, no_restart=True)
            if not self.actors:
                if replaced >= MAX_REPLACEMENTS:
                    raise RuntimeError(f"every Ray worker was lost ({stats.lost_workers} in all); giving up")
                replaced += 1
                fresh = self._spawn(job_ref)
                self.actors.append(fresh)
                load[id(fresh)] = 0

        try:
            while True:
                fill()
                if not inflight:
                    break
                ready, _ = await asyncio.to_thread(ray.wait, list(inflight), num_returns=1, timeout=1.0)
                if ready and len(inflight) > 1:  # whatever else finished meanwhile, without waiting
                    more, _ = ray.wait([r for r in inflight if r not in ready], num_returns=len(inflight) - 1,
                                       timeout=0)
                    ready = [*ready, *more]
                for ref in ready:
                    actor, key, payload = inflight.pop(ref)
                    load[id(actor)] -= 1
                    try:
                        result = ray.get(ref)
                    except RayTaskError as e:  # the job itself raised: a bug or a bad setting, not a lost node
                        raise e.as_instanceof_cause() from None
                    except RayActorError:
                        # The worker died or cannot be reached (its node is gone): the unit never came back, nothing
                        # of it reached the store, so another worker redoes it. Should the lost worker still finish
                        # it, that result is never fetched: each unit reaches the stage once.
                        stats.retried += 1
                        retry.append((key, payload))
                        lose(actor)
                        continue
                    on_result(key, result)
                    stats.units += 1
        finally:
            await self._close()
        return stats

    async def _placed(self, actors: list[Any]) -> list[Any]:
        """The actors the cluster placed within the start-up timeout; the others are given up."""
        calls = {a.pid.remote(): a for a in actors}
        ready, pending = await asyncio.to_thread(ray.wait, list(calls), num_returns=len(calls),
                                                 timeout=self.startup_timeout)
        placed = []
        for ref in ready:
            try:
                ray.get(ref)
                placed.append(calls[ref])
            except RayActorError:
                pass
        for ref in pending:
            with contextlib.suppress(Exception):
                ray.kill(calls[ref], no_restart=True)
        if not placed:
            raise RuntimeError(f"no Ray worker could be placed within {self.startup_timeout:g} s "
                               f"({self.num_cpus:g} CPU, {self.num_gpus:g} GPU each); see `ray status`")
        return placed

    async def _close(self) -> None:
        actors, self.actors = self.actors, []
        if not actors:
            return

        def close_all() -> None:
            with contextlib.suppress(GetTimeoutError, RayActorError, RayTaskError):
                ray.get([a.close.remote() for a in actors], timeout=60)
            for a in actors:
                with contextlib.suppress(Exception):
                    ray.kill(a, no_restart=True)

        await asyncio.to_thread(close_all)
