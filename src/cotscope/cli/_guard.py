"""``cotscope guard``: serve a streaming CoT monitor in front of an OpenAI-compatible reasoning model.

The command parses options into a :class:`cotscope.guard.GuardConfig` and calls :func:`cotscope.guard.serve`;
uvicorn, starlette and the monitor are imported inside the command.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from cotscope.cli._app import app, console, fail, print_json

guard_app = typer.Typer(
    help="A streaming CoT monitor in front of a served reasoning model (OpenAI-compatible proxy).",
    no_args_is_help=True,
)
app.add_typer(guard_app, name="guard")


@guard_app.command("serve")
def serve_cmd(
    upstream: Annotated[str, typer.Option("--upstream", help="Upstream base URL, e.g. http://127.0.0.1:8000/v1.")],
    upstream_model: Annotated[str, typer.Option("--upstream-model", help="Model name sent upstream.")],
    monitor: Annotated[str, typer.Option("--monitor", "-m", help="Monitor (or judge) name, e.g. local-harm.")],
    monitor_model: Annotated[str | None, typer.Option(
        "--monitor-model", help="Grader model of an LLM monitor (provider/model).")] = None,
    option: Annotated[list[str] | None, typer.Option(
        "--option", "-o", help="Monitor option KEY=VALUE (repeatable), e.g. -o phrase=EVIL.")] = None,
    threshold: Annotated[float, typer.Option(help="Act when a check's suspicion is strictly greater.")] = 0.5,
    check_every: Annotated[int, typer.Option("--check-every", help="Characters between checks.")] = 200,
    first_check: Annotated[int, typer.Option(
        "--first-check", help="Characters before a stream's first check; 0 = --check-every. Small: an earlier "
                              "first token under --release checked, but short windows misclassify more.")] = 0,
    window: Annotated[int, typer.Option(
        "--window", help="Characters each check reads (the last ones); 0 = the whole text.")] = 1000,
    policy: Annotated[str, typer.Option("--policy", help="block, flag or log.")] = "block",
    release: Annotated[str, typer.Option(
        "--release", help="checked (hold text until a check passed it) or live (forward at once).")] = "checked",
    opaque_reasoning: Annotated[str, typer.Option(
        "--opaque-reasoning", help="Encrypted/signed reasoning the monitor cannot read: pass or block.")] = "pass",
    on_monitor_error: Annotated[str, typer.Option(
        "--on-monitor-error", help="open (pass the text) or closed (stop) when a check fails.")] = "open",
    refusal_text: Annotated[str | None, typer.Option(
        "--refusal-text", help="Content of the final chunk of a blocked generation.")] = None,
    store: Annotated[Path | None, typer.Option("--store", "-s", help="Record every request in this store.")] = None,
    upstream_api_key: Annotated[str | None, typer.Option(
        "--upstream-api-key", envvar="COTSCOPE_GUARD_UPSTREAM_KEY",
        help="Key sent upstream (default: forward the caller's Authorization header).")] = None,
    upstream_timeout: Annotated[float, typer.Option(
        "--upstream-timeout", help="Seconds without a byte from the upstream before a request fails.")] = 600.0,
    non_stream_upstream: Annotated[str, typer.Option(
        "--non-stream-upstream", help="Non-streaming requests: stream (ask the upstream for a stream, so a flag "
                                      "cuts the generation early) or whole (forward as they are and check the "
                                      "whole response; for upstreams that cannot stream).")] = "stream",
    monitor_timeout: Annotated[float, typer.Option("--monitor-timeout", help="Seconds before a check fails.")] = 30.0,
    max_batch: Annotated[int, typer.Option("--max-batch", help="Most windows per monitor call.")] = 64,
    monitor_concurrency: Annotated[int, typer.Option(
        "--monitor-concurrency", help="Monitor calls in flight (1 for embedded monitors).")] = 1,
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="Port (0 picks a free one).")] = 8000,
    json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object at exit.")] = False,
) -> None:
    """Serve /v1/chat/completions and /v1/models, watching each generation's reasoning with a monitor."""
    from pydantic import ValidationError

    from cotscope._options import parse_kv
    from cotscope.guard import DEFAULT_REFUSAL, Guard, GuardConfig, serve

    try:
        cfg = GuardConfig(
            upstream=upstream, upstream_model=upstream_model, upstream_api_key=upstream_api_key, monitor=monitor,
            monitor_model=monitor_model, monitor_options=parse_kv(option or [], "-o/--option"),
            threshold=threshold, check_every=check_every, first_check=first_check or None, window=window or None,
            policy=policy, release=release, opaque_reasoning=opaque_reasoning,  # type: ignore[arg-type]
            on_monitor_error=on_monitor_error,  # type: ignore[arg-type]
            refusal_text=refusal_text or DEFAULT_REFUSAL, monitor_timeout_s=monitor_timeout, max_batch=max_batch,
            monitor_concurrency=monitor_concurrency, upstream_timeout_s=upstream_timeout,
            non_stream_upstream=non_stream_upstream)  # type: ignore[arg-type]
    except ValidationError as e:
        fail("; ".join(f"--{'-'.join(str(x) for x in err['loc']).replace('_', '-')}: {err['msg']}"
                       for err in e.errors()))
    try:
        guard = Guard(cfg, store=store)
    except (ValueError, TypeError) as e:
        fail(f"--monitor {monitor}: {e}")

    def ready(p: int) -> None:
        console.print(f"guard on [bold]http://{escape(host)}:{p}/v1[/] -> {escape(cfg.upstream)} "
                      f"(model {escape(cfg.upstream_model)}), monitor {escape(guard.monitor.name)}, policy "
                      f"{cfg.policy}, release {cfg.release}" + (f", store {escape(str(store))}" if store else ""),
                      highlight=False)

    with contextlib.suppress(KeyboardInterrupt):
        try:
            _event_loop_run(serve(guard, host, port, on_ready=ready))
        except OSError as e:
            fail(f"cannot serve on {host}:{port} or open the store: {e}")
    _summary(guard, json)


def _event_loop_run(coro: Coroutine[Any, Any, None]) -> None:
    """Run the server on uvloop when it is installed (the ``guard`` extra installs it), else on asyncio's loop.

    uvicorn picks uvloop by itself only when it creates the loop; the guard runs inside its own."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
        return
    uvloop.run(coro)


def _summary(guard: Any, as_json: bool) -> None:
    stats = guard.stats.to_dict() | {"monitor_calls": guard.batcher.stats.calls,
                                     "windows": guard.batcher.stats.windows,
                                     "largest_batch": guard.batcher.stats.max_batch,
                                     "monitor_errors": guard.batcher.stats.errors}
    errors: list[str] = []
    if guard.writer is not None:
        w = guard.writer
        stats |= {"recorded": w.written, "record_failures": w.failed, "not_written": w.not_written}
        errors = list(w.errors)
    if as_json:
        print_json(stats | ({"record_errors": errors} if guard.writer is not None else {}))
        return
    t = Table(title="cotscope guard")
    t.add_column("what")
    t.add_column("count", justify="right")
    for k, v in stats.items():
        if k == "actions":
            for a, n in sorted(v.items()):
                t.add_row(f"requests {a}", f"{n:,}")
        else:
            t.add_row(k.replace("_", " "), f"{v:,}")
    console.print(t)
    for line in errors:  # why records were not stored (each names the request ids)
        console.print(f"[red]record not stored:[/] {escape(line)}", highlight=False)
