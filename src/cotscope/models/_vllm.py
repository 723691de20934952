"""The vLLM backend: ``vllm/MODEL`` starts ``vllm serve`` as a managed subprocess, or connects to a server.

The way people run vLLM: one OpenAI-compatible server per model, with tensor parallelism, a GPU memory
fraction and a reasoning parser. This module starts that server on 127.0.0.1 (one per model and
settings, shared by every backend built for them in this process), waits until ``/health`` answers
(failing early with the server's log when it exits), and stops the whole process group at exit. Requests
go through :class:`~cotscope.models._openai.OpenAIModel`. With ``--model-base-url`` nothing is started.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from cotscope.errors import ConfigError
from cotscope.models._openai import OpenAIModel, coerce_openai_args, load_tokenizer
from cotscope.models._protocol import GenerateRequest, ModelOutput, modelapi


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class VLLMServer:
    """One managed ``vllm serve`` process.

    Args:
        model: the model to serve (Hub id or path).
        tensor_parallel_size: GPUs per model replica.
        gpu_memory_utilization: the fraction of GPU memory vLLM may take.
        reasoning_parser: e.g. ``deepseek_r1`` or ``qwen3``, so that replies carry ``reasoning_content``.
        port: default a free port.
        executable: the ``vllm`` command (``$COTSCOPE_VLLM`` or ``vllm`` on PATH).
        extra_args: more ``vllm serve`` arguments.
        startup_timeout: seconds to wait for ``/health``.
    """

    def __init__(
        self,
        model: str,
        *,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        reasoning_parser: str | None = None,
        port: int | None = None,
        executable: str | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 1800.0,
    ) -> None:
        self.model = model
        self.port = port or _free_port()
        exe = executable or os.environ.get("COTSCOPE_VLLM") or "vllm"
        found = shutil.which(exe)
        if found is None:
            raise RuntimeError(f"{exe!r} not found on PATH: pip install 'cotscope[vllm]' or pass --model-base-url")
        self.argv = [found, "serve", model, "--host", "127.0.0.1", "--port", str(self.port),
                     "--tensor-parallel-size", str(int(tensor_parallel_size)),
                     "--gpu-memory-utilization", str(float(gpu_memory_utilization))]
        if reasoning_parser:
            self.argv += ["--reasoning-parser", reasoning_parser]
        self.argv += list(extra_args)
        self.startup_timeout = float(startup_timeout)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    @property
    def base_url(self) -> str:
        """The server's ``/v1`` URL."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        """Start the server and wait until it is healthy.

        Raises:
            RuntimeError: the server exited or did not become healthy in time (with its log's end).
        """
        fd, log = tempfile.mkstemp(prefix="cotscope-vllm-", suffix=".log")
        self.log_path = Path(log)
        with os.fdopen(fd, "wb") as logf:
            # A session of its own: vLLM spawns workers, and stopping must reach all of them.
            self.proc = subprocess.Popen(self.argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        deadline = time.monotonic() + self.startup_timeout
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"vllm serve exited with code {self.proc.returncode} (log kept at "
                                       f"{self.log_path}):\n{self.log_tail()}")
                try:
                    if client.get(f"http://127.0.0.1:{self.port}/health").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.25)
        self.stop(keep_log=True)
        raise RuntimeError(f"vllm serve not healthy after {self.startup_timeout:g}s (log kept at {self.log_path}):"
                           f"\n{self.log_tail()}")

    def log_tail(self, n: int = 4000) -> str:
        """The end of the server's log."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_bytes()[-n:].decode("utf-8", "replace")

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 20.0, *, keep_log: bool = False) -> None:
        """Stop the server's process group: SIGTERM, then SIGKILL after ``grace`` seconds.

        The server's log is removed unless ``keep_log`` (a server that failed keeps its log for the error).
        """
        try:
            self._stop(grace)
        finally:
            if not keep_log and self.log_path is not None:
                self.log_path.unlink(missing_ok=True)

    def _stop(self, grace: float) -> None:
        p = self.proc
        if p is None or p.poll() is not None:
            return
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)


