"""The viewer's Starlette application: pages, a small JSON API, label writes and the label export."""

from __future__ import annotations

import io
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from cotscope.store import Label, Store
from cotscope.traces import Trace
from cotscope.view import _render as R
from cotscope.view._access import StoreAccess, StoreBusy
from cotscope.view._query import Filters, facets, label_names, list_page, neighbour, same_prompt
from cotscope.view._security import Guard, allowed_names


class NotFound(LookupError):
    """No trace (or page) of that name."""


class Ambiguous(LookupError):
    """An id prefix that matches several traces."""


@dataclass
class ViewSettings:
    """How one viewer runs.

    Attributes:
        store: the store file.
        read_only: refuse every write (no labelling).
        token: the write token (a random one when empty).
        user: the author recorded with each label.
        default_label: the label name the labelling form starts with.
        host: the address the server binds (decides the host names it answers to).
        allow_hosts: further host names to answer to (a name the machine is reached by).
        keep_open: seconds the store stays open (read-only) after a request, see :mod:`cotscope.view._access`.
    """

    store: Path
    read_only: bool = False
    token: str = ""
    user: str | None = None
    default_label: str = "unsafe"
    host: str = "127.0.0.1"
    allow_hosts: list[str] = field(default_factory=list)
    keep_open: float = 2.0

    def __post_init__(self) -> None:
        self.store = Path(self.store)
        if not self.token:
            self.token = secrets.token_urlsafe(24)


class LabelIn(BaseModel):
    """The body of ``POST /api/labels``: the author is the viewer's ``--user``, never the request's."""

    trace_id: str = Field(min_length=1, max_length=1000)
    name: str = Field(min_length=1, max_length=100)
    value: str = Field(min_length=1, max_length=200)
    note: str = Field(default="", max_length=10_000)


def _filters(request: Request) -> Filters:
    """The list filters of the query string (unknown parameters are ignored; a bad value raises)."""
    q = request.query_params
    data: dict[str, Any] = {k: q[k] for k in Filters.model_fields if k in q and k != "parse_error"}
    data["parse_error"] = q.get("parse_error") in ("1", "true", "on", "yes")
    return Filters(**data)


def _bad_params(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(x) for x in err['loc']) or 'query'}: {err['msg']}" for err in e.errors())


def _trace_payload(t: Trace, results: list[dict[str, Any]], labels: list[Label]) -> dict[str, Any]:
    return {"trace": t.model_dump(mode="json"), "results": results,
            "labels": [lab.model_dump(mode="json") for lab in labels]}


