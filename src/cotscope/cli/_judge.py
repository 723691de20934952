"""Judge, monitor, metrics and validate commands: parse options, call a stage, render; never regenerate."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from cotscope.cli._app import (
    TracesOpt,
    app,
    console,
    fail,
    open_store,
    print_json,
    progress_bar,
    stage_progress,
)
from cotscope.cli._incomplete import IncompleteOpt, incomplete_form
from cotscope.cli._ray import RayOpt, RayWorkersOpt, check_ray

if TYPE_CHECKING:
    from cotscope.pipeline import EvaluateStats

StoreOpt = Annotated[Path, typer.Option("--store", "-s", help="DuckDB store file.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="Judge model as provider/model (LLM judges).")]
BaseUrlOpt = Annotated[str | None, typer.Option("--model-base-url", help="OpenAI-compatible server URL.")]
OptionOpt = Annotated[list[str] | None, typer.Option("--option", "-o", help="Judge option KEY=VALUE (repeatable).")]
BatchOpt = Annotated[int | None, typer.Option(
    "--batch-size", help="Traces per batch handed to the judge (default: 64 for LLM judges, 1024 for local ones).")]
LimitOpt = Annotated[int | None, typer.Option("--limit", help="Score at most this many new traces.")]
KindsOpt = Annotated[str | None, typer.Option(
    "--reasoning-kinds", help="Read only reasoning of these provenance kinds, comma-separated: raw, summary, "
    "redacted, encrypted, prefill, truncated, unknown (a trace without provenance). Part of the result key.")]


def _options(option: list[str] | None, base_url: str | None) -> dict[str, Any]:
    from cotscope._options import parse_kv

    opts = parse_kv(option or [], "-o/--option")
    if base_url:
        opts["base_url"] = base_url
    return opts


def _stats_table(title: str, stats: EvaluateStats) -> Table:
    t = Table(title=title)
    for c in ("evaluator", "part", "traces", "skipped", "stored", "label true", "label false", "no label",
              "incomplete", "from reasoning", "parse errors", "backend errors", "traces/s"):
        t.add_column(c, justify="right" if c not in ("evaluator", "part") else "left")
    tps = f"{stats.stored / stats.seconds:.1f}" if stats.seconds > 0 else "-"
    t.add_row(stats.evaluator, stats.part, f"{stats.total:,}", f"{stats.skipped:,}", f"{stats.stored:,}",
              f"{stats.label_true:,}", f"{stats.label_false:,}", f"{stats.no_label:,}", f"{stats.incomplete:,}",
              f"{stats.verdict_from_reasoning:,}", f"[red]{stats.parse_errors:,}[/]" if stats.parse_errors else "0",
              f"[red]{stats.errors:,}[/]" if stats.errors else "0", tps)
    return t


def _evaluate(store: Path, evaluator: Any, part: Any, batch_size: int | None, limit: int | None, json: bool,
              title: str, ray: str | None = None, ray_workers: int | None = None, *,
              traces: list[str] | None = None, reasoning_kinds: str | None = None) -> None:
    """Run the evaluate stage under progress bars, then print its stats (exit 1 on backend errors).

    With ``traces`` (``--traces``) the traces are read in place and a missing store is created for the results.
    """
    from cotscope.pipeline import evaluate

    check_ray(ray)
    if reasoning_kinds is not None:
        from cotscope.traces import parse_kinds

        try:
            parse_kinds(reasoning_kinds)
        except ValueError as err:
            fail(f"--reasoning-kinds: {err}")
    st = open_store(store, traces=traces, create=bool(traces))
    try:
        with stage_progress(quiet=json) as prog:
            stats = asyncio.run(evaluate(st, evaluator, part, batch_size=batch_size, limit=limit, progress=prog,
                                         close=True, ray=ray, ray_workers=ray_workers,
                                         reasoning_kinds=reasoning_kinds))
    finally:
        st.close()
    if json:
        print_json(stats.to_dict())
    else:
        console.print(_stats_table(title, stats))
        for e in stats.error_examples:
            console.print(f"[red]backend error[/] {escape(e)}", highlight=False)
    if stats.errors:
        console.print(f"[yellow]{stats.errors} backend error(s) were not stored; rerun to retry them.[/]")
        raise typer.Exit(1)


@app.command("judge")
def judge_cmd(
    judge: Annotated[str, typer.Option("--judge", "-j", help="Judge name, e.g. refusal-strings, llama-guard.")],
    store: StoreOpt,
    part: Annotated[str, typer.Option(
        "--part", "-p", help="reasoning, answer, both; actions or trajectory (agent trajectories); monitor "
        "(the <monitor> segment of a self-monitoring model).")] = "answer",
    model: ModelOpt = None,
    model_base_url: BaseUrlOpt = None,
    option: OptionOpt = None,
    batch_size: BatchOpt = None,
    limit: LimitOpt = None,
    json: JsonOpt = False,
    ray: RayOpt = None,
    ray_workers: RayWorkersOpt = None,
    traces: TracesOpt = None,
    reasoning_kinds: KindsOpt = None,
) -> None:
    """Judge one part of every stored trace that has no result yet (reruns skip what exists)."""
    from cotscope.judges import PARTS, get_judge

    if part not in PARTS:
        fail(f"unknown part {part!r}: expected one of {', '.join(PARTS)}")
    j = get_judge(judge, model=model, **_options(option, model_base_url))
    _evaluate(store, j, part, batch_size, limit, json, f"judge {judge} on {store}", ray, ray_workers,
              traces=traces, reasoning_kinds=reasoning_kinds)


@app.command("monitor")
def monitor_cmd(
    monitor: Annotated[str, typer.Option("--monitor", help="Monitor name, e.g. tc-cot-monitor, local-harm.")],
    store: StoreOpt,
    model: ModelOpt = None,
    model_base_url: BaseUrlOpt = None,
    option: OptionOpt = None,
    batch_size: BatchOpt = None,
    limit: LimitOpt = None,
    json: JsonOpt = False,
    ray: RayOpt = None,
    ray_workers: RayWorkersOpt = None,
    traces: TracesOpt = None,
    reasoning_kinds: KindsOpt = None,
) -> None:
    """Run a monitor over every stored trace that has no result yet (reruns skip what exists)."""
    from cotscope.monitors import get_monitor

    m = get_monitor(monitor, model=model, **_options(option, model_base_url))
    _evaluate(store, m, None, batch_size, limit, json, f"monitor {monitor} on {store}", ray, ray_workers,
              traces=traces, reasoning_kinds=reasoning_kinds)


# -- metrics ----------------------------------------------------------------------------------------------
@app.command("metrics")
def metrics_cmd(
    store: StoreOpt,
    by: Annotated[str, typer.Option("--by", help="Comma-separated grouping: model, strategy, source_format.")] = "",
    judge: Annotated[str | None, typer.Option("--judge", "-j", help="Only this judge (or monitor).")] = None,
    detection: Annotated[bool, typer.Option(
        "--detection", help="Monitor detection metrics on agent trajectories: accuracy, AUROC, TPR at 1%/5% FPR.")
    ] = False,
    positive: Annotated[str, typer.Option(
        "--positive", help="With --detection: the positive class, harmful (variant) or success (harm done).")
    ] = "harmful",
    n_boot: Annotated[int, typer.Option("--n-boot", help="With --detection: bootstrap resamples.")] = 1000,
    json: JsonOpt = False,
    traces: TracesOpt = None,
    incomplete: IncompleteOpt = "no-answer",
) -> None:
    """SafeChain Safe@1, Safe@K, ConsSafe@K (reasoning, answer, both) from every stored judge label, per reasoning
    provenance, with incomplete traces and the cap-hit rate per model and strategy; with --detection, each
    monitor's detection of harmful agent trajectories."""
    from cotscope.pipeline import completion_metrics, guard_metrics, safety_metrics
    from cotscope.report import completion_table, guard_table, safety_table

    if detection:
        _detection(store, judge, positive, n_boot, json, traces)
        return
    incomplete = incomplete_form(incomplete)
    byc = [b.strip() for b in by.split(",") if b.strip()]
    st = open_store(store, read_only=True, traces=traces)
    try:
        rows = safety_metrics(st, byc, judge, incomplete=incomplete)
        completion = completion_metrics(st, incomplete=incomplete, judged_only=True)
        guard = guard_metrics(st, byc, judge)
    except ValueError as e:
        fail(str(e))
    finally:
        st.close()
    if json:
        print_json({"incomplete_form": incomplete, "rows": [r.to_dict() for r in rows],
                    "completion": [c.to_dict() for c in completion], "guard": [g.to_dict() for g in guard]})
        return
    tables = [guard_table(guard, byc)] if guard else []
    if not rows:
        if not tables:
            console.print("no labels of a safety judge in this store: run `cotscope judge` or `cotscope run` "
                          "first")
        _print_tables(tables)
        return
    full = safety_table(rows, byc, incomplete)
    keys = ["judge", *byc, "part", "reasoning", "K"]
    # Two tables from the one layout, so that each fits a terminal: the rates, then what was left out of them.
    rates = _columns(full, [*keys, "groups", "Safe@1", "Safe@K", "ConsSafe@K", "both safe"],
                     f"SafeChain metrics per judge and reasoning provenance ({store})")
    apart = _columns(full, [*keys, "no label", full["columns"][-3]["name"], "cap-hit rate", "verdicts from reasoning"],
                     full["title"].replace("SafeChain metrics", "Left out of the rates"))
    _print_tables([rates, apart, completion_table(completion, incomplete), *tables])


