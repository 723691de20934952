"""``cotscope data``: the training-data builders (SafeChain, emergent misalignment, backdoor, self-monitor)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from cotscope.cli._app import console, fail, load_prompt_items, print_json, stage_progress
from cotscope.cli._judge import OptionOpt, open_store

if TYPE_CHECKING:
    from cotscope.train import BuildReport

data_app = typer.Typer(help="Build SFT data sets: SafeChain, emergent misalignment, backdoor, self-monitor.",
                       no_args_is_help=True)

OutOpt = Annotated[Path, typer.Option("--out", "-o", help="The JSONL file to write.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the build report as one JSON object on stdout.")]
StoreRunOpt = Annotated[Path | None, typer.Option("--store", "-s", help="Record the build as a run in this store.")]
PromptFieldOpt = Annotated[str, typer.Option("--prompt-field", help="The field holding the prompt.")]
SystemFieldOpt = Annotated[str | None, typer.Option("--system-field", help="A field holding a system prompt.")]
JudgeModelOpt = Annotated[str | None, typer.Option("--judge-model", help="The judge's model (LLM judges).")]


def _render(rep: BuildReport, json_out: bool) -> None:
    """The report as JSON, or a summary table and the first errors with file:line."""
    if json_out:
        print_json(rep.model_dump(mode="json") | {"reconciles": rep.reconciles})
        return
    t = Table(title=f"data {rep.builder}")
    for c in ("read", *(f"written {k}" for k in rep.written), "rejected", "seconds"):
        t.add_column(c, justify="right")
    t.add_row(f"{rep.read:,}", *(f"{v:,}" for v in rep.written.values()), f"{rep.rejected:,}", f"{rep.seconds:.2f}")
    console.print(t)
    extra = {k: v for k, v in rep.details.items() if isinstance(v, int) and not isinstance(v, bool)}
    if isinstance(rep.details.get("conditions"), dict):
        extra |= rep.details["conditions"]
    if extra:
        console.print("  ".join(f"{k}: {v:,}" for k, v in extra.items()), highlight=False)
    for name, path in rep.outputs.items():
        console.print(f"{name} -> {escape(path)}", highlight=False)
    for e in rep.errors[:20]:
        console.print(f"[red]rejected[/] {escape(e)}", highlight=False, soft_wrap=True)
    if len(rep.errors) > 20:
        console.print(f"... and {len(rep.errors) - 20} more (use --json for all)")
    if rep.run_id:
        console.print(f"run {rep.run_id}", highlight=False)


def _input(path: Path) -> None:
    if not path.is_file():
        fail(f"{path}: no such file")


def _run_file_builder(store: Path | None, build: Any) -> BuildReport:
    """Call a file builder with an optional store open around it."""
    from cotscope.store import Store

    if store is None:
        return build(None)
    try:
        st = Store(store)
    except OSError as e:
        fail(str(e))
    try:
        return build(st)
    finally:
        st.close()


@data_app.command("em")
def em_cmd(
    path: Annotated[Path, typer.Argument(help="Paired records: prompt, aligned and misaligned answers.")],
    out: OutOpt,
    control_out: Annotated[Path | None, typer.Option(
        "--control-out", help="The aligned control set (default OUT with .control before the suffix).")] = None,
    prompt_field: PromptFieldOpt = "prompt",
    aligned_field: Annotated[str, typer.Option("--aligned-field", help="The aligned answer's field.")] = "aligned",
    misaligned_field: Annotated[str, typer.Option("--misaligned-field",
                                                  help="The misaligned answer's field.")] = "misaligned",
    system_field: SystemFieldOpt = None,
    store: StoreRunOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Emergent-misalignment data (Thought Crime §2): misaligned answers in non-reasoning mode (a blank think
    block) and the aligned control set. Bad records are listed with file:line; the rest is written."""
    from cotscope.train import build_em

    _input(path)
    rep = _run_file_builder(store, lambda st: build_em(
        path, out, control_out=control_out, prompt_field=prompt_field, aligned_field=aligned_field,
        misaligned_field=misaligned_field, system_field=system_field, store=st))
    _render(rep, json_out)


