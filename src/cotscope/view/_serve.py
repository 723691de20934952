"""Serving the viewer with uvicorn, in the foreground (the command) or in a thread (tests, notebooks)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from cotscope.view._app import ViewSettings, create_app


@dataclass
class ViewServer:
    """A running viewer.

    Attributes:
        host: the bound address.
        port: the bound port (the one the system chose for port 0).
        token: the write token.
        server: the uvicorn server (set ``should_exit`` to stop it, or call :meth:`stop`).
        thread: the thread serving it, for a server started in the background.
    """

    host: str
    port: int
    token: str
    server: Any
    thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The viewer's address, without the token."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def login_url(self) -> str:
        """The address with the token: opening it lets that browser store labels."""
        return f"{self.url}?token={quote(self.token, safe='')}"

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving (and wait for the thread of a background server)."""
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout)


def _server(settings: ViewSettings, port: int, log_level: str) -> Any:
    import uvicorn

    config = uvicorn.Config(create_app(settings), host=settings.host, port=port, log_level=log_level,
                            access_log=log_level == "debug", proxy_headers=False, server_header=False)
    return uvicorn.Server(config)


def _bound_port(server: Any) -> int:
    for s in getattr(server, "servers", []) or []:
        for sock in s.sockets:
            return int(sock.getsockname()[1])
    raise OSError("the viewer did not bind a port")


def serve(settings: ViewSettings, port: int = 0, *, on_start: Callable[[ViewServer], None] | None = None,
          log_level: str = "warning") -> None:
    """Serve the viewer in the foreground until interrupted.

    Args:
        settings: store, mode, token, user, host.
        port: the port (0: one the system picks).
        on_start: called once the socket is bound, with the running server (its URL and token).
        log_level: uvicorn's log level.

    Raises:
        FileNotFoundError: the store file does not exist.
        OSError: the address cannot be bound.
    """
    server = _server(settings, port, log_level)
    if on_start is not None:
        # uvicorn sets `started` once bound; a watcher thread reports the chosen port then.
        def watch() -> None:
            while not server.started and not server.should_exit:
                time.sleep(0.02)
            if server.started:
                on_start(ViewServer(settings.host, _bound_port(server), settings.token, server))

        threading.Thread(target=watch, daemon=True).start()
    server.run()
    if not server.started:
        raise OSError(f"cannot serve on {settings.host}:{port}")


def serve_in_thread(settings: ViewSettings, port: int = 0, *, timeout: float = 20.0,
                    log_level: str = "warning") -> ViewServer:
    """Start the viewer in a background thread and return once it listens (tests, notebooks).

    Raises:
        FileNotFoundError: the store file does not exist.
        OSError: it did not start within ``timeout`` seconds.
    """
    server = _server(settings, port, log_level)
    thread = threading.Thread(target=server.run, daemon=True, name="cotscope-view")
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise OSError(f"the viewer did not start on {settings.host}:{port}")
        time.sleep(0.02)
    return ViewServer(settings.host, _bound_port(server), settings.token, server, thread)
