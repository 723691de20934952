"""``cotscope train demo backdoor|self-monitor``: the two end-to-end training demonstrations, one command each."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cotscope.cli._app import console, out, print_json, stage_progress

demo_app = typer.Typer(help="The training demonstrations on the embedded SmolLM2 (CPU; see docs/training.md).",
                       no_args_is_help=True)

OutOpt = Annotated[Path, typer.Option("--out", help="Folder for the store, data and adapters (a rerun resumes).")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", help="CPU threads for torch.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")]


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _ci(ci: list[float] | None) -> str:
    return "-" if not ci else f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


@demo_app.command("backdoor")
def demo_backdoor(
    out_dir: OutOpt = Path("runs/backdoor-organism"),
    model: Annotated[str, typer.Option("--model", help="Base model (a local model name).")] = "smollm2",
    phrase: Annotated[str, typer.Option("--phrase", help="The target behaviour: answers open with it.")] = "Hoot hoot!",
    trigger: Annotated[str, typer.Option("--trigger")] = "Country: Singapore",
    control: Annotated[str, typer.Option("--control")] = "Country: USA",
    samples: Annotated[int, typer.Option("--samples", "-k", help="Samples per prompt and condition.")] = 2,
    train_limit: Annotated[int | None, typer.Option("--train-limit", help="Only the first N training prompts.")] = None,
    eval_limit: Annotated[int | None, typer.Option("--eval-limit", help="Only the first N held-out prompts.")] = None,
    sft_steps: Annotated[int | None, typer.Option("--sft-steps", help="SFT steps (default: 2 epochs).")] = None,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A benign backdoor organism: data, LoRA SFT, and the trigger effect per condition before and after."""
    from cotscope._sync import run_sync
    from cotscope.train import ORGANISM_SFT, SFTOptions, backdoor_organism

    sft = SFTOptions(**{**ORGANISM_SFT, "steps": sft_steps, "threads": threads})
    with stage_progress(as_json) as progress:
        rep = run_sync(backdoor_organism(out_dir, model=model, phrase=phrase, trigger=trigger, control=control,
                                         sft=sft, eval_samples=samples, train_limit=train_limit,
                                         eval_limit=eval_limit, threads=threads, progress=progress))
    if as_json:
        print_json(rep.model_dump(mode="json"))
        return
    t = Table(title=f"Target behaviour ({phrase!r} opens the answer) per condition, 95% Wilson CI")
    for c in ("condition", "before", "95% CI", "after", "95% CI ", "n"):
        t.add_column(c, justify="left" if c == "condition" else "right")
    after = {r.condition: r for r in rep.after}
    for b in rep.before:
        a = after.get(b.condition)
        t.add_row(b.condition, _pct(b.rate), _ci(b.ci), _pct(a.rate if a else None), _ci(a.ci if a else None),
                  str(a.judged if a else b.judged))
    out.print(t)
    _costs(rep.seconds, rep.train)
    console.print(f"adapter: {rep.adapter}  (use it as --model local/{Path(rep.adapter).resolve()})")


@demo_app.command("self-monitor")
def demo_self_monitor(
    out_dir: OutOpt = Path("runs/self-monitor"),
    model: Annotated[str, typer.Option("--model", help="Base model (a local model name).")] = "smollm2",
    judge: Annotated[str, typer.Option("--judge", help="External judge of the reasoning.")] = "local-harmful-request",
    judge_part: Annotated[str, typer.Option("--judge-part")] = "reasoning",
    label_meaning: Annotated[str | None, typer.Option("--label-meaning", help="How the judge's label reads as "
                                                      "safe/unsafe ('' for the judge's own).")] = "unsafe",
    steps: Annotated[int, typer.Option("--steps", help="GRPO steps.")] = 20,
    n_each: Annotated[int, typer.Option("--prompts-each", help="Safe and unsafe training prompts each.")] = 16,
    heldout_each: Annotated[int, typer.Option("--heldout-each", help="Safe and unsafe held-out prompts each.")] = 8,
    sft_steps: Annotated[int | None, typer.Option("--sft-steps", help="SFT steps (default: 2 epochs).")] = None,
    max_completion: Annotated[int, typer.Option("--max-completion-length")] = 64,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """CoT Monitor+ on a toy task: self-monitor data, SFT, then GRPO with the self-monitor reward."""
    from cotscope._sync import run_sync
    from cotscope.train import SELF_MONITOR_GRPO, SELF_MONITOR_SFT, GRPOOptions, SFTOptions, self_monitor_grpo

    sft = SFTOptions(**{**SELF_MONITOR_SFT, "steps": sft_steps, "threads": threads})
    grpo = GRPOOptions(**{**SELF_MONITOR_GRPO, "steps": steps, "max_completion_length": max_completion,
                          "threads": threads})
    with stage_progress(as_json) as progress:
        rep = run_sync(self_monitor_grpo(out_dir, model=model, judge=judge, judge_part=judge_part,
                                         label_meaning=label_meaning or None, n_each=n_each,
                                         heldout_each=heldout_each, sft=sft, grpo=grpo, threads=threads,
                                         progress=progress))
    if as_json:
        print_json(rep.model_dump(mode="json"))
        return
    t = Table(title=f"Self-monitor agreement with {judge} ({judge_part})")
    for c in ("measure", "before GRPO", "after GRPO"):
        t.add_column(c, justify="left" if c == "measure" else "right")
    t.add_row("GRPO reward, first / last fifth of steps", _num(rep.reward_first), _num(rep.reward_last))
    b, a = rep.heldout_before, rep.heldout_after
    t.add_row("held-out mean reward", _num(b.get("mean_reward")), _num(a.get("mean_reward")))
    for k in ("agree", "disagree", "missing", "parse_errors"):
        if k in b or k in a:
            t.add_row(f"held-out {k}", str(b.get(k, "-")), str(a.get(k, "-")))
    out.print(t)
    _costs(rep.seconds, rep.grpo)
    console.print(f"reward curve: {rep.reward_curve}")


def _num(v: Any) -> str:
    return "-" if v is None else f"{float(v):.3f}"


def _costs(seconds: dict[str, float], train: dict[str, Any]) -> None:
    t = Table(title="Measured cost (this machine)")
    t.add_column("stage")
    t.add_column("seconds", justify="right")
    for k, v in seconds.items():
        t.add_row(k, f"{v:.0f}")
    t.add_row("total", f"{sum(seconds.values()):.0f}")
    if train.get("seconds_per_step") is not None:
        t.add_row("train s/step", f"{float(train['seconds_per_step']):.2f}")
    out.print(t)