def _print_tables(tables: list[dict[str, Any]]) -> None:
    """Typed tables (:mod:`cotscope.report`'s layout) as rich tables."""
    from cotscope.report import format_rows

    for tab in tables:
        t = Table(title=tab["title"])
        for c in tab["columns"]:
            t.add_column(c["name"], justify="left" if c["kind"] == "text" else "right")
        for cells in format_rows(tab):
            t.add_row(*cells)
        console.print(t)


def _columns(table: dict[str, Any], names: list[str], title: str) -> dict[str, Any]:
    """Some columns of a typed table, in the order given."""
    idx = [next(i for i, c in enumerate(table["columns"]) if c["name"] == n) for n in names]
    return {"title": title, "columns": [table["columns"][i] for i in idx],
            "rows": [[r[i] for i in idx] for r in table["rows"]]}


def _detection(store: Path, evaluator: str | None, positive: str, n_boot: int, json: bool,
               traces: list[str] | None = None) -> None:
    """``metrics --detection``: one row per monitor key."""
    from cotscope.pipeline import POSITIVES, detection_metrics
    from cotscope.report import fmt_num, format_cell

    if positive not in POSITIVES:
        fail(f"unknown --positive {positive!r}: expected {' or '.join(POSITIVES)}")
    if n_boot < 1:
        fail("--n-boot must be at least 1")
    st = open_store(store, read_only=True, traces=traces)
    try:
        rows = detection_metrics(st, evaluators=[evaluator] if evaluator else None,
                                 positive=positive, n_boot=n_boot)
    finally:
        st.close()
    if json:
        print_json({"positive": positive, "rows": [r.to_dict() for r in rows]})
        return
    if not rows:
        console.print("no monitor results on agent trajectories in this store: run `cotscope agent run` and "
                      "`cotscope monitor` first")
        return
    t = Table(title=f"Monitor detection on agent trajectories ({store}; positive = {positive}; 95% CIs)")
    for c in ("monitor", "part · reasoning", "pos", "neg", "unscored", "accuracy", "AUROC", "TPR@1%FPR", "TPR@5%FPR"):
        t.add_column(c, justify="left" if c in ("monitor", "part · reasoning") else "right")

    def ci(iv: Any, pct: bool) -> str:
        if iv is None:
            return format_cell(None, "text")
        val = format_cell(iv.point, "rate") if pct else fmt_num(iv.point)
        lo, hi = (format_cell(iv.low, "rate"), format_cell(iv.high, "rate")) if pct else (
            fmt_num(iv.low), fmt_num(iv.high))
        return f"{val} [{lo}, {hi}]"

    for r in rows:
        m = r.metrics
        t.add_row(r.evaluator, f"{r.part} · {r.provenance}", format_cell(m.n_pos if m else None, "int"),
                  format_cell(m.n_neg if m else None, "int"), format_cell(r.unscored, "int"),
                  ci(m.accuracy, True) if m else format_cell(None, "text"), ci(m.auroc if m else None, False),
                  *(ci(m.tpr.get(f) if m else None, True) for f in (0.01, 0.05)))
    console.print(t)
    for r in rows:
        why = r.error or (r.metrics.reason if r.metrics else None)
        if why:
            console.print(f"[yellow]{escape(r.evaluator)}:{escape(r.part)}[/] {escape(why)}", highlight=False)


