"""The generation engine: many requests through one backend and one strategy, with cache and stats.

Requests are cut into chunks of the backend's ``batch_size`` (1 for HTTP, 8 or so for local models) and
served by ``max_concurrency`` workers (the HTTP connection limit; 1 for in-process models). Cache hits
are looked up in bulk before anything is sent. Every request ends in exactly one call of ``on_result``:
an output, or an output whose ``error`` names the cause (a backend that raises is turned into error
outputs for its chunk, so nothing is silently dropped).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cotscope.models._cache import CachedModel, RequestCache
from cotscope.models._protocol import DecodingStrategy, GenerateRequest, Model, ModelOutput, PlainDecoding

ResultCallback = Callable[[int, ModelOutput], None]


@dataclass
class EngineStats:
    """What one engine run did."""

    requests: int = 0
    completed: int = 0
    cached: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    error_causes: dict[str, int] = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        """Completion tokens per second of wall time (cached outputs included)."""
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def requests_per_s(self) -> float:
        """Requests finished per second of wall time."""
        return (self.completed + self.errors) / self.seconds if self.seconds > 0 else 0.0

    def add(self, out: ModelOutput) -> None:
        """Count one finished request."""
        if out.error is not None:
            self.errors += 1
            # Group causes without the attempt count so that the summary stays short.
            cause = out.error.split(" (gave up", 1)[0]
            self.error_causes[cause] = self.error_causes.get(cause, 0) + 1
            return
        self.completed += 1
        self.cached += bool(out.cached)
        self.prompt_tokens += out.prompt_tokens or 0
        self.completion_tokens += out.completion_tokens or 0

    def to_dict(self) -> dict[str, Any]:
        """The stats as a JSON-ready dict."""
        return {
            "requests": self.requests,
            "completed": self.completed,
            "cached": self.cached,
            "errors": self.errors,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "seconds": round(self.seconds, 4),
            "tokens_per_s": round(self.tokens_per_s, 2),
            "requests_per_s": round(self.requests_per_s, 2),
            "error_causes": self.error_causes,
        }


class Engine:
    """Runs requests through a backend with a strategy and an optional cache.

    The engine draws nothing: callers follow it through ``on_result`` (the generation stage turns that into
    progress reports) and :attr:`stats`.

    Args:
        model: the backend.
        strategy: the decoding strategy, any :class:`DecodingStrategy` (default: requests as they are).
        cache: the request cache, or ``None`` to send everything.
    """

    def __init__(
        self,
        model: Model,
        strategy: DecodingStrategy | None = None,
        cache: RequestCache | None = None,
    ) -> None:
        self.model = model
        self.strategy: DecodingStrategy = strategy or PlainDecoding()
        self.cache = cache
        self.backend: Model = CachedModel(model, cache) if cache is not None else model
        self.stats = EngineStats()
        self._queue: list[tuple[GenerateRequest, asyncio.Future[ModelOutput]]] = []
        self._in_flight = 0
        self._pump_scheduled = False

    async def submit(self, request: GenerateRequest) -> ModelOutput:
        """Generate one request among others submitted concurrently (multi-turn callers such as the agent loop).

        Requests submitted in the same event-loop turn are served together in chunks of the backend's
        ``batch_size`` with at most ``max_concurrency`` chunks in flight, so concurrent episodes batch on a
        local model as a single :meth:`run` would. Outputs go through the cache and into :attr:`stats`; a
        backend that raises gives an error output, never an exception. ``stats.seconds`` is left to the caller,
        which knows the wall time of its whole job.
        """
        fut: asyncio.Future[ModelOutput] = asyncio.get_running_loop().create_future()
        self._queue.append((request, fut))
        self.stats.requests += 1
        if not self._pump_scheduled:
            self._pump_scheduled = True
            asyncio.get_running_loop().call_soon(self._pump)
        return await fut

    def _limits(self) -> tuple[int, int]:
        bs = max(1, int(getattr(self.backend, "batch_size", getattr(self.model, "batch_size", 1))))
        conc = max(1, int(getattr(self.backend, "max_concurrency", getattr(self.model, "max_concurrency", 1))))
        return bs, conc

    def _pump(self) -> None:
        self._pump_scheduled = False
        bs, conc = self._limits()
        while self._queue and self._in_flight < conc:
            chunk, self._queue = self._queue[:bs], self._queue[bs:]
            self._in_flight += 1
            asyncio.get_running_loop().create_task(self._serve(chunk))

    async def _chunk(self, requests: list[GenerateRequest]) -> list[ModelOutput]:
        """One chunk through the strategy and backend; a backend that raises (or miscounts) gives error outputs
        for the whole chunk, so nothing is silently dropped."""
        try:
            outs = await self.strategy.generate(self.backend, requests)
            if len(outs) != len(requests):
                raise RuntimeError(f"backend returned {len(outs)} outputs for {len(requests)} requests")
        except Exception as e:
            outs = [ModelOutput(error=f"backend failure: {type(e).__name__}: {e}") for _ in requests]
        return outs

    async def _serve(self, chunk: list[tuple[GenerateRequest, asyncio.Future[ModelOutput]]]) -> None:
        try:
            outs = await self._chunk([r for r, _ in chunk])
        finally:
            self._in_flight -= 1
        for (_, fut), out in zip(chunk, outs, strict=True):
            self.stats.add(out)
            if not fut.done():
                fut.set_result(out)
        if self._queue:
            self._pump()

    async def run(
        self, requests: Sequence[GenerateRequest], on_result: ResultCallback | None = None
    ) -> list[ModelOutput]:
        """Generate all requests; returns outputs in request order and calls ``on_result(i, out)`` as each ends."""
        n = len(requests)
        stats = self.stats = EngineStats(requests=n)
        results: list[ModelOutput | None] = [None] * n
        t0 = time.perf_counter()

        def finish(i: int, out: ModelOutput) -> None:
            if results[i] is not None:  # a second result for one request would be a bug; keep the first
                return
            results[i] = out
            stats.add(out)
            if on_result is not None:
                on_result(i, out)

        try:
            todo = list(range(n))
            if self.cache is not None and self.strategy.single_round:
                # Single-round strategies: the model requests are known now, so all hits come in one query.
                prepared = [self.strategy.prepare(r) for r in requests]
                keys = CachedModel(self.model, self.cache).keys(prepared)
                hits = self.cache.get_many(keys)
                todo = []
                for i, h in enumerate(hits):
                    if h is None:
                        todo.append(i)
                    else:
                        finish(i, h)
            await self._dispatch(requests, todo, finish)
        finally:
            stats.seconds = time.perf_counter() - t0
            if self.cache is not None:
                self.cache.flush()
        missing = [i for i, r in enumerate(results) if r is None]
        for i in missing:  # cannot happen unless a worker was cancelled; still never drop a request silently
            finish(i, ModelOutput(error="not generated (run interrupted)"))
        return [r for r in results if r is not None]

    async def _dispatch(self, requests: Sequence[GenerateRequest], todo: list[int], finish: ResultCallback) -> None:
        if not todo:
            return
        bs, conc = self._limits()
        chunks = [todo[i : i + bs] for i in range(0, len(todo), bs)]
        it = iter(chunks)

        async def worker() -> None:
            # Workers pull chunks from a shared iterator: at most `conc` chunks in flight, no task per request.
            for chunk in it:
                outs = await self._chunk([requests[i] for i in chunk])
                for i, o in zip(chunk, outs, strict=True):
                    finish(i, o)

        await asyncio.gather(*(worker() for _ in range(min(conc, len(chunks)))))


async def generate_all(
    model: Model,
    requests: Sequence[GenerateRequest],
    strategy: DecodingStrategy | None = None,
    cache: RequestCache | None = None,
) -> list[ModelOutput]:
    """Generate all requests with an :class:`Engine` (no progress bar)."""
    return await Engine(model, strategy, cache).run(requests)
