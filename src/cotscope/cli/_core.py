"""Core commands: ingest, export, traces, show."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from cotscope.cli._app import TracesOpt, app, console, fail, open_store, out, print_json, progress_bar

if TYPE_CHECKING:
    from cotscope.store import Store
    from cotscope.traces import Trace

StoreOpt = Annotated[Path, typer.Option("--store", "-s", help="DuckDB store file.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


@app.command()
def ingest(
    files: Annotated[list[Path], typer.Argument(
        help="Trace files: JSONL, JSON, CSV, SafeChain, Inspect logs, Parquet; a folder is a Parquet dataset "
             "(every .parquet file under it, such as a partitioned export).")],
    store: StoreOpt,
    format: Annotated[str, typer.Option("--format", "-f", help="auto, or a file/record format name.")] = "auto",
    model: Annotated[str | None, typer.Option(help="Model name for records that name none.")] = None,
    strategy: Annotated[str | None, typer.Option(help="Strategy name for records that name none.")] = None,
    json: JsonOpt = False,
) -> None:
    """Read trace files of any supported format into a store."""
    from cotscope.store import Store
    from cotscope.traces import FORMATS, TraceFileError
    from cotscope.traces._read import dataset_files

    if format not in FORMATS:
        fail(f"unknown format {format!r}: expected one of {', '.join(FORMATS)}")
    for f in files:
        if not f.exists():
            fail(f"{f}: no such file")
    try:
        files = [x for f in files for x in dataset_files(f)]
    except TraceFileError as e:
        fail(str(e))
    for f in files:
        if not f.is_file():
            fail(f"{f}: not a regular file")
    try:
        st = Store(store)
    except OSError as e:
        fail(str(e))
    total_bytes = sum(f.stat().st_size for f in files)
    file_error: str | None = None
    try:
        with progress_bar(quiet=json) as prog:
            task = prog.add_task("ingest", total=len(files), info="")
            started: list[Path] = []

            def on_file(f: Path) -> None:
                if started:
                    prog.advance(task)
                started.append(f)
                prog.update(task, description=f"ingest {f.name}")

            def on_batch(records: int) -> None:
                prog.update(task, info=f"{records:,} records")

            report = st.ingest(files, format=format, model=model, strategy=strategy, on_file=on_file,
                               on_batch=on_batch)
            prog.update(task, completed=len(files))
    except TraceFileError as e:
        file_error = str(e)
    finally:
        st.close()
    if file_error is not None:
        fail(file_error)
    if json:
        print_json(report.to_dict())
        return
    t = Table(title=f"ingest into {store}")
    for c in ("files", "records", "traces", "new", "duplicates", "rejected", "MB/s"):
        t.add_column(c, justify="right")
    mbs = total_bytes / 1e6 / report.seconds if report.seconds else 0.0
    t.add_row(str(len(files)), f"{report.records:,}", f"{report.traces:,}", f"{report.new:,}",
              f"{report.duplicates:,}", f"{report.rejected:,}", f"{mbs:.1f}")
    console.print(t)
    for err in report.errors[:20]:
        console.print(f"[red]rejected[/] {escape(str(err['source']))}:{err['line']}: {escape(err['error'])}",
                      highlight=False, soft_wrap=True)
    if len(report.errors) > 20:
        console.print(f"... and {report.rejected - 20} more (use --json for all)")
    if report.lost:
        # Fields of the sources that no trace keeps: said here as well as in --json, never dropped silently.
        lt = Table(title="source fields not kept")
        for c in ("file", "format", "field", "records", "why"):
            lt.add_column(c, justify="right" if c == "records" else "left")
        for d in report.lost[:30]:
            lt.add_row(escape(Path(str(d["file"])).name), escape(str(d.get("format"))), escape(str(d["field"])),
                       f"{int(d.get('records') or 0):,}", escape(str(d.get("reason") or "")))
        console.print(lt)
        if len(report.lost) > 30:
            console.print(f"... and {len(report.lost) - 30} more fields (use --json for all)")


@app.command()
def export(
    store: StoreOpt,
    format: Annotated[str, typer.Option("--format", "-f", help="jsonl or parquet.")] = "jsonl",
    out_file: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Output file (stdout for jsonl); with --partition-by, the dataset folder.")] = None,
    with_results: Annotated[bool, typer.Option("--with-results", help="Add judge/monitor results.")] = False,
    model: Annotated[str | None, typer.Option(help="Only traces of this model.")] = None,
    strategy: Annotated[str | None, typer.Option(help="Only traces of this strategy.")] = None,
    partition_by: Annotated[str | None, typer.Option(
        "--partition-by", metavar="COLS",
        help="Write a Hive-partitioned Parquet dataset into the --out folder, split by these comma-separated "
             "columns (model, strategy); readable by `ingest DIR` and `--traces DIR`.")] = None,
    traces: TracesOpt = None,
) -> None:
    """Write stored traces as JSONL or Parquet, one record per trace (or a partitioned Parquet dataset)."""
    from cotscope.store import export_traces

    cols = [c.strip() for c in (partition_by or "").split(",") if c.strip()]
    if partition_by is not None and not cols:
        fail("--partition-by needs column names, e.g. model,strategy")
    st = _open(store, traces)
    try:
        if out_file is not None:
            out_file.parent.mkdir(parents=True, exist_ok=True)
        n = export_traces(st, out_file, format, with_results=with_results, partition_by=cols or None, model=model,
                          strategy=strategy)
    except ValueError as e:
        fail(str(e))
    finally:
        st.close()
    if out_file is not None:
        console.print(f"wrote {n:,} traces to {out_file}")


@app.command("traces")
def list_traces(
    store: StoreOpt,
    limit: Annotated[int, typer.Option(help="At most this many traces.")] = 20,
    model: Annotated[str | None, typer.Option(help="Only traces of this model.")] = None,
    strategy: Annotated[str | None, typer.Option(help="Only traces of this strategy.")] = None,
    where: Annotated[list[str] | None, typer.Option(
        "--where", "-w", metavar="EXPR",
        help="Only traces whose stored results match (repeatable, all must hold): NAME=LABEL where NAME is "
             "an evaluator or evaluator:part and LABEL is true, false, the label meaning or not-MEANING "
             "(local-refusal:answer=refused, llama-guard=unsafe, refusal-strings=not-refused); "
             "parse_error; NAME:parse_error.")] = None,
    json: JsonOpt = False,
    traces: TracesOpt = None,
) -> None:
    """List stored traces, optionally filtered by their judge/monitor results."""
    from cotscope.errors import ConfigError

    st = _open(store, traces)
    try:
        if where:
            try:
                ids = st.trace_ids_where(where, model=model, strategy=strategy)
            except ConfigError as e:
                fail(f"--where {e}")
            total = len(ids)
            rows = list(st.iter_rows(ids=ids[:limit])) if ids else []
        else:
            total = st.count(model=model, strategy=strategy)
            rows = list(st.iter_rows(limit=limit, model=model, strategy=strategy))
    finally:
        st.close()
    if json:
        print_json({"total": total, "traces": [
            {"id": r["id"], "model": r["model"], "strategy": r["strategy"], "group_id": r["group_id"],
             "sample_index": r["sample_index"], "reasoning_chars": len(r["reasoning"] or ""),
             "answer_chars": len(r["answer"] or ""), "reasoning_closed": r["reasoning_closed"],
             "steps": _n_steps(r), "prompt": _row_preview(r, 10_000)} for r in rows]})
        return
    t = Table(title=f"{len(rows)} of {total:,} traces in {store}" + (f" where {' and '.join(where)}" if where else ""))
    for c in ("id", "model", "strategy", "#", "prompt", "reasoning", "answer", "closed", "steps"):
        t.add_column(c, overflow="ellipsis", no_wrap=True, min_width=24 if c == "prompt" else None,
                     ratio=1 if c == "prompt" else None)
    for r in rows:
        t.add_row(r["id"][:12], r["model"] or "-", r["strategy"] or "-", str(r["sample_index"]),
                  Text(_row_preview(r, 60)), f"{len(r['reasoning'] or ''):,} ch",
                  f"{len(r['answer'] or ''):,} ch", "yes" if r["reasoning_closed"] else "[red]no[/]",
                  str(_n_steps(r)))
    out.print(t)


@app.command()
def show(
    trace_id: Annotated[str, typer.Argument(help="Trace id or a unique prefix of it.")],
    store: StoreOpt,
    json: JsonOpt = False,
    traces: TracesOpt = None,
) -> None:
    """Print one trace (reasoning and answer separated, steps numbered; an agent episode step by step) and every
    judge/monitor result of it."""
    from cotscope.traces import is_agent_trace

    st = _open(store, traces)
    try:
        try:
            trace = st.get(trace_id)
        except KeyError as e:
            fail(str(e.args[0]))
        results = st.results(trace_ids=[trace.id]) if trace is not None else []
        meanings = st.label_meanings() if results else {}
    finally:
        st.close()
    if trace is None:
        fail(f"no trace with id {trace_id!r} in {store}")
    shown = [_result_view(r, meanings, trace) for r in results]
    if json:
        print_json(trace.model_dump() | {"results": shown})
        return
    head = Text()
    head.append(f"id {trace.id}   model {trace.model or '-'}   strategy {trace.strategy or '-'}   ")
    head.append(f"group {trace.group_id}   sample {trace.sample_index}")
    if trace.source:
        head.append(f"\nsource {trace.source.file}:{trace.source.line} ({trace.source.format})")
    out.print(head)
    for m in trace.prompt:
        out.print(Panel(Text(m.content), title=f"prompt: {m.role}", title_align="left", border_style="blue"))
    title = "reasoning" + ("" if trace.reasoning_closed else " (never closed: budget ran out)")
    if is_agent_trace(trace):
        pass  # reasoning is shown per agent step, next to the step's commands
    elif trace.steps:
        body = Text()
        for s in trace.steps:
            body.append(f"[{s.index + 1}] ", style="bold cyan" if s.kind == "paragraph" else "bold magenta")
            if s.kind != "paragraph":
                body.append(f"({s.kind}) ", style="dim")
            body.append(s.text + "\n")
        out.print(Panel(body, title=f"{title}: {len(trace.steps)} steps", title_align="left", border_style="yellow"))
    else:
        out.print(Panel(Text("(no reasoning)", style="dim"), title=title, title_align="left", border_style="yellow"))
    if is_agent_trace(trace):
        _show_trajectory(trace)
    else:
        out.print(Panel(Text(trace.answer or "(empty answer)"), title="answer", title_align="left",
                        border_style="green"))
    if shown:
        out.print(_results_panel(shown))


def _show_trajectory(trace: Trace) -> None:
    """An agent episode step by step: the step's reasoning, then each command, its exit code and output."""
    from cotscope.traces import command_of, step_view
    from cotscope.traces._trajectory import clip_output

    agent = trace.metadata.get("agent") if isinstance(trace.metadata.get("agent"), dict) else None
    for sv in step_view(trace):
        body = Text()
        if sv.reasoning:
            body.append(sv.reasoning + "\n", style="yellow")
        for a in sv.actions:
            if a.kind == "control":
                body.append(f"[{a.name}]\n", style="bold magenta")
                continue
            code = (a.model_extra or {}).get("exit_code")
            timed_out = (a.model_extra or {}).get("timed_out")
            body.append(f"$ {command_of(a)}", style="bold")
            body.append("  (timed out)\n" if timed_out else f"  (exit {code})\n" if code is not None else "\n",
                        style="dim")
            body.append(clip_output(a.output or "").rstrip("\n") + ("\n" if a.output else ""))
        out.print(Panel(body, title=f"step {sv.index + 1}", title_align="left", border_style="magenta"))
    if agent:
        out.print(Panel(Text(f"{agent.get('status')}: {agent.get('reason')}\nscore {agent.get('score')} "
                             f"({agent.get('checker')}) · task {agent.get('task_id')} ({agent.get('variant')})"),
                        title="outcome", title_align="left", border_style="green"))


