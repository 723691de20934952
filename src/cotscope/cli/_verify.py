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


@verify_app.command("annotate")
def annotate_cmd(
    store: StoreOpt,
    model: Annotated[str, typer.Option(
        "--model", "-m", help="BEL: the policy that completes prefixes (provider/model, e.g. llamacpp/smollm2); "
                              "MIE: the LLM that rewrites correct solutions.")],
    method: Annotated[str, typer.Option(
        "--method", help="bel (binary error locating: Monte-Carlo completions, binary search for the first error) "
                         "or mie (misinterpretation insertion: an LLM rewrites correct solutions).")] = "bel",
    rollouts: Annotated[int, typer.Option("--rollouts", help="BEL: completions per checked prefix.")] = 8,
    temperature: Annotated[float | None, typer.Option(
        "--temperature", help="Sampling temperature (default 0.7 for BEL's rollouts, 0 for MIE).")] = None,
    max_tokens: Annotated[int | None, typer.Option(
        "--max-tokens", help="Budget per completion (default 256 for BEL, 1024 for MIE).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Base seed (rollout r uses seed + r).")] = 0,
    mode: Annotated[str, typer.Option(
        "--mode", help="BEL: prefill (continue the trace's own prompt from the prefix) or prompt (ask to continue "
                       "in a user turn, for servers without prefill).")] = "prefill",
    model_arg: Annotated[list[str] | None, typer.Option("--model-arg", "-M", help="Backend option k=v.")] = None,
    model_base_url: Annotated[str | None, typer.Option(
        "--model-base-url", help="OpenAI-compatible server URL for the model.")] = None,
    batch_size: Annotated[int | None, typer.Option(
        "--batch-size", help="Traces per batch (their searches advance together; stored at once).")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Label at most this many new traces.")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Send every completion (no request cache).")] = False,
    json: JsonOpt = False,
) -> None:
    """Label the steps of stored traces (1 correct, 0 incorrect) with URSA's BEL or MIE engine; reruns skip what
    is labelled."""
    from cotscope._options import parse_kv
    from cotscope.pipeline._annotate import annotate

    if method not in ("bel", "mie"):
        fail(f"unknown --method {method!r}: expected bel or mie")
    if rollouts < 1:
        fail("--rollouts must be at least 1")
    margs = parse_kv(model_arg or [], "-M/--model-arg")
    st = _open(store)
    try:
        with stage_progress(quiet=json) as prog:
            stats = asyncio.run(annotate(st, method, model, rollouts=rollouts, temperature=temperature,
                                         max_tokens=max_tokens, seed=seed, mode=mode, cache=not no_cache,
                                         model_args=margs, base_url=model_base_url, batch_size=batch_size,
                                         limit=limit, progress=prog))
    finally:
        st.close()
    if json:
        print_json(stats.to_dict())
    else:
        t = Table(title=f"{method.upper()} annotation of {store} with {model}")
        cols = ("traces", "skipped", "labelled", "all correct", "first error at step", "unlabellable",
                "backend errors", "completions (cached)", "seconds")
        for c in cols:
            t.add_column(c, justify="right")
        fe = ", ".join(f"{k}: {v}" for k, v in sorted(stats.first_errors.items(), key=lambda kv: int(kv[0]))) or "-"
        t.add_row(f"{stats.total:,}", f"{stats.skipped:,}", f"{stats.labelled:,}", f"{stats.all_correct:,}", fe,
                  f"{stats.parse_errors:,}", f"[red]{stats.errors:,}[/]" if stats.errors else "0",
                  f"{stats.calls:,} ({stats.cached:,})", f"{stats.seconds:.1f}")
        console.print(t)
        if stats.not_correct:
            console.print(f"{stats.not_correct} trace(s) with a wrong final answer left out (MIE rewrites correct "
                          "solutions)", highlight=False)
        for e in stats.error_examples:
            console.print(f"[yellow]not labelled[/] {escape(e)}", highlight=False)
        console.print(f"next: cotscope verify train-prm --data {escape(str(store))} --out prm-dir", highlight=False)
    if stats.errors:
        console.print(f"[yellow]{stats.errors} backend error(s) were not stored; rerun to retry them.[/]")
        raise typer.Exit(1)


