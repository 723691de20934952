"""The viewer's guard: which requests it answers, which writes it accepts, and the headers of every response.

- **Host**: a request whose ``Host`` header names another host is refused (400). A web page on another site
  cannot reach the viewer through DNS rebinding (its name resolving to 127.0.0.1): the browser sends that
  site's name as the Host.
- **Writes** (any method but GET and HEAD) are refused (403) in read-only mode; otherwise they need the token
  printed at start-up in the ``X-Cotscope-Token`` header (compared in constant time), a JSON body, and, when the
  browser says where the request comes from (``Origin``, ``Sec-Fetch-Site``), the viewer's own origin. A cookie
  is never enough: another site's page can make the browser send cookies, never a custom header (that needs a
  CORS preflight the viewer does not answer), so no site can drive the labelling.
- **Every response** carries a Content-Security-Policy allowing scripts, styles and requests from the viewer
  itself only (no inline script or style, no frames, no other origin), ``nosniff``, no referrer, no framing.
  No CORS header is ever sent.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: The header the page's script sends the token in.
TOKEN_HEADER = "x-cotscope-token"

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")

SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]

#: Names a loopback-bound viewer answers to.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def host_name(host_header: str) -> str:
    """The host name of a ``Host`` header, without the port (``[::1]:8000`` -> ``::1``), lower-cased."""
    h = host_header.strip().lower()
    if h.startswith("["):
        return h[1:h.index("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


def allowed_names(bind_host: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The host names the viewer answers to: the bound address (all loopback names for a loopback address),
    plus ``extra`` names (``--allow-host``)."""
    names = {host_name(bind_host) if not bind_host.startswith("[") else bind_host.strip("[]").lower()}
    if names & set(LOOPBACK_NAMES) or bind_host.startswith("127."):
        names |= set(LOOPBACK_NAMES)
    return frozenset(names | {n.lower() for n in extra})


class Guard:
    """ASGI middleware applying the checks above.

    Args:
        app: the application.
        hosts: host names accepted in the ``Host`` header (see :func:`allowed_names`).
        token: the write token.
        read_only: refuse every write.
    """

    def __init__(self, app: ASGIApp, *, hosts: frozenset[str], token: str, read_only: bool) -> None:
        self.app = app
        self.hosts = hosts
        self.token = token.encode()
        self.read_only = read_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (k, v) for k, v in SECURITY_HEADERS if k not in have]
            await send(message)

        headers = Headers(scope=scope)
        problem = self.refusal(scope["method"], headers)
        if problem is not None:
            status, text = problem
            resp: Any = (JSONResponse({"error": text}, status) if scope["path"].startswith("/api/")
                         else PlainTextResponse(text, status))
            await resp(scope, receive, send_secured)
            return
        await self.app(scope, receive, send_secured)

    def refusal(self, method: str, headers: Headers) -> tuple[int, str] | None:
        """``(status, reason)`` when the request must be refused, else ``None``."""
        host = headers.get("host")
        if not host or host_name(host) not in self.hosts:
            return 400, f"host {host!r} is not this viewer's (allowed: {', '.join(sorted(self.hosts))})"
        if method in ("GET", "HEAD"):
            return None
        if self.read_only:
            return 403, "the viewer is read-only (--read-only): labels cannot be stored"
        origin = headers.get("origin")
        if origin is not None and origin != f"http://{host}":
            return 403, f"cross-site write refused (origin {origin!r})"
        site = headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return 403, f"cross-site write refused (sec-fetch-site {site!r})"
        given = headers.get(TOKEN_HEADER, "").encode()
        if not given or not hmac.compare_digest(given, self.token):
            return 403, ("a write needs the token printed when the viewer started (open the URL it printed, with"
                         " ?token=...)")
        if headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return 415, "writes take a JSON body (content-type: application/json)"
        return None