def _result_view(r: dict[str, Any], meanings: dict[tuple[str, str], str], trace: Trace) -> dict[str, Any]:
    """One stored result as ``show`` prints it: its label in words and its evidence re-verified on the trace."""
    from cotscope.judges import Evidence, verify

    meaning = meanings.get((r["evaluator"], r["config_hash"]))
    evidence = []
    for e in r.get("evidence") or []:
        try:
            ev = Evidence.model_validate(e)
        except ValueError:  # a malformed stored item is shown as it is, unverified
            evidence.append({"text": str(e), "verified": False})
            continue
        # Verified again here, whatever the stored flag says: the trace is the ground truth.
        evidence.append(verify(ev, trace).model_dump(exclude_none=True))
    return {"evaluator": r["evaluator"], "config_hash": r["config_hash"], "part": r["part"], "kind": r["kind"],
            "label": r["label"], "label_meaning": meaning, "label_text": _label_text(r["label"], meaning),
            "score": r["score"], "parse_error": r["parse_error"], "reason": r["reason"], "evidence": evidence}


def _label_text(label: bool | None, meaning: str | None) -> str:
    if label is None:
        return "no label"
    if meaning is None:
        return str(label).lower()
    return meaning if label else f"not {meaning}"


def _results_panel(shown: list[dict[str, Any]]) -> Panel:
    body = Text()
    for i, r in enumerate(shown):
        if i:
            body.append("\n")
        body.append(f"{r['evaluator']}:{r['part']}", style="bold")
        body.append(f"  ({r['kind']}, config {r['config_hash']})\n", style="dim")
        if r["parse_error"]:
            body.append("  parse error: ", style="bold red")
            body.append(f"{r['parse_error']}\n")
        else:
            body.append(f"  label {r['label_text']}", style="bold")
            score = "-" if r["score"] is None else f"{r['score']:.3f}"
            body.append(f"   score {score}\n")
        if r["reason"]:
            body.append(f"  reason: {r['reason']}\n")
        for e in r["evidence"]:
            if e.get("verified"):
                body.append("  verified ", style="green")
                body.append(f"{e.get('field')}[{e.get('start')}:{e.get('end')}] ", style="dim")
            else:
                body.append("  unverified ", style="red")
            body.append(f"\"{_clip(e.get('text') or '', 300)}\"\n")
    return Panel(body, title=f"results: {len(shown)}", title_align="left", border_style="cyan")


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _open(store: Path, traces: list[str] | None = None) -> Store:
    return open_store(store, traces=traces)


def _row_preview(row: dict[str, Any], width: int) -> str:
    """What a listed trace answers: the user turn, or for an agent episode its task."""
    agent = (row.get("metadata") or {}).get("agent")
    if isinstance(agent, dict) and agent.get("instruction"):
        text = " ".join(f"[{agent.get('variant', 'agent')}] {agent['instruction']}".split())
        return text if len(text) <= width else text[: width - 1] + "…"
    return _prompt_preview(row["prompt"], width)


def _prompt_preview(prompt: list[dict[str, str]] | None, width: int) -> str:
    text = ""
    for m in reversed(prompt or []):
        if m.get("role") == "user":
            text = m.get("content") or ""
            break
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _n_steps(row: dict[str, Any]) -> int:
    from cotscope.traces._rows import row_spans

    return len(row_spans(row))
