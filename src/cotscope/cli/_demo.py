"""``cotscope demo``: the main job on the embedded defaults."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cotscope.cli._app import app, console, out, print_json, progress_bar


def sample_files() -> list[Path]:
    """The bundled sample trace files, one per supported format."""
    root = resources.files("cotscope") / "data" / "samples"
    return sorted(Path(str(p)) for p in root.iterdir() if p.name != "SOURCE.md")


@app.command()
def demo(
    store: Annotated[Path, typer.Option("--store", "-s", help="DuckDB store to fill.")] = Path("runs/demo.duckdb"),
    json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
) -> None:
    """Ingest the bundled sample traces (every supported format) and summarise them."""
    from cotscope.store import Store
    from cotscope.traces import segment_spans

    store.parent.mkdir(parents=True, exist_ok=True)
    files = sample_files()
    summary: dict[str, dict[str, float]] = {}
    errors = []
    with Store(store) as st, progress_bar(quiet=json) as prog:
        task = prog.add_task("ingest samples", total=len(files), info="")
        for f in files:
            prog.update(task, info=f.name)
            rep = st.ingest([f])
            errors.extend(rep.errors)
            prog.advance(task)
        rows = list(st.iter_rows())
        task2 = prog.add_task("summarise", total=len(rows), info="")
        for r in rows:
            key = r["source_format"] or "?"
            s = summary.setdefault(key, {"traces": 0, "closed": 0, "steps": 0, "reflections": 0,
                                         "reasoning_chars": 0, "actions": 0})
            spans = r["steps"] if r["steps"] is not None else segment_spans(r["reasoning"] or "")
            s["traces"] += 1
            s["closed"] += bool(r["reasoning_closed"])
            s["steps"] += len(spans)
            s["reflections"] += sum(1 for _, _, k in spans if k == "reflection")
            s["reasoning_chars"] += len(r["reasoning"] or "")
            s["actions"] += len(r["actions"] or [])
            prog.advance(task2)
    if json:
        print_json({"store": str(store), "formats": summary, "errors": errors})
        return
    t = Table(title=f"sample traces in {store}")
    for c in ("format", "traces", "closed", "mean steps", "reflections", "mean reasoning chars", "actions"):
        t.add_column(c, justify="right" if c != "format" else "left")
    for k, s in sorted(summary.items()):
        n = s["traces"]
        t.add_row(k, str(int(n)), f"{s['closed'] / n:.0%}", f"{s['steps'] / n:.1f}", str(int(s["reflections"])),
                  f"{s['reasoning_chars'] / n:,.0f}", str(int(s["actions"])))
    out.print(t)
    for e in errors:
        console.print(f"[yellow]rejected[/] {escape(str(e['source']))}:{e['line']}: {escape(e['error'])}")
    console.print(f"next: [bold]cotscope traces --store {store}[/], [bold]cotscope show ID --store {store}[/]")