def create_app(settings: ViewSettings) -> Starlette:
    """The viewer as an ASGI application (serve it with :func:`cotscope.view.serve`, or any ASGI server).

    Args:
        settings: the store, mode, token and user.

    Raises:
        FileNotFoundError: the store file does not exist.
    """
    access = StoreAccess(settings.store, keep_open=settings.keep_open)
    writable = not settings.read_only

    def html(title: str, body: str, name: str, status: int = 200) -> HTMLResponse:
        return HTMLResponse(R.page(title, body, page_name=name, store=str(settings.store), writable=writable,
                                   user=settings.user), status)

    def error(request: Request, status: int, heading: str, message: str) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": message}, status)
        return html(heading, R.error_body(heading, message), "error", status)

    def load(store: Store, ref: str) -> Trace:
        """A trace by id or unique prefix; :class:`NotFound` (404) or :class:`Ambiguous` (400) otherwise."""
        try:
            t = store.get(ref)
        except KeyError as e:
            raise Ambiguous(str(e.args[0]) if e.args else str(e)) from None
        if t is None:
            raise NotFound(f"no trace {ref!r} in this store")
        return t

    def index(request: Request) -> Response:
        try:
            f = _filters(request)
        except ValidationError as e:
            return error(request, 400, "Bad filter", _bad_params(e))
        with access.read() as store:
            p = list_page(store, f)
            fc = access.cache.get("facets") or access.cache.setdefault("facets", facets(store))
        return html("traces", R.index_body(p, f, fc, default_label=settings.default_label), "index")

    def api_traces(request: Request) -> Response:
        try:
            f = _filters(request)
        except ValidationError as e:
            return error(request, 400, "Bad filter", _bad_params(e))
        with access.read() as store:
            p = list_page(store, f)
        return JSONResponse({"total": p.total, "offset": p.offset, "limit": p.limit,
                             "rows": [r.__dict__ for r in p.rows]})

    def trace_page(request: Request) -> Response:
        ref = request.path_params["trace_id"]
        try:
            f = _filters(request)
            pos = int(request.query_params.get("pos", "-1"))
        except (ValidationError, ValueError) as e:
            return error(request, 400, "Bad filter", _bad_params(e) if isinstance(e, ValidationError) else str(e))
        with access.read() as store:
            t = load(store, ref)
            results = store.results(trace_ids=[t.id])
            meanings = store.label_meanings()
            labels = store.labels(trace_ids=[t.id])
            names = sorted(set(label_names(store)) | {settings.default_label})
            siblings = same_prompt(store, t.id)
            nav: dict[str, str | None] = {"prev": None, "next": None}
            if pos >= 0:
                nav = {"prev": neighbour(store, f, pos - 1), "next": neighbour(store, f, pos + 1)}
        list_query = f.query()
        if pos >= 0:
            list_query["pos"] = str(pos)
        body = R.trace_body(t, results, meanings, labels, siblings, label_names=names,
                            default_label=settings.default_label, nav=nav, list_query=list_query)
        return html(f"trace {t.id[:12]}", body, "trace")

    def api_trace(request: Request) -> Response:
        with access.read() as store:
            t = load(store, request.path_params["trace_id"])
            payload = _trace_payload(t, store.results(trace_ids=[t.id]), store.labels(trace_ids=[t.id]))
        return JSONResponse(_jsonable(payload))

    def compare(request: Request) -> Response:
        qp = request.query_params
        a_ref, b_ref = qp.get("a"), qp.get("b")
        want = {k: qp[k] for k in ("model", "strategy") if qp.get(k)}
        if not a_ref or not (b_ref or want):
            return error(request, 400, "Compare what?", "give two traces, /compare?a=ID&b=ID (ids or unique prefixes),"
                         " or a trace and another model or strategy, /compare?a=ID&model=M (or &strategy=S)")
        with access.read() as store:
            a = load(store, a_ref)
            if b_ref:
                b = load(store, b_ref)
            else:
                # The same prompt under another model or strategy: its sample of the same index when there is one.
                cands = [s for s in same_prompt(store, a.id) if all(s[k] == v for k, v in want.items())]
                if not cands:
                    raise NotFound(f"no trace of this prompt with {', '.join(f'{k} {v}' for k, v in want.items())}")
                pick = next((s for s in cands if s["sample_index"] == a.sample_index), cands[0])
                b = load(store, pick["id"])
            ra, rb = store.results(trace_ids=[a.id]), store.results(trace_ids=[b.id])
            meanings = store.label_meanings()
        return html("compare", R.compare_body(a, b, ra, rb, meanings), "compare")

    async def add_label(request: Request) -> Response:
        try:
            body = LabelIn.model_validate_json(await request.body())
            lab = Label(trace_id=body.trace_id, name=body.name, value=body.value, note=body.note,
                        author=settings.user)  # strips blanks: a blank name or value is refused here
        except ValidationError as e:
            return JSONResponse({"error": _bad_params(e)}, 400)

        def write() -> Label:
            with access.write() as store:
                try:
                    return store.add_labels([lab])[0]
                except KeyError as e:
                    raise NotFound(str(e.args[0]) if e.args else str(e)) from None

        stored = await run_in_threadpool(write)  # DuckDB blocks: keep it off the event loop
        return JSONResponse(stored.model_dump(mode="json"), 201)

    def api_labels(request: Request) -> Response:
        name = request.query_params.get("name") or None
        tid = request.query_params.get("trace_id")
        with access.read() as store:
            labs = store.labels(name=name, trace_ids=[tid] if tid else None)
        return JSONResponse([lab.model_dump(mode="json") for lab in labs])

    def export(request: Request) -> Response:
        name = request.query_params.get("name")
        if not name:
            return error(request, 400, "Export what?", "give a label name: /labels/export?name=NAME")
        buf = io.BytesIO()
        with access.read() as store:
            rep = store.export_labels(buf, name=name, author=request.query_params.get("author") or None)
        fname = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:60] or "labels"
        return Response(buf.getvalue(), media_type="application/x-ndjson", headers={
            "content-disposition": f'attachment; filename="labels-{fname}.jsonl"',
            "x-cotscope-export": f"written={rep.written} positives={rep.positives} negatives={rep.negatives}"
                                 f" not_boolean={rep.not_boolean} missing={rep.missing}"})

    async def on_busy(request: Request, exc: Exception) -> Response:
        return error(request, 503, "Store busy", str(exc))

    async def on_missing(request: Request, exc: Exception) -> Response:
        return error(request, 404, "Not found", str(exc))

    async def on_ambiguous(request: Request, exc: Exception) -> Response:
        return error(request, 400, "Ambiguous id", str(exc))

    async def on_not_found(request: Request, exc: Exception) -> Response:
        return error(request, 404, "Not found", f"no page {request.url.path!r}")

    routes = [
        Route("/", index),
        Route("/traces/{trace_id:path}", trace_page),
        Route("/compare", compare),
        Route("/labels/export", export),
        Route("/api/traces", api_traces),
        Route("/api/traces/{trace_id:path}", api_trace),
        Route("/api/labels", api_labels, methods=["GET"]),
        Route("/api/labels", add_label, methods=["POST"]),
        Mount("/static", StaticFiles(packages=[("cotscope.view", "static")]), name="static"),
    ]
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        access.close()  # the file is free for other processes as soon as the viewer stops

    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={
        StoreBusy: on_busy, NotFound: on_missing, Ambiguous: on_ambiguous, 404: on_not_found})
    app.add_middleware(Guard, hosts=allowed_names(settings.host, settings.allow_hosts), token=settings.token,
                       read_only=settings.read_only)
    app.state.settings = settings
    app.state.access = access
    return app


def _jsonable(v: Any) -> Any:
    """``v`` with datetimes as ISO text, for JSON responses."""
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v