@verify_app.command("train-prm")
def train_prm_cmd(
    data: Annotated[Path, typer.Option(
        "--data", help="Step-labelled examples: a JSONL file of {question, steps, answer, labels}, or a store "
                       "annotated by verify annotate.")],
    out: Annotated[Path, typer.Option("--out", help="Directory to write the PRM to (loads with --prm DIR).")],
    base: Annotated[str, typer.Option(
        "--base", help="minilm (all-MiniLM-L6-v2, 22M, the default), smollm2 or a checkpoint path.")] = "minilm",
    method: Annotated[str | None, typer.Option(
        "--method", help="With a store: bel or mie labels only (default both).")] = None,
    eval_data: Annotated[Path | None, typer.Option(
        "--eval", help="Held-out examples (JSONL) for step AUROC and first-error accuracy.")] = None,
    epochs: Annotated[int, typer.Option("--epochs", help="Passes over the data.")] = 3,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate.")] = 5e-5,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Examples per optimiser step.")] = 16,
    max_length: Annotated[int, typer.Option("--max-length", help="Most tokens per example.")] = 512,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    threads: Annotated[int | None, typer.Option("--threads", help="torch CPU threads.")] = None,
    json: JsonOpt = False,
) -> None:
    """Fine-tune a small token-classification PRM on the CPU (BCE at the step tags) and save it as a directory."""
    from cotscope.verify._train import read_examples, train_prm

    if not data.exists():
        fail(f"--data {data}: no such file")
    skipped: dict[str, int] = {}
    if data.suffix in (".jsonl", ".json"):
        examples = read_examples(data)
    else:
        from cotscope.pipeline._annotate import annotation_examples

        st = _open(data, read_only=True)
        try:
            examples, skipped = annotation_examples(st, method)
        finally:
            st.close()
    if not examples:
        fail(f"no step-labelled examples in {data}" + (f" (left out: {skipped})" if skipped else "")
             + ": run cotscope verify annotate first")
    evals = read_examples(eval_data) if eval_data is not None else None
    with stage_progress(quiet=json) as prog:
        stats = train_prm(examples, out, base=base, epochs=epochs, lr=lr, batch_size=batch_size,
                          max_length=max_length, seed=seed, eval_examples=evals, threads=threads, progress=prog)
    d = stats.to_dict() | {"left_out_of_store": skipped}
    if json:
        print_json(d)
        return
    t = Table(title=f"PRM trained on {data} -> {out}")
    for c in ("examples", "used", "steps (positive)", "epochs", "loss first -> last", "seconds", "peak RSS"):
        t.add_column(c, justify="right")
    first = f"{stats.first_loss:.4f}" if stats.first_loss is not None else "-"
    last = f"{stats.epoch_losses[-1]:.4f}" if stats.epoch_losses else "-"
    t.add_row(f"{stats.examples:,}", f"{stats.used:,}", f"{stats.steps_labelled:,} ({stats.positives:,})",
              str(stats.epochs), f"{first} -> {last}", f"{stats.seconds:.1f}", f"{stats.peak_rss_mb:.0f} MiB")
    console.print(t)
    if stats.skipped or skipped:
        console.print(f"left out: {stats.skipped | skipped}", highlight=False)
    if stats.metrics:
        m = stats.metrics
        auc = f"{m['step_auroc']:.3f}" if m.get("step_auroc") is not None else "-"
        console.print(f"held-out: {m['examples']} examples, step AUROC {auc}, first-error accuracy "
                      f"{m['first_error_accuracy']:.3f}", highlight=False)
    console.print(f"next: cotscope verify score --prm {escape(str(out))} --store STORE", highlight=False)


@verify_app.command("synth")
def synth_cmd(
    out: Annotated[Path, typer.Option("--out", help="Prompt JSONL to write (reads with cotscope generate).")],
    n: Annotated[int, typer.Option("--n", help="Number of problems.")] = 200,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    ops: Annotated[str, typer.Option("--ops", help="Operations per problem: N or LOW-HIGH, within 2-6.")] = "2-5",
    kinds: Annotated[str, typer.Option(
        "--kinds", help="Comma-separated operations to draw from: add, sub, mul, div.")] = "add,sub,mul,div",
    small: Annotated[bool, typer.Option("--small", help="Small numbers (for weak models).")] = False,
    shots: Annotated[int, typer.Option("--shots", help="Worked examples before each question (0-2).")] = 2,
    json: JsonOpt = False,
) -> None:
    """Write synthetic multi-step arithmetic problems (exact answers, URSA-format reference solutions) as prompts."""
    from cotscope.verify._synth import synth_problems, write_prompts

    lo, _, hi = ops.partition("-")
    try:
        rng = (int(lo), int(hi or lo))
    except ValueError:
        fail(f"--ops must be N or LOW-HIGH, got {ops!r}")
    probs = synth_problems(n, seed=seed, ops=rng, small=small, kinds=[k.strip() for k in kinds.split(",") if k])
    write_prompts(probs, out, shots=shots)
    summary = {"out": str(out), "problems": len(probs), "ops": list(rng), "seed": seed,
               "by_ops": {str(k): sum(p.ops == k for p in probs) for k in sorted({p.ops for p in probs})}}
    if json:
        print_json(summary)
    else:
        console.print(f"wrote {len(probs)} problems to {escape(str(out))} (ops per problem: {summary['by_ops']}); "
                      f"next: cotscope generate --prompts {escape(str(out))} --model llamacpp/smollm2 "
                      "--strategy 'prefill:Step 1:' --samples 8", highlight=False)
