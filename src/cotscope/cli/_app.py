"""The root ``cotscope`` typer application and shared console helpers."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from typer.core import TyperGroup

from cotscope.errors import CotscopeError

if TYPE_CHECKING:
    from cotscope.store import Store


class _Group(TyperGroup):
    """The root command group: any deliberate cotscope error becomes one clear line and exit code 2."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except CotscopeError as e:
            fail(str(e))


app = typer.Typer(
    cls=_Group,
    name="cotscope",
    help="Evaluate, monitor and harden the chain of thought of reasoning models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: Human-readable output goes to stderr so that ``--json`` keeps stdout machine-readable.
console = Console(stderr=True)
out = Console()


def fail(message: str, code: int = 2) -> NoReturn:
    """Print an error and exit non-zero."""
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


#: ``--traces DATASET`` of every command that reads traces: read them in place from Parquet instead of the store.
TracesOpt = Annotated[list[str] | None, typer.Option(
    "--traces", metavar="DATASET",
    help="Read traces in place from a Parquet dataset instead of the store file (repeatable): a folder such as "
         "`cotscope export --format parquet --partition-by` writes, a file, a glob, or an s3://, gs://, https:// "
         "URL (DuckDB's httpfs). Results are still read from and written to --store, keyed by trace id.")]


def open_store(path: Path, read_only: bool = False, *, traces: list[str] | None = None,
               create: bool = False) -> Store:
    """The store of a command, with ``--traces`` attached when given, or one clear error line.

    Args:
        path: the store file; it must exist unless ``create``.
        read_only: open without write access.
        traces: ``--traces`` datasets to read traces from in place.
        create: create a missing store (a command that writes results for an attached dataset).
    """
    from cotscope.store import Store

    created = not path.exists()
    if created and not create:
        fail(f"{path}: no such store")
    try:
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        st = Store(path, read_only=read_only)
    except OSError as e:
        fail(str(e))
    if traces:
        try:
            st.attach_traces(traces)
        except CotscopeError as e:
            st.close()
            if created:  # a results store made for a dataset that cannot be read is of no use
                path.unlink(missing_ok=True)
            fail(f"--traces {e}")
    return st


def print_json(obj: Any) -> None:
    """Write one JSON object to stdout."""
    sys.stdout.buffer.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS) + b"\n")
    sys.stdout.flush()


def make_progress(console: Console | None = None, *, disable: bool = False) -> Progress:
    """The one progress-bar layout of every command: spinner, description, bar, done/total, ``info``, times.

    Tasks must be added with an ``info`` field (``add_task(..., info="")``).
    """
    return Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=console, disable=disable, transient=False)


class _RichTask:
    def __init__(self, bar: Progress, task: TaskID) -> None:
        self.bar = bar
        self.id = task

    def advance(self, n: int = 1, info: str = "") -> None:
        if info:
            self.bar.update(self.id, advance=n, info=info)
        else:
            self.bar.advance(self.id, n)

    def total(self, total: int | None) -> None:
        self.bar.update(self.id, total=total)

    def done(self) -> None:
        t = self.bar.tasks[self.id] if self.id < len(self.bar.tasks) else None
        if t is not None and t.total is not None:
            self.bar.update(self.id, completed=t.total)


class RichProgress:
    """The stages' :class:`cotscope.pipeline.Progress` drawn as rich progress bars (one per task)."""

    def __init__(self, bar: Progress) -> None:
        self.bar = bar

    def task(self, description: str, total: int | None = None) -> _RichTask:
        """A new bar."""
        return _RichTask(self.bar, self.bar.add_task(description, total=total, info=""))


@contextmanager
def progress_bar(quiet: bool = False) -> Iterator[Progress]:
    """A rich progress bar on stderr, hidden when ``quiet``."""
    p = make_progress(console, disable=quiet)
    with p:
        yield p


@contextmanager
def stage_progress(quiet: bool = False) -> Iterator[RichProgress]:
    """Rich progress bars on stderr for the stages (one per reported task), hidden when ``quiet``."""
    with progress_bar(quiet) as p:
        yield RichProgress(p)


def load_prompt_items(prompts: Any, benchmark: str | None, model: str,
                      limit: int | None = None) -> tuple[list[Any], list[Any], str]:
    """The prompts of ``--prompts FILE`` or ``--benchmark NAME`` (exactly one) cut to ``limit``, the bad prompt
    records, and the source.

    Bad prompt records are listed (file and line, the first 20) and skipped; no valid prompt at all is an error.
    """
    from cotscope.traces import RecordError, read_prompts

    if (prompts is None) == (benchmark is None):
        fail("give exactly one of --prompts FILE or --benchmark NAME")
    bad: list[RecordError] = []
    if prompts is not None:
        if not prompts.is_file():
            fail(f"{prompts}: no such file")
        items, bad = read_prompts(prompts)
        source = str(prompts)
    else:
        from cotscope.benchmarks import benchmark_prompts

        items = benchmark_prompts(str(benchmark), model)
        source = f"benchmark:{benchmark}"
    for e in bad[:20]:
        console.print(f"[red]bad prompt[/] {escape(str(e))}", highlight=False)
    if len(bad) > 20:
        console.print(f"[red]… and {len(bad) - 20} more bad prompts[/]")
    if limit is not None:
        items = items[:limit]
    if not items:
        fail("no valid prompts")
    return items, bad, source
