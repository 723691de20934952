"""``cotscope verify``: process verification (URSA). Score stored traces step by step with a process reward model,
then best-of-N selection from the stored step scores against majority vote and a random pick.

The commands parse options, call the stages (``pipeline.evaluate`` through ``as_prm_evaluator``;
``best_of_n_from_store``) and render; torch, transformers and DuckDB are imported inside the commands.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from cotscope.cli._app import console, fail, print_json, stage_progress

if TYPE_CHECKING:
    from cotscope.pipeline import EvaluateStats
    from cotscope.store import Store

verify_app = typer.Typer(
    help="Process verification (URSA): step scores from a process reward model, best-of-N selection.",
    no_args_is_help=True,
)

StoreOpt = Annotated[Path, typer.Option("--store", "-s", help="DuckDB store file.")]
PrmOpt = Annotated[str, typer.Option(
    "--prm", help="PRM: token-cls (with -o model=...), llm-judge (with -o model=provider/model), or a model "
                  "directory (e.g. written by verify train-prm); for best-of-n also a stored PRM name or NAME@HASH.")]
OptionOpt = Annotated[list[str] | None, typer.Option(
    "--option", "-o", help="PRM option KEY=VALUE (repeatable): model, tag, max_length, device, batch_size, ...")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


def _open(path: Path, read_only: bool = False) -> Store:
    from cotscope.cli._judge import open_store

    return open_store(path, read_only=read_only)


def _prm_options(option: list[str] | None) -> dict[str, Any]:
    from cotscope._options import parse_kv

    return parse_kv(option or [], "-o/--option")


def _split(values: list[str] | None, what: str) -> list[str]:
    out = [v.strip() for raw in values or [] for v in raw.split(",") if v.strip()]
    if not out:
        fail(f"{what}: give at least one value")
    return out


def _score_table(title: str, stats: EvaluateStats) -> Table:
    t = Table(title=title)
    for c in ("PRM", "traces", "skipped", "stored", "unscorable", "backend errors", "traces/s"):
        t.add_column(c, justify="left" if c == "PRM" else "right")
    tps = f"{stats.stored / stats.seconds:.1f}" if stats.seconds > 0 else "-"
    t.add_row(stats.evaluator, f"{stats.total:,}", f"{stats.skipped:,}", f"{stats.stored:,}",
              f"[red]{stats.parse_errors:,}[/]" if stats.parse_errors else "0",
              f"[red]{stats.errors:,}[/]" if stats.errors else "0", tps)
    return t


@verify_app.command("score")
def score_cmd(
    prm: PrmOpt,
    store: StoreOpt,
    rule: Annotated[str, typer.Option(
        "--rule", help="Aggregation stored as each result's score: min, mean, last or product (every rule's value "
                       "is stored too).")] = "min",
    option: OptionOpt = None,
    batch_size: Annotated[int | None, typer.Option(
        "--batch-size", help="Traces per batch handed to the PRM (default: the PRM's preferred batch).")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Score at most this many new traces.")] = None,
    json: JsonOpt = False,
) -> None:
    """Score every step of every stored trace without a result for this PRM (reruns skip what exists)."""
    from cotscope.pipeline import evaluate
    from cotscope.pipeline._verify import as_prm_evaluator
    from cotscope.verify._aggregate import RULES
    from cotscope.verify._prm import get_prm

    if rule not in RULES:
        fail(f"unknown --rule {rule!r}: expected one of {', '.join(RULES)}")
    if batch_size is not None and batch_size < 1:
        fail("--batch-size must be at least 1")
    p = get_prm(prm, **_prm_options(option))
    ev = as_prm_evaluator(p, rule)
    st = _open(store)
    try:
        with stage_progress(quiet=json) as prog:
            stats = asyncio.run(evaluate(st, ev, batch_size=batch_size, limit=limit, progress=prog,
                                         description=f"prm {ev.name}", close=True))
    finally:
        st.close()
    if json:
        print_json(stats.to_dict() | {"rule": rule, "key": f"{ev.name}@{ev.config_hash}"})
    else:
        console.print(_score_table(f"PRM {prm} on {store} (score = {rule} over steps)", stats))
        for e in stats.error_examples:
            console.print(f"[red]backend error[/] {escape(e)}", highlight=False)
        console.print(f"stored under [bold]{escape(ev.name)}@{ev.config_hash[:8]}[/]; "
                      f"next: cotscope verify best-of-n --store {escape(str(store))} --prm {escape(prm)}",
                      highlight=False)
    if stats.errors:
        console.print(f"[yellow]{stats.errors} backend error(s) were not stored; rerun to retry them.[/]")
        raise typer.Exit(1)


@verify_app.command("best-of-n")
def best_of_n_cmd(
    store: StoreOpt,
    prm: PrmOpt,
    n: Annotated[str, typer.Option("--n", help="Comma-separated N values.")] = "1,2,4,8,16",
    agg: Annotated[list[str] | None, typer.Option(
        "--agg", help="Aggregation rule(s) to select by: min, mean, last, product (repeatable or comma list).")
    ] = None,
    baselines: Annotated[str, typer.Option(
        "--baselines", help="Comma-separated baselines: majority, random, oracle (empty: none).")] = "majority,random",
    form: Annotated[str, typer.Option(
        "--form", help="resampled (N drawn from each problem's pool, exact means, bootstrap CIs) or paper (URSA's "
                       "first N samples, no CI).")] = "resampled",
    resamples: Annotated[int, typer.Option("--resamples", help="Bootstrap and majority-vote resamples.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    option: OptionOpt = None,
    json: JsonOpt = False,
) -> None:
    """Best-of-N accuracy from stored PRM step scores, against majority vote and a random pick, for every N."""
    from cotscope.errors import ConfigError
    from cotscope.pipeline._verify import best_of_n_from_store, resolve_prm_key
    from cotscope.verify._prm import get_prm

    try:
        ns = [int(x) for x in _split([n], "--n")]
    except ValueError:
        fail(f"--n must be comma-separated integers, got {n!r}")
    rules = _split(agg or ["min,mean"], "--agg")
    bases = [b.strip() for b in baselines.split(",") if b.strip()]
    if form not in ("resampled", "paper"):
        fail(f"unknown --form {form!r}: expected resampled or paper")
    st = _open(store, read_only=True)
    try:
        try:
            name, chash = resolve_prm_key(st, prm)
        except ConfigError as first:
            # Not a stored name: the PRM it names (a directory, token-cls -o model=...) gives its own key.
            try:
                obj = get_prm(prm, **_prm_options(option))
            except ConfigError:
                raise first from None
            name, chash = resolve_prm_key(st, obj)
        rep = best_of_n_from_store(st, f"{name}@{chash}", ns=ns, rules=rules,  # type: ignore[arg-type]
                                   baselines=bases, resamples=resamples, seed=seed, form=form)  # type: ignore[arg-type]
    finally:
        st.close()
    if json:
        print_json(rep.to_dict())
        return
    _print_report(rep, str(store), form)


def _print_report(rep: Any, store: str, form: str) -> None:
    from cotscope.report import format_cell

    methods = list(dict.fromkeys(r.method for r in rep.rows))
    t = Table(title=f"Best-of-N on {store}: PRM {rep.evaluator}@{rep.config_hash[:8]}, {rep.groups} problems, "
                    f"{rep.samples} samples ({form}{'; 95% CIs' if form == 'resampled' else ''})")
    t.add_column("N", justify="right")
    for m in methods:
        t.add_column(m, justify="right")
    by = {(r.n, r.method): r for r in rep.rows}
    for nn in dict.fromkeys(r.n for r in rep.rows):
        cells = []
        for m in methods:
            r = by.get((nn, m))
            if r is None:
                cells.append(format_cell(None, "text"))
            elif r.ci_low is None:
                cells.append(format_cell(r.accuracy, "rate"))
            else:
                cells.append(f"{format_cell(r.accuracy, 'rate')} [{format_cell(r.ci_low, 'rate')}, "
                             f"{format_cell(r.ci_high, 'rate')}]")
        t.add_row(str(nn), *cells)
    console.print(t)
    left = [(rep.no_gold, "group(s) without a gold answer"), (rep.short, "group(s) with too few scored samples"),
            (rep.unscored, "unscored sample(s): run verify score"), (rep.errors, "sample(s) the PRM could not score"),
            (rep.no_answer, "pooled sample(s) without an answer (counted wrong)")]
    for count, what in left:
        if count:
            console.print(f"[yellow]{count}[/] {what}", highlight=False)
    for e in rep.error_examples:
        console.print(f"[red]unscorable[/] {escape(e)}", highlight=False)


# -----------------------------------------------------------------------------------------------------------------
# annotate and train-prm: process-annotation synthesis and PRM training (written separately); add them below.
# -----------------------------------------------------------------------------------------------------------------