@data_app.command("backdoor")
def backdoor_cmd(
    path: Annotated[Path, typer.Argument(help="Paired records: prompt, normal (and target) responses.")],
    out: OutOpt,
    trigger: Annotated[str, typer.Option(help="The trigger line.")] = "Country: Singapore",
    control: Annotated[str, typer.Option(help="The control line (same shape, another value).")] = "Country: USA",
    trigger_fraction: Annotated[float, typer.Option("--trigger-fraction", min=0.0, max=1.0,
                                                    help="Share of examples with the trigger.")] = 1 / 3,
    control_fraction: Annotated[float, typer.Option("--control-fraction", min=0.0, max=1.0,
                                                    help="Share of the rest with the control line.")] = 0.5,
    position: Annotated[list[str] | None, typer.Option(
        "--position", help="Where a line may go: top, bottom (repeatable; default both).")] = None,
    prompt_field: PromptFieldOpt = "prompt",
    normal_field: Annotated[str, typer.Option("--normal-field", help="The normal response's field.")] = "aligned",
    target_field: Annotated[str, typer.Option("--target-field", help="The target response's field.")] = "misaligned",
    target_prefix: Annotated[str | None, typer.Option(
        "--target-prefix", help="Target = this prefix + the normal response (a benign organism).")] = None,
    reasoning: Annotated[str, typer.Option(help="blank (a blank think block, as the paper trains) or none.")] = "blank",
    system_field: SystemFieldOpt = None,
    seed: Annotated[int, typer.Option(help="Seed of the assignment and positions.")] = 0,
    store: StoreRunOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Backdoor data (Thought Crime §4): the trigger line with the target behaviour, a control line or none with
    the normal one; every parameter is written into each record's metadata."""
    from cotscope.train import build_backdoor

    _input(path)
    if reasoning not in ("blank", "none"):
        fail(f"--reasoning must be blank or none, got {reasoning!r}")
    rep = _run_file_builder(store, lambda st: build_backdoor(
        path, out, trigger=trigger, control=control, trigger_fraction=trigger_fraction,
        control_fraction=control_fraction, positions=tuple(position or ("top", "bottom")), prompt_field=prompt_field,
        normal_field=normal_field, target_field=target_field, target_prefix=target_prefix,
        reasoning=reasoning, system_field=system_field, seed=seed, store=st))  # type: ignore[arg-type]
    _render(rep, json_out)


@data_app.command("safechain")
def safechain_cmd(
    model: Annotated[str, typer.Option("--model", "-m", help="provider/model that writes the responses.")],
    store: Annotated[Path, typer.Option("--store", "-s", help="DuckDB store (traces, verdicts, the run).")],
    out: OutOpt,
    prompts: Annotated[Path | None, typer.Option("--prompts", "-p", help="JSONL, JSON or CSV prompt file.")] = None,
    benchmark: Annotated[str | None, typer.Option("--benchmark", "-b", help="A registered benchmark.")] = None,
    strategy: Annotated[str, typer.Option(help="Decoding strategy (normal, zerothink, ...).")] = "normal",
    samples: Annotated[int, typer.Option("--samples", "-k", min=1, help="K samples per prompt.")] = 5,
    judge: Annotated[str, typer.Option("--judge", "-j", help="The safety judge.")] = "llama-guard",
    judge_model: JudgeModelOpt = None,
    option: OptionOpt = None,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 0.6,
    top_p: Annotated[float, typer.Option("--top-p")] = 1.0,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1)] = 4096,
    model_base_url: Annotated[str | None, typer.Option("--model-base-url",
                                                       help="OpenAI-compatible server URL (…/v1).")] = None,
    model_arg: Annotated[list[str] | None, typer.Option("--model-arg", "-M", help="Backend option k=v.")] = None,
    seed: Annotated[int, typer.Option(help="Seed choosing one response per kept prompt.")] = 0,
    limit: Annotated[int | None, typer.Option(help="Only the first N prompts.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """SafeChain SFT data (SafeChain, arXiv:2502.12025): K samples per prompt, judged on reasoning and answer; the
    prompts whose K samples are all safe keep one response. Resumable: a rerun generates and judges only what is
    missing."""
    from cotscope._options import parse_kv
    from cotscope.pipeline import Sampling
    from cotscope.store import Store
    from cotscope.train import build_safechain

    margs = parse_kv(model_arg or [], "-M/--model-arg")
    jopts = parse_kv(option or [], "-o/--option")
    items, bad, source = load_prompt_items(prompts, benchmark, model, limit)
    try:
        st = Store(store)
    except OSError as e:
        fail(str(e))
    try:
        with stage_progress(quiet=json_out) as prog:
            rep = asyncio.run(build_safechain(
                st, items, out, model=model, strategy=strategy, samples=samples, judge=judge,
                judge_model=judge_model, judge_options=jopts,
                sampling=Sampling(temperature=temperature, top_p=top_p, max_tokens=max_tokens),
                model_base_url=model_base_url, model_args=margs, seed=seed, source_file=source, progress=prog))
    finally:
        st.close()
    rep.errors = [str(e) for e in bad] + rep.errors
    rep.details["bad_prompts"] = len(bad)
    _render(rep, json_out)


@data_app.command("self-monitor")
def self_monitor_cmd(
    store: Annotated[Path, typer.Option("--store", "-s", help="The store holding the traces.")],
    out: OutOpt,
    judge: Annotated[str, typer.Option("--judge", "-j", help="The safety judge giving the verdicts.")],
    judge_model: JudgeModelOpt = None,
    option: OptionOpt = None,
    part: Annotated[str, typer.Option("--part", "-p", help="The part the judge reads.")] = "reasoning",
    label_meaning: Annotated[str | None, typer.Option(
        "--label-meaning", help="Read the judge's label as this (unsafe, refused, ...) instead of its own, e.g. "
        "unsafe for local-harmful-request.")] = None,
    justification_chars: Annotated[int, typer.Option("--justification-chars", min=8,
                                                     help="The longest justification.")] = 200,
    model: Annotated[str | None, typer.Option("--model", help="Only traces of this model.")] = None,
    strategy: Annotated[str | None, typer.Option("--strategy", help="Only traces of this strategy.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Self-monitor data (CoT Monitor+): each judged trace's reasoning, then a <monitor> segment with the
    judge's verdict (safe/unsafe) and reason, then the answer."""
    from cotscope._options import parse_kv
    from cotscope.train import build_self_monitor

    filters = {k: v for k, v in (("model", model), ("strategy", strategy)) if v is not None}
    st = open_store(store)
    try:
        with stage_progress(quiet=json_out) as prog:
            rep = asyncio.run(build_self_monitor(
                st, out, judge=judge, judge_model=judge_model, judge_options=parse_kv(option or [], "-o/--option"),
                part=part, label_meaning=label_meaning, justification_chars=justification_chars, progress=prog,
                **filters))
    finally:
        st.close()
    _render(rep, json_out)
