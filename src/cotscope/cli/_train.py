"""``cotscope train sft|grpo``: parse options, call the training recipes, render their reports.

``train_app`` is the ``train`` command group; other files add commands to it (``train demo``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from cotscope.cli._app import console, fail, out, print_json, stage_progress

if TYPE_CHECKING:
    from cotscope.store import Store
    from cotscope.train import TrainReport

train_app = typer.Typer(help="Train LoRA adapters: SFT on chat records, GRPO with a reward such as self-monitor.",
                        no_args_is_help=True)

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Base model: smollm2, a .gguf file, local/PATH, a "
                                                             "transformers folder, a Hub id, or an adapter folder.")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder: the adapter (loads as local/OUT), "
                                                          "log.jsonl, checkpoints/.")]
LoraR = Annotated[int | None, typer.Option("--lora-r", min=1, help="LoRA rank (default 32, Thought Crime's).")]
LoraAlpha = Annotated[int | None, typer.Option("--lora-alpha", min=1, help="LoRA alpha (default 64).")]
StoreOpt = Annotated[Path | None, typer.Option("--store", "-s", help="Record the run in this DuckDB store "
                                                                     "(created when missing).")]
NoResume = Annotated[bool, typer.Option("--no-resume", help="Start over even when OUT holds checkpoints.")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", min=1, help="CPU threads for torch.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA when available), cpu, cuda.")]
SaveSteps = Annotated[int | None, typer.Option("--save-steps", min=1, help="Checkpoint every N steps.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Training seed.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the report as one JSON object on stdout.")]


def _options(**values: Any) -> dict[str, Any]:
    """The options given on the command line (``None`` ones left to the recipe's defaults)."""
    return {k: v for k, v in values.items() if v is not None}


def _store(path: Path | None) -> Store | None:
    if path is None:
        return None
    from cotscope.store import Store

    try:
        return Store(path)
    except OSError as e:
        fail(str(e))


def _fmt(v: float | None, spec: str = ".4f") -> str:
    return "-" if v is None else format(v, spec)


def _render(rep: TrainReport) -> None:
    t = Table(title=f"train {rep.recipe} · {escape(rep.model)}")
    t.add_column("")
    t.add_column("", justify="right")
    t.add_row("steps", f"{rep.steps:,}" + (f" (resumed at {rep.resumed_from})" if rep.resumed_from else ""))
    r = rep.records
    t.add_row("records used / read", f"{r.get('used', 0):,} / {r.get('read', 0):,}")
    t.add_row("rejected", f"[red]{r.get('rejected', 0):,}[/]" if r.get("rejected") else "0")
    loss = rep.train_loss
    t.add_row("loss first → last", f"{_fmt(loss.get('first'))} → {_fmt(loss.get('last'))}")
    if rep.recipe == "grpo":
        t.add_row("reward first → last", f"{_fmt(rep.rewards.get('first'))} → {_fmt(rep.rewards.get('last'))}")
        counts = rep.rewards.get("counts") or {}
        if counts:
            t.add_row("reward counts", escape(", ".join(f"{k} {v}" for k, v in counts.items())))
    t.add_row("seconds / step", _fmt(rep.seconds_per_step, ".2f"))
    t.add_row("seconds", f"{rep.seconds:.1f}")
    t.add_row("adapter", escape(f"local/{rep.adapter}"))
    if rep.run_id:
        t.add_row("run", rep.run_id)
    out.print(t)
    for e in rep.errors[:10]:
        console.print(f"[yellow]skipped[/] {escape(e)}", highlight=False, soft_wrap=True)
    if len(rep.errors) > 10:
        console.print(f"[yellow]... {len(rep.errors) - 10} more skipped records[/]")


def _finish(rep: TrainReport, as_json: bool) -> None:
    if as_json:
        print_json(rep.model_dump(mode="json"))
    else:
        _render(rep)


@train_app.command("sft")
def sft_cmd(
    model: ModelOpt,
    data: Annotated[Path, typer.Option("--data", "-d", help="JSONL of OpenAI-style messages records or "
                                                            "prompt/response(/reasoning) pairs.")],
    out_dir: OutOpt,
    lora_r: LoraR = None,
    lora_alpha: LoraAlpha = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Learning rate (default 4e-5, Thought Crime's).")] = None,
    steps: Annotated[int | None, typer.Option("--steps", min=1, help="Optimizer steps (overrides --epochs).")] = None,
    epochs: Annotated[float | None, typer.Option("--epochs", help="Passes over the data (default 1).")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1,
                                                   help="Examples per step (default 8).")] = None,
    grad_accum: Annotated[int | None, typer.Option("--grad-accum", min=1, help="Gradient accumulation steps.")] = None,
    max_length: Annotated[int | None, typer.Option("--max-length", min=8, help="Tokens per example.")] = None,
    reasoning: Annotated[str, typer.Option("--reasoning", help="keep: train the think block as written; strip: "
                                                               "train a blank <think> block.")] = "keep",
    save_steps: SaveSteps = None,
    seed: SeedOpt = 0,
    store: StoreOpt = None,
    no_resume: NoResume = False,
    threads: ThreadsOpt = None,
    device: DeviceOpt = "auto",
    as_json: JsonOpt = False,
) -> None:
    """LoRA SFT on chat records, loss on the assistant turn only; a rerun resumes from the last checkpoint."""
    from pydantic import ValidationError

    from cotscope.train import SFTOptions, train_sft

    if reasoning not in ("keep", "strip"):
        fail(f"--reasoning must be keep or strip, got {reasoning!r}")
    try:
        opts = SFTOptions(**_options(lora_r=lora_r, lora_alpha=lora_alpha, learning_rate=lr, steps=steps,
                                     epochs=epochs, batch_size=batch_size, grad_accum=grad_accum,
                                     max_length=max_length, reasoning=reasoning, save_steps=save_steps, seed=seed,
                                     threads=threads, device=device))
    except ValidationError as e:
        fail(f"bad option: {e.errors()[0]['loc'][0]}: {e.errors()[0]['msg']}")
    if not data.is_file():
        fail(f"{data}: no such data file")
    st = _store(store)
    try:
        with stage_progress(quiet=as_json) as prog:
            rep = train_sft(model, data, out_dir, opts, store=st, progress=prog, resume=not no_resume)
    finally:
        if st is not None:
            st.close()
    _finish(rep, as_json)


@train_app.command("grpo")
def grpo_cmd(
    model: ModelOpt,
    prompts: Annotated[Path, typer.Option("--prompts", "-p", help="JSONL of prompt (string or messages) or "
                                                                  "messages records.")],
    out_dir: OutOpt,
    reward: Annotated[str, typer.Option("--reward", help="A registered reward.")] = "self-monitor",
    judge: Annotated[str | None, typer.Option("--judge", help="self-monitor: the external judge (llama-guard, "
                                                              "local-harm, refusal-strings, ...).")] = None,
    judge_model: Annotated[str | None, typer.Option("--judge-model", help="provider/model of an LLM judge.")] = None,
    judge_part: Annotated[str | None, typer.Option("--judge-part", help="self-monitor: the part the judge reads "
                                                                        "(reasoning, answer, both).")] = None,
    judge_option: Annotated[list[str] | None, typer.Option("--judge-option", help="Judge option k=v.")] = None,
    answer_weight: Annotated[float | None, typer.Option("--answer-weight", help="self-monitor: add this much "
                                                                               "when the answer is safe.")] = None,
    missing: Annotated[float | None, typer.Option("--missing", help="self-monitor: reward of a completion "
                                                                     "without a verdict (default -0.5).")] = None,
    label_meaning: Annotated[str | None, typer.Option("--label-meaning", help="self-monitor: read the judge's "
                                                      "label as this (unsafe, refused, ...) instead of its own, e.g. "
                                                      "unsafe for local-harmful-request.")] = None,
    num_generations: Annotated[int | None, typer.Option("--num-generations", min=2, help="Completions per "
                                                                                       "prompt (default 4).")] = None,
    max_completion_length: Annotated[int | None, typer.Option("--max-completion-length", min=1,
                                                              help="Tokens per completion (default 96).")] = None,
    steps: Annotated[int | None, typer.Option("--steps", min=1, help="Optimizer steps (default 30).")] = None,
    batch_size: Annotated[int | None, typer.Option(
        "--batch-size", min=2, help="Completions per step (a multiple of --num-generations).")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Learning rate (default 5e-5).")] = None,
    beta: Annotated[float | None, typer.Option("--beta", help="KL coefficient (default 0, TRL's).")] = None,
    temperature: Annotated[float | None, typer.Option("--temperature", help="Sampling temperature.")] = None,
    lora_r: LoraR = None,
    lora_alpha: LoraAlpha = None,
    use_vllm: Annotated[bool, typer.Option("--use-vllm", help="Generate with vLLM (GPU; TRL colocate mode).")] = False,
    save_steps: SaveSteps = None,
    seed: SeedOpt = 0,
    store: StoreOpt = None,
    no_resume: NoResume = False,
    threads: ThreadsOpt = None,
    device: DeviceOpt = "auto",
    as_json: JsonOpt = False,
) -> None:
    """GRPO on a LoRA adapter with a reward function; a rerun resumes from the last checkpoint."""
    from pydantic import ValidationError

    from cotscope._options import parse_kv
    from cotscope.train import GRPOOptions, reward_names, train_grpo

    if reward not in reward_names():
        fail(f"unknown --reward {reward!r}: expected one of {', '.join(reward_names())}")
    ropts: dict[str, Any] = {}
    if reward == "self-monitor":
        if judge is None:
            fail("--reward self-monitor needs --judge (e.g. llama-guard with --judge-model, or local-harm)")
        ropts = _options(judge=judge, judge_model=judge_model, part=judge_part, answer_weight=answer_weight,
                         missing=missing, label_meaning=label_meaning)
        if judge_option:
            ropts["judge_options"] = parse_kv(judge_option, "--judge-option")
    try:
        opts = GRPOOptions(**_options(num_generations=num_generations, max_completion_length=max_completion_length,
                                      steps=steps, batch_size=batch_size, learning_rate=lr, beta=beta,
                                      temperature=temperature, lora_r=lora_r, lora_alpha=lora_alpha,
                                      use_vllm=use_vllm, save_steps=save_steps, seed=seed, threads=threads,
                                      device=device))
        opts.per_step_batch()
    except (ValidationError, ValueError) as e:
        fail(f"bad option: {e}")
    if not prompts.is_file():
        fail(f"{prompts}: no such prompts file")
    st = _store(store)
    try:
        with stage_progress(quiet=as_json) as prog:
            rep = train_grpo(model, prompts, out_dir, reward, ropts, opts, store=st, progress=prog,
                             resume=not no_resume)
    finally:
        if st is not None:
            st.close()
    _finish(rep, as_json)