_SERVERS: dict[tuple[Any, ...], tuple[VLLMServer, int]] = {}
_SERVERS_LOCK = threading.Lock()


def acquire_server(model: str, **options: Any) -> VLLMServer:
    """The running server for a model and options, started if needed (one per model and settings)."""
    key = (model, tuple(sorted((k, tuple(v) if isinstance(v, list | tuple) else v) for k, v in options.items())))
    with _SERVERS_LOCK:
        if key in _SERVERS and _SERVERS[key][0].running:
            srv, n = _SERVERS[key]
            _SERVERS[key] = (srv, n + 1)
            return srv
        srv = VLLMServer(model, **options)
        srv.start()
        _SERVERS[key] = (srv, 1)
        return srv


def release_server(server: VLLMServer) -> None:
    """Drop one user of a server; the last one stops it."""
    with _SERVERS_LOCK:
        for key, (srv, n) in list(_SERVERS.items()):
            if srv is server:
                if n <= 1:
                    del _SERVERS[key]
                    srv.stop()
                else:
                    _SERVERS[key] = (srv, n - 1)
                return


@atexit.register
def stop_all_servers() -> None:
    """Stop every managed server (runs at interpreter exit)."""
    with _SERVERS_LOCK:
        servers = [s for s, _ in _SERVERS.values()]
        _SERVERS.clear()
    for s in servers:
        s.stop()


_SERVER_OPTS = ("tensor_parallel_size", "gpu_memory_utilization", "reasoning_parser", "port", "executable",
                "extra_args", "startup_timeout")


class VLLMModel:
    """``vllm/MODEL``: a managed (or given) vLLM server spoken to through the OpenAI-compatible backend."""

    batch_size = 1

    def __init__(self, model: str, base_url: str | None = None, **model_args: Any) -> None:
        opts = {k: model_args.pop(k) for k in _SERVER_OPTS if k in model_args}
        if isinstance(opts.get("extra_args"), str):
            opts["extra_args"] = opts["extra_args"].split()
        self.server: VLLMServer | None = None
        if base_url is None:
            self.server = acquire_server(model, **opts)
            base_url = self.server.base_url
        self.name = f"vllm/{model}"
        # Managed servers get a new port each time; the cache must not depend on it.
        self.cache_id = self.name if self.server is not None else f"{self.name}@{base_url}"
        if self.server is not None and "tokenizer" not in model_args:
            # vLLM loaded this model, so its tokenizer is on disk: prefills are then checked against the chat
            # template rendered locally (a template that drops or rewrites a prefill is caught before sending).
            try:
                load_tokenizer(model)
                model_args["tokenizer"] = model
            except ConfigError:
                pass
        self.client = OpenAIModel(model, base_url, name=self.name, **coerce_openai_args(model_args))
        self.max_concurrency = self.client.max_concurrency

    async def generate(self, requests: Sequence[GenerateRequest]) -> list[ModelOutput]:
        """Generate through the server."""
        return await self.client.generate(requests)

    async def aclose(self) -> None:
        """Close connections and release (maybe stop) the managed server."""
        await self.client.aclose()
        if self.server is not None:
            release_server(self.server)
            self.server = None


@modelapi("vllm")
def vllm_model(model: str, base_url: str | None = None, **model_args: Any) -> VLLMModel:
    """``vllm/MODEL``: start ``vllm serve MODEL`` (or use ``--model-base-url``)."""
    for k in ("tensor_parallel_size", "port"):
        if k in model_args:
            model_args[k] = int(model_args[k])
    for k in ("gpu_memory_utilization", "startup_timeout"):
        if k in model_args:
            model_args[k] = float(model_args[k])
    return VLLMModel(model, base_url, **model_args)