# -- validate ---------------------------------------------------------------------------------------------
@app.command("validate")
def validate_cmd(
    monitor: Annotated[str, typer.Option("--monitor", help="Monitor or judge name to validate.")],
    labels: Annotated[Path, typer.Option("--labels", help="JSONL of traces with a boolean `label`.")],
    model: ModelOpt = None,
    model_base_url: BaseUrlOpt = None,
    option: OptionOpt = None,
    n_boot: Annotated[int, typer.Option("--n-boot", help="Bootstrap resamples for the intervals.")] = 1000,
    batch_size: BatchOpt = None,
    json: JsonOpt = False,
) -> None:
    """Score a monitor against labelled traces: AUROC and TPR at 1% / 5% FPR with bootstrap CIs."""
    import numpy as np

    from cotscope.metrics import MetricError, agreement, bootstrap_ci, roc_auc, tpr_at_fpr
    from cotscope.monitors import get_monitor
    from cotscope.report import fmt_num
    from cotscope.traces import read_labelled

    if not labels.exists():
        fail(f"{labels}: no such file")
    traces, ys, bad = read_labelled(labels)
    for e in bad[:20]:
        console.print(f"[red]bad record[/] {escape(str(e))}", highlight=False)
    if not traces:
        fail(f"{labels}: no usable labelled trace")
    m = get_monitor(monitor, model=model, **_options(option, model_base_url))

    async def score_all() -> list[Any]:
        out: list[Any] = []
        step = batch_size or m.preferred_batch
        try:
            for i in range(0, len(traces), step):
                out += await m.monitor(traces[i:i + step])
        finally:
            await m.aclose()
        return out

    with progress_bar(quiet=json) as prog:
        prog.add_task(f"validate {monitor}", total=None, info=f"{len(traces)} traces")
        results = asyncio.run(score_all())
    keep = [i for i, r in enumerate(results) if r.suspicion is not None and not r.parse_error and not r.error]
    s = np.array([results[i].suspicion for i in keep], dtype=float)
    y = np.array([ys[i] for i in keep], dtype=bool)
    out: dict[str, Any] = {"monitor": monitor, "labels": str(labels), "traces": len(traces), "scored": len(keep),
                           "positives": int(y.sum()), "negatives": int((~y).sum()),
                           "parse_errors": sum(1 for r in results if r.parse_error),
                           "backend_errors": sum(1 for r in results if r.error),
                           "bad_records": [e.to_dict() for e in bad], "n_boot": n_boot}
    try:
        def ci(fn: Any) -> dict[str, float]:
            iv = bootstrap_ci(fn, s, y, n_boot=n_boot, seed=0, stratify=y)
            return {"value": iv.point, "low": iv.low, "high": iv.high}

        out["auroc"] = ci(roc_auc)
        out["tpr@1%fpr"] = ci(lambda a, b: tpr_at_fpr(a, b, 0.01))
        out["tpr@5%fpr"] = ci(lambda a, b: tpr_at_fpr(a, b, 0.05))
    except MetricError as e:
        fail(f"cannot validate {monitor} on {labels}: {e}")
    flags = [results[i].flag for i in keep]
    if all(f is not None for f in flags):
        out["flag_agreement"] = agreement(np.array(flags, dtype=bool), y)
    if json:
        print_json(out)
        return
    t = Table(title=f"validate {monitor} on {labels.name} ({len(keep)} scored: {out['positives']} positive, "
                    f"{out['negatives']} negative)")
    for c in ("metric", "value", "95% CI"):
        t.add_column(c, justify="left" if c == "metric" else "right")
    for k in ("auroc", "tpr@1%fpr", "tpr@5%fpr"):
        t.add_row(k.upper().replace("@", " at ").replace("FPR", " FPR"), f"{out[k]['value']:.3f}",
                  f"[{out[k]['low']:.3f}, {out[k]['high']:.3f}]")
    for k, v in (out.get("flag_agreement") or {}).items():
        t.add_row(f"flag {k}", fmt_num(v), "")
    console.print(t)
    if out["parse_errors"] or out["backend_errors"] or bad:
        console.print(f"[yellow]left out: {out['parse_errors']} parse errors, {out['backend_errors']} backend "
                      f"errors, {len(bad)} bad records[/]")
