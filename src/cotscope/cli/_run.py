"""``cotscope run``, ``cotscope benchmarks`` and ``cotscope report``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from cotscope.cli._app import TracesOpt, app, console, fail, open_store, out, print_json, stage_progress
from cotscope.cli._incomplete import IncompleteOpt, ReportIncompleteOpt, incomplete_form
from cotscope.cli._ray import RayOpt, RayWorkersOpt, check_ray


@app.command()
def benchmarks(
    json: Annotated[bool, typer.Option("--json", help="Print a JSON list on stdout.")] = False,
) -> None:
    """List the benchmarks with their sizes and sources."""
    from cotscope.benchmarks import list_benchmarks

    rows = list_benchmarks()
    if json:
        print_json(rows)
        return
    t = Table(title="benchmarks (cotscope run NAME --model M --store S)")
    for c in ("name", "items", "strategies", "K", "judges", "source"):
        t.add_column(c, justify="right" if c in ("items", "K") else "left", overflow="fold")
    for r in rows:
        # One judge with several parts reads as "llama-guard (answer, reasoning, both)".
        parts: dict[str, list[str]] = {}
        for j in r["judges"]:
            name, _, part = j.rpartition(":")
            parts.setdefault(name, []).append(part)
        judges = ", ".join(f"{n} ({', '.join(p)})" for n, p in parts.items())
        strategies = ", ".join(s.replace("\n", "\\n") for s in r["strategies"])
        t.add_row(r["name"], "file" if r["items"] is None else str(r["items"]), strategies,
                  str(r["samples"]), judges, r["source"])
    out.print(t)


def run_and_report(bench: str, model: str | None, store: Path, opts: Any, report: Path | None,
                   quiet: bool) -> dict[str, Any]:
    """Run one benchmark into a store and (optionally) write the report; returns the JSON summary."""
    from cotscope.benchmarks import get_benchmark, run_benchmark
    from cotscope.report import build_report
    from cotscope.store import Store

    spec = get_benchmark(bench)
    if opts.data is not None and not Path(opts.data).exists():
        fail(f"--data {opts.data}: no such file")
    store.parent.mkdir(parents=True, exist_ok=True)
    try:
        st = Store(store)
    except OSError as e:
        fail(str(e))
    try:
        with stage_progress(quiet=quiet) as prog:
            res = asyncio.run(run_benchmark(st, spec, model, opts, progress=prog))
        summary = res.to_dict()
        if report is not None:
            summary["report"] = str(build_report(st, report))
    except (FileNotFoundError, ImportError) as e:
        fail(f"{bench}: {e}")
    finally:
        st.close()
    return summary


def print_summary(s: dict[str, Any]) -> None:
    """The human-readable end of a run: what was done, the tables of the metrics, the report path."""
    from cotscope.report import column_names, format_rows

    console.print(f"[bold]{escape(s['benchmark'])}[/] · {escape(s['model'])}: {s['items']} items, "
                  f"{s['generated']} generated ({s['skipped_samples']} already stored, {s['generation_errors']} "
                  f"errors), {s['judged']} judged ({s['skipped_judgments']} already stored, {s['judge_errors']} "
                  "errors)", highlight=False)
    for n in s["notes"][:10]:
        console.print(f"[yellow]note[/] {escape(n)}", highlight=False)
    for tab in s["metrics"].get("tables", []):
        t = Table(title=tab["title"])
        for c in column_names(tab):
            t.add_column(c)
        for r in format_rows(tab):
            t.add_row(*r)
        out.print(t)
    for w in s["metrics"].get("warnings", []):
        console.print(f"[yellow]warning[/] {escape(w)}", highlight=False)
    if s.get("report"):
        console.print(f"report: [bold]{escape(s['report'])}[/]", highlight=False)


@app.command()
def run(
    benchmark: Annotated[str, typer.Argument(help="A benchmark name (cotscope benchmarks) or a spec .yaml file.")],
    store: Annotated[Path, typer.Option("--store", "-s", help="DuckDB store file.")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="provider/model, e.g. local/smollm2, "
                                              "openai/o3-mini, openai/deepseek-ai/DeepSeek-R1-Distill-Qwen-7B with "
                                              "--model-base-url (not needed for judge-agreement benchmarks).")] = None,
    strategy: Annotated[list[str] | None, typer.Option("--strategy", help="Decoding strategy; repeat or comma-"
                                                        "separate (default: the spec's).")] = None,
    samples: Annotated[int | None, typer.Option("--samples", "-k", min=1, help="K samples per prompt.")] = None,
    judge_model: Annotated[str | None, typer.Option("--judge-model", "-j", help="provider/model of the LLM judges; "
                                                     "without it embedded judges stand in.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N items.")] = None,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", min=1)] = None,
    temperature: Annotated[float | None, typer.Option(min=0.0)] = None,
    data: Annotated[Path | None, typer.Option(help="Read the items from this local file instead.")] = None,
    data_option: Annotated[list[str] | None, typer.Option(
        "--data-option", "-D", help="Loader option k=v over the spec's (training_data=backdoor.jsonl for the "
        "backdoor benchmarks).")] = None,
    hub: Annotated[bool, typer.Option("--hub", help="Load the data from the Hugging Face Hub (network).")] = False,
    model_base_url: Annotated[str | None, typer.Option("--model-base-url", help="OpenAI-compatible server.")] = None,
    judge_base_url: Annotated[str | None, typer.Option("--judge-base-url", help="Server of the judge model.")] = None,
    model_arg: Annotated[list[str] | None, typer.Option("--model-arg", "-M", help="Backend option k=v.")] = None,
    judge_option: Annotated[list[str] | None, typer.Option(
        "--judge-option", "-J", help="Judge option k=v for every judge, or judge.k=v for one "
        "(llama-guard.mode=template).")] = None,
    cache: Annotated[Path | None, typer.Option(help="Request cache file (default ~/.cache/cotscope).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Send every generation request.")] = False,
    report: Annotated[Path | None, typer.Option(help="Write the HTML report into this folder.")] = None,
    no_judge: Annotated[bool, typer.Option("--no-judge", help="Generate only.")] = False,
    json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    ray: RayOpt = None,
    ray_workers: RayWorkersOpt = None,
    incomplete: IncompleteOpt = "no-answer",
) -> None:
    """Generate -> judge/monitor -> metrics -> report for one benchmark; every stage skips what the store has."""
    from cotscope._options import parse_kv
    from cotscope.benchmarks import RunOptions

    check_ray(ray)
    strategies = [s.strip() for x in (strategy or []) for s in x.split(",") if s.strip()] or None
    opts = RunOptions(strategies=strategies, samples=samples, temperature=temperature, max_tokens=max_tokens,
                      limit=limit, judge_model=judge_model, judge_base_url=judge_base_url,
                      judge_options=parse_kv(judge_option or [], "-J/--judge-option"),
                      model_base_url=model_base_url, model_args=parse_kv(model_arg or [], "-M/--model-arg"),
                      hub=hub, skip_judges=no_judge, cache=str(cache) if cache else None, no_cache=no_cache,
                      data=str(data) if data else None,
                      data_options=parse_kv(data_option or [], "-D/--data-option"),
                      ray=ray or None, ray_workers=ray_workers, incomplete=incomplete_form(incomplete))
    s = run_and_report(benchmark, model, store, opts, report, quiet=json)
    if json:
        print_json(s)
    else:
        print_summary(s)
    if s["generation_errors"] or s["judge_errors"]:
        raise typer.Exit(1)


@app.command("report")
def report_cmd(
    store: Annotated[Path, typer.Option("--store", "-s", help="DuckDB store file.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder of the report (index.html).")] = Path("report"),
    title: Annotated[str, typer.Option(help="Page title.")] = "cotscope report",
    json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    traces: TracesOpt = None,
    incomplete: ReportIncompleteOpt = None,
) -> None:
    """Write a self-contained HTML report of a store: its benchmark runs and every judged trace."""
    from cotscope.report import build_report

    form = incomplete_form(incomplete) if incomplete is not None else None
    st = open_store(store, read_only=True, traces=traces)
    try:
        path = build_report(st, out_dir, title, incomplete=form)
    finally:
        st.close()
    if json:
        print_json({"report": str(path)})
    else:
        console.print(f"report: [bold]{escape(str(path))}[/]", highlight=False)

