"""The ``view`` command (the local trace viewer) and ``export-labels`` (its human labels as a labelled file)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cotscope.cli._app import app, console, fail, open_store, print_json

if TYPE_CHECKING:
    from cotscope.view import ViewServer

StoreOpt = Annotated[Path, typer.Option("--store", "-s", help="DuckDB store file.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


@app.command("view")
def view_cmd(
    store: StoreOpt,
    host: Annotated[str, typer.Option("--host", help="Address to bind; keep 127.0.0.1 unless you mean to share "
                                                     "the viewer (then also --allow-host).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port; 0 picks a free one.")] = 0,
    read_only: Annotated[bool, typer.Option("--read-only", help="Refuse every write: browse only, no labels.")]
    = False,
    user: Annotated[str | None, typer.Option("--user", help="Author recorded with each label (default $USER).")]
    = None,
    label: Annotated[str, typer.Option("--label", help="Label name the labelling form starts with.")] = "unsafe",
    allow_host: Annotated[list[str] | None, typer.Option(
        "--allow-host", help="Another host name the viewer answers to (repeatable), e.g. the machine's name "
                             "when bound to a public address. Other Host headers are refused.")] = None,
    token: Annotated[str | None, typer.Option("--token", envvar="COTSCOPE_VIEW_TOKEN",
                                              help="Write token (default: a random one, printed).")] = None,
    json: JsonOpt = False,
) -> None:
    """Browse, compare and label the traces of a store in the browser (a local web app)."""
    try:
        from cotscope.view import ViewSettings, serve
    except ImportError as e:
        fail(f"cotscope view needs the view extra (pip install 'cotscope[view]'): {e}")
    if not store.exists():
        fail(f"{store}: no such store")
    if port < 0 or port > 65535:
        fail(f"--port {port}: expected 0-65535")
    settings = ViewSettings(store=store, read_only=read_only, token=token or "",
                            user=user or os.environ.get("USER") or None, default_label=label, host=host,
                            allow_hosts=list(allow_host or []))
    if host not in ("127.0.0.1", "localhost", "::1") and not allow_host:
        console.print(f"[yellow]warning:[/] bound to {escape(host)}: only requests naming {escape(host)} as their "
                      "host are answered; add --allow-host NAME for the names this machine is reached by",
                      highlight=False)

    def started(s: ViewServer) -> None:
        if json:
            print_json({"url": s.url, "login_url": None if read_only else s.login_url, "host": s.host,
                        "port": s.port, "store": str(store), "read_only": read_only, "user": settings.user})
            return
        console.print(f"cotscope view: [bold]{escape(str(store))}[/] at {escape(s.url)}"
                      f"{' (read-only)' if read_only else ''}", highlight=False)
        if not read_only:
            console.print(f"open this URL to label (it carries the write token): {escape(s.login_url)}",
                          highlight=False, soft_wrap=True)
        console.print("Ctrl+C stops it.", highlight=False)

    try:
        serve(settings, port, on_start=started)
    except OSError as e:
        fail(str(e))


@app.command("export-labels")
def export_labels_cmd(
    store: StoreOpt,
    name: Annotated[str, typer.Option("--name", help="Label name to export (e.g. unsafe).")],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="JSONL file to write.")],
    author: Annotated[str | None, typer.Option("--author", help="Only this author's labels.")] = None,
    json: JsonOpt = False,
) -> None:
    """Write the traces labelled in `cotscope view` as a labelled JSONL file (for `cotscope validate --labels`
    and the agreement benchmarks' `labelled` loader): each trace's newest label of NAME, true/false values."""
    with open_store(store, read_only=True) as st:
        rep = st.export_labels(out_path, name=name, author=author)
    if json:
        print_json(rep.to_dict())
        return
    t = Table(title=f"export-labels {name} -> {out_path}")
    for c in ("labelled traces", "written", "true", "false", "not true/false", "no longer stored"):
        t.add_column(c, justify="right")
    t.add_row(*(str(v) for v in (rep.traces, rep.written, rep.positives, rep.negatives, rep.not_boolean,
                                  rep.missing)))
    console.print(t)
    if rep.not_boolean:
        console.print(f"[yellow]left out {rep.not_boolean} traces whose label is neither true nor false[/] "
                      f"(e.g. {escape(rep.skipped[0]['value'])!r})", highlight=False)
    if rep.written == 0:
        fail(f"no trace labelled {name!r} true or false in {store}")
