"""The guard's HTTP server: an OpenAI-compatible Starlette app in front of an upstream server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

import aiohttp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from cotscope.guard._checks import CheckBatcher
from cotscope.guard._config import GuardConfig
from cotscope.guard._record import GuardRecord, RecordWriter
from cotscope.guard._session import GuardSession
from cotscope.monitors import Monitor, get_monitor

T = TypeVar("T")


@dataclass
class GuardStats:
    """Counts of what the server did since it started."""

    requests: int = 0
    streams: int = 0
    actions: dict[str, int] = field(default_factory=dict)
    bad_requests: int = 0
    active: int = 0

    def to_dict(self) -> dict[str, Any]:
        """As JSON."""
        return {"requests": self.requests, "streams": self.streams, "actions": dict(self.actions),
                "bad_requests": self.bad_requests, "active": self.active}


class Guard:
    """The guard's shared state: settings, monitor batcher, upstream client, record writer.

    Args:
        cfg: the settings.
        store: the store file every request is recorded in (``None``: record nothing).
        monitor: a monitor to use instead of building ``cfg.monitor`` from the registry.
        on_record: called with each finished record (tests, benchmarks).
    """

    def __init__(self, cfg: GuardConfig, *, store: str | Path | None = None, monitor: Monitor | None = None,
                 on_record: Callable[[GuardRecord], None] | None = None) -> None:
        self.cfg = cfg
        self.monitor = monitor or get_monitor(cfg.monitor, model=cfg.monitor_model, **cfg.monitor_options)
        self.store_path = store
        self.on_record = on_record
        self.stats = GuardStats()
        self.batcher = CheckBatcher(self.monitor, max_batch=cfg.max_batch, concurrency=cfg.monitor_concurrency,
                                    timeout_s=cfg.monitor_timeout_s)
        self.client: aiohttp.ClientSession | None = None
        self.writer: RecordWriter | None = None
        self.evaluator = f"guard:{self.monitor.name}"
        self._sessions: set[GuardSession] = set()

    def evaluator_config(self) -> dict[str, Any]:
        """The configuration of the guard's results (hashed into their store key)."""
        return {"guard": self.cfg.record_config(), "monitor": self.monitor.config()}

    async def start(self) -> None:
        """Open the upstream client and the store, start the batcher."""
        # aiohttp rather than httpx: at 32 streams the upstream client was about half of the guard's own CPU
        # (py-spy), and a burst of 32 requests waited on it for their first token (docs/guard.md, Measured).
        # No connection limit (each stream holds one); no total timeout (a stream lasts as long as the
        # generation); a read that waits ``upstream_timeout_s`` for a byte fails.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10.0, sock_read=self.cfg.upstream_timeout_s)
        self.client = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout,
                                            trust_env=False, proxy=env_proxy(self.cfg.upstream))
        self.batcher.start()
        if self.store_path is not None:
            self.writer = RecordWriter(self.store_path, evaluator=self.evaluator,
                                       label_meaning=self.monitor.label_meaning, config=self.evaluator_config(),
                                       run_config=self.cfg.model_dump(exclude={"upstream_api_key"}))
            await self.writer.start()

    async def aclose(self) -> None:
        """Cancel live requests, close the client, write the last records, stop the monitor."""
        for s in list(self._sessions):
            await s.cancel()
        if self.client is not None:
            await self.client.close()
        if self.writer is not None:
            await self.writer.aclose()
        await self.batcher.aclose()

    def headers(self, request: Request) -> dict[str, str]:
        """Headers sent upstream: the configured key, else the caller's ``Authorization``."""
        if self.cfg.upstream_api_key:
            return {"Authorization": f"Bearer {self.cfg.upstream_api_key}"}
        auth = request.headers.get("authorization")
        return {"Authorization": auth} if auth else {}

    def finish(self, session: GuardSession) -> None:
        """Record a finished request."""
        self._sessions.discard(session)
        self.stats.active = len(self._sessions)
        rec = session.finalize()
        self.stats.actions[rec.action] = self.stats.actions.get(rec.action, 0) + 1
        if self.writer is not None:
            self.writer.submit(rec)
        if self.on_record is not None:
            self.on_record(rec)

    # -- routes ----------------------------------------------------------------------------------------
    async def models(self, request: Request) -> Response:
        """``GET /v1/models``: the one model the guard serves."""
        return JSONResponse({"object": "list", "data": [{"id": self.cfg.upstream_model, "object": "model",
                                                         "owned_by": "cotscope-guard"}]})

    async def health(self, request: Request) -> Response:
        """``GET /health``: liveness, request counts and the monitor's load (calls, windows, busy seconds)."""
        b = self.batcher.stats
        return JSONResponse({"status": "ok", **self.stats.to_dict(),
                             "monitor": {"calls": b.calls, "windows": b.windows, "largest_batch": b.max_batch,
                                         "errors": b.errors, "busy_s": round(b.busy_s, 3)}})

    async def chat(self, request: Request) -> Response:
        """``POST /v1/chat/completions``, streaming or not."""
        try:
            body = json.loads(await request.body())
        except ValueError as e:
            return self._bad(f"the request body is not JSON: {e}")
        if not isinstance(body, dict):
            return self._bad("the request body must be a JSON object")
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs or not all(isinstance(m, dict) for m in msgs):
            return self._bad("'messages' must be a non-empty list of message objects")
        if body.get("n") not in (None, 1):
            return self._bad("the guard watches one choice per request: 'n' must be 1")
        assert self.client is not None
        self.stats.requests += 1
        rec = GuardRecord(prompt=msgs, model=self.cfg.upstream_model, stream=bool(body.get("stream")),
                          fail_mode=self.cfg.on_monitor_error, opaque_policy=self.cfg.opaque_reasoning,
                          config=self.cfg.record_config())
        session = GuardSession(self.cfg, self.batcher, body, rec)
        self._sessions.add(session)
        self.stats.active = len(self._sessions)
        headers = self.headers(request)
        if not rec.stream:
            # "stream": read the upstream as a stream so that a flag cuts the generation; "whole": cannot stream.
            answer = session.collect if self.cfg.non_stream_upstream == "stream" else session.complete
            try:
                got = await _unless_client_leaves(request, answer(self.client, headers))
                if got is None:  # the client left: its request was cancelled, the upstream connection closed
                    rec.client_disconnected = True
            finally:
                self.finish(session)
            if got is None:
                return Response(b"", status_code=499)  # nobody reads it
            status, data, extra = got
            return Response(data, status_code=status, media_type="application/json",
                            headers=extra | {"X-Cotscope-Guard-Request": rec.request_id})
        self.stats.streams += 1
        try:
            status, out = await session.stream(self.client, headers)
        except BaseException:
            await session.cancel()
            self.finish(session)
            raise
        if status != 200 or isinstance(out, bytes):
            await session.cancel()
            self.finish(session)
            return Response(out if isinstance(out, bytes) else b"", status_code=status,
                            media_type="application/json")
        return StreamingResponse(self._finishing(session, out), media_type="text/event-stream",
                                 headers={"X-Cotscope-Guard-Policy": self.cfg.policy,
                                          "X-Cotscope-Guard-Request": rec.request_id,
                                          "Cache-Control": "no-cache"})

    async def _finishing(self, session: GuardSession, out: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        try:
            async for chunk in out:
                yield chunk
        finally:
            with contextlib.suppress(Exception):
                await out.aclose()  # type: ignore[attr-defined]
            self.finish(session)

    def _bad(self, message: str) -> Response:
        self.stats.bad_requests += 1
        return JSONResponse({"error": {"message": message, "type": "invalid_request_error"}}, status_code=400)


def env_proxy(url: str) -> str | None:
    """The proxy the environment sets for ``url`` (``HTTP(S)_PROXY``, ``NO_PROXY``), or ``None``.

    Resolved once when the guard starts: aiohttp's ``trust_env`` looks the proxy (and ``~/.netrc``) up in a
    worker thread for every request, which py-spy showed as a large share of the guard's time at 32 streams.
    """
    parts = urlsplit(url)
    proxies = getproxies()
    if not parts.hostname or proxy_bypass(parts.hostname):
        return None
    return proxies.get(parts.scheme)


async def _unless_client_leaves(request: Request, work: Coroutine[Any, Any, T]) -> T | None:
    """Run ``work`` for a non-streamed request; ``None`` when its client disconnects first (``work`` cancelled).

    A non-streaming endpoint is not cancelled when its client goes away, so without this a client that timed
    out would leave its generation running upstream to the end.
    """
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_client_gone(request))
    try:
        await asyncio.wait([task, gone], return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            # Cancelled once and awaited without a second cancel (asyncio.wait): its cleanup closes the upstream
            # connection, and a second cancel would interrupt that close.
            task.cancel()
            await asyncio.wait([task])
    if task.cancelled():
        return None
    return task.result()


async def _client_gone(request: Request) -> None:
    """Return when the client disconnects (the request body has been read, so the next message says so)."""
    if (await request.receive())["type"] != "http.disconnect":
        await asyncio.Event().wait()  # not the server's usual answer: never report the client as gone


def create_app(guard: Guard) -> Starlette:
    """The Starlette app serving ``guard`` (its lifespan starts and stops the guard)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await guard.start()
        try:
            yield
        finally:
            await guard.aclose()

    routes = [Route("/v1/chat/completions", guard.chat, methods=["POST"]),
              Route("/chat/completions", guard.chat, methods=["POST"]),
              Route("/v1/models", guard.models, methods=["GET"]),
              Route("/health", guard.health, methods=["GET"])]
    return Starlette(routes=routes, lifespan=lifespan)


async def serve(guard: Guard, host: str = "127.0.0.1", port: int = 8000,
                on_ready: Callable[[int], None] | None = None, log_level: str = "warning",
                stop: asyncio.Event | None = None) -> None:
    """Serve until ``stop`` is set (or interrupted); ``on_ready`` gets the bound port (``port=0`` picks one).

    Shutting down is graceful: open streams get a few seconds, then the guard cancels what is left,
    writes the last records and closes the store.
    """
    import uvicorn

    config = uvicorn.Config(create_app(guard), host=host, port=port, log_level=log_level, lifespan="on",
                            timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(), name="guard-uvicorn")
    try:
        while not server.started:
            if task.done():
                await task
                raise RuntimeError("the guard server stopped while starting (see the log above)")
            await asyncio.sleep(0.02)
        if on_ready is not None:
            on_ready(server.servers[0].sockets[0].getsockname()[1])
        if stop is None:
            await task
        else:
            waiter = asyncio.create_task(stop.wait())
            await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
    finally:
        if not task.done():
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await task


class GuardThread:
    """A guard serving on 127.0.0.1 from its own event loop in a daemon thread (tests, benchmarks, notebooks).

    Use as a context manager; ``base_url`` is the ``/v1`` URL clients use and :meth:`run` runs a coroutine
    on the guard's loop (to inspect its tasks, say).
    """

    def __init__(self, guard: Guard, host: str = "127.0.0.1", port: int = 0) -> None:
        self.guard = guard
        self.host = host
        self.port = port
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="cotscope-guard", daemon=True)

    @property
    def base_url(self) -> str:
        """The ``/v1`` URL clients use."""
        return f"http://{self.host}:{self.port}/v1"

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)

        def ready(p: int) -> None:
            self.port = p
            self._ready.set()

        async def main() -> None:
            self._stop = asyncio.Event()
            await serve(self.guard, self.host, self.port, on_ready=ready, stop=self._stop)

        try:
            self.loop.run_until_complete(main())
        except BaseException as e:  # reported to the starting thread
            self._error = e
        finally:
            self._ready.set()
            self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the guard's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def __enter__(self) -> GuardThread:
        self._thread.start()
        self._ready.wait(60)
        if self._error is not None:
            raise RuntimeError(f"the guard did not start: {self._error}") from self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
