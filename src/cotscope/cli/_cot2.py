"""``cotscope cot2``: train, GRPO-fine-tune and evaluate continuous chain-of-thought models.

torch is imported inside the commands so that ``cotscope --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cotscope.cli._app import console, fail, print_json, progress_bar

cot2_app = typer.Typer(
    help="Continuous chain of thought (CoT2): train from scratch, GRPO with CoT2 sampling, evaluate.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML/JSON config; command-line options override it.")
]


def _summary(title: str, rows: dict[str, Any]) -> Table:
    t = Table(title=title)
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k, v in rows.items():
        if isinstance(v, float):
            t.add_row(k, f"{v:.4f}")
        elif isinstance(v, list):
            t.add_row(k, " ".join(f"{x:.3f}" if isinstance(x, float) else str(x) for x in v))
        elif isinstance(v, dict):
            t.add_row(k, " ".join(f"{a}:{b:.3f}" for a, b in v.items()))
        else:
            t.add_row(k, str(v))
    return t


def _pass_rows(pk: dict[str, float] | None) -> dict[str, Any]:
    if not pk:
        return {}
    ks = [k for k in ("1", "2", "4", "8", "10", "16", "32") if k in pk]
    return {"pass_at_k": {f"@{k}": pk[k] for k in ks}}


@cot2_app.command("train")
def train_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory (checkpoint.pt, metrics.json).")],
    task: Annotated[str | None, typer.Option(help="mnns or graph.")] = None,
    method: Annotated[str | None, typer.Option(help="csft (CoT2) or discrete.")] = None,
    layers: Annotated[int | None, typer.Option(help="Transformer layers.")] = None,
    heads: Annotated[int | None, typer.Option(help="Attention heads.")] = None,
    dim: Annotated[int | None, typer.Option(help="Embedding width d.")] = None,
    budget: Annotated[int | None, typer.Option(help="CSFT budget B (traces in alpha*); default all.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    feed: Annotated[str | None, typer.Option(help="teacher, self or curriculum.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size.")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate.")] = None,
    digits: Annotated[int | None, typer.Option(help="MNNS: number of digits m.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda or auto.")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads.")] = None,
    pass_k: Annotated[int | None, typer.Option(help="Largest k of the discrete pass@k curve.")] = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Train a CoT2 (CSFT) or discrete-CoT model from scratch on a synthetic task."""
    from pydantic import ValidationError

    from cotscope.cot2 import TrainConfig, load_config
    from cotscope.cot2 import train as run_train

    try:
        cfg = load_config(config, TrainConfig) if config else TrainConfig()
        data = cfg.model_dump()
        over = {"method": method, "budget": budget, "epochs": epochs, "seed": seed, "feed": feed,
                "batch_size": batch_size, "lr": lr, "device": device, "threads": threads, "pass_k": pass_k}
        data.update({k: v for k, v in over.items() if v is not None})
        data["model"].update({k: v for k, v in {"layers": layers, "heads": heads, "dim": dim}.items()
                              if v is not None})
        if task is not None:
            data["task"]["name"] = task
        if digits is not None:
            data["task"]["mnns"]["num_digits"] = digits
        cfg = TrainConfig.model_validate(data)
    except (ValidationError, OSError, ValueError) as e:
        fail(f"invalid configuration: {e}")
    with progress_bar(quiet=json) as prog:
        bar = prog.add_task(f"train {cfg.task.name}/{cfg.method}", total=cfg.epochs, info="")
        state = {"loss": float("nan"), "acc": ""}

        def on_step(loss: float) -> None:
            state["loss"] = loss
            prog.update(bar, info=f"loss {loss:.3f}{state['acc']}")

        def on_epoch(rec: dict[str, Any]) -> None:
            if "test_accuracy" in rec:
                state["acc"] = f"  test acc {rec['test_accuracy']:.3f}"
            prog.update(bar, advance=1, info=f"loss {rec['loss']:.3f}{state['acc']}")

        result = run_train(cfg, out, on_step=on_step, on_epoch=on_epoch)
    m = result.metrics
    keys = ("task", "method", "budget", "dim", "layers", "num_parameters", "test_accuracy", "train_accuracy",
            "per_step_entropy", "train_steps_per_second")
    summary: dict[str, Any] = {k: m[k] for k in keys if k in m}
    summary["budget"] = summary.get("budget") or "all"
    summary.update(_pass_rows(m.get("pass_at_k")))
    if json:
        print_json({"out": str(out), **{k: v for k, v in m.items() if k not in ("history", "config")}})
        return
    console.print(_summary(f"cot2 train -> {out}", summary))


@cot2_app.command("grpo")
def grpo_cmd(
    init: Annotated[Path, typer.Option("--init", help="Run directory of a supervised checkpoint.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output run directory.")],
    sampling: Annotated[str | None, typer.Option(help="mts (multi-token) or dirichlet.")] = None,
    k: Annotated[int | None, typer.Option("--k", help="Tokens per step for multi-token sampling.")] = None,
    mts_ratio: Annotated[str | None, typer.Option(
        help="MTS policy ratio: geometric (paper: geometric mean of the K token ratios) or official "
             "(official code: tokens from softmax(z/K), product ratio).")] = None,
    dirichlet: Annotated[str | None, typer.Option(
        help="Dirichlet form: scaled (gamma * softmax + 1e-3) or official (scale 1 over p >= 1e-3).")] = None,
    gamma: Annotated[float | None, typer.Option(help="Dirichlet scale gamma.")] = None,
    steps: Annotated[int | None, typer.Option(help="GRPO steps.")] = None,
    group_size: Annotated[int | None, typer.Option(help="Rollouts per prompt.")] = None,
    prompts_per_step: Annotated[int | None, typer.Option(help="Prompts per step.")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate.")] = None,
    kl_coef: Annotated[float | None, typer.Option(help="KL weight to the frozen reference.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda or auto.")] = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Fine-tune a supervised checkpoint with GRPO using multi-token or Dirichlet sampling."""
    from pydantic import ValidationError

    from cotscope.cot2 import GRPOConfig, load_config, run_grpo

    if not (init / "checkpoint.pt").is_file():
        fail(f"{init}: no checkpoint.pt (train a model with `cotscope cot2 train` first)")
    try:
        cfg = load_config(config, GRPOConfig) if config else GRPOConfig()
        data = cfg.model_dump()
        over = {"sampling": sampling, "k": k, "mts_ratio": mts_ratio, "dirichlet": dirichlet, "gamma": gamma,
                "steps": steps, "group_size": group_size,
                "prompts_per_step": prompts_per_step, "lr": lr, "kl_coef": kl_coef, "seed": seed,
                "device": device}
        data.update({a: b for a, b in over.items() if b is not None})
        cfg = GRPOConfig.model_validate(data)
    except (ValidationError, OSError, ValueError) as e:
        fail(f"invalid configuration: {e}")
    with progress_bar(quiet=json) as prog:
        bar = prog.add_task(f"grpo {cfg.sampling} k={cfg.k}", total=cfg.steps, info="")

        def on_step(step: int, reward: float) -> None:
            prog.update(bar, advance=1, info=f"reward {reward:.3f}")

        m = run_grpo(init, cfg, out, on_step=on_step)
    if json:
        skip = ("grpo_config", "train_config")
        print_json({"out": str(out), **{a: b for a, b in m.items() if a not in skip}})
        return
    keys = ("policy_ratio", "init_method", "init_test_accuracy", "test_accuracy", "init_greedy_accuracy",
            "greedy_accuracy", "init_continuous_accuracy", "continuous_accuracy", "rollouts_per_second")
    console.print(_summary(f"cot2 grpo -> {out}", {a: m[a] for a in keys}))


@cot2_app.command("eval")
def eval_cmd(
    run_dir: Annotated[Path, typer.Argument(help="Run directory written by `cot2 train` or `cot2 grpo`.")],
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
    pass_k: Annotated[int | None, typer.Option(help="Largest k of the pass@k curve.")] = None,
    json: JsonOpt = False,
) -> None:
    """Evaluate a run directory on its task's test split."""
    if not (run_dir / "checkpoint.pt").is_file():
        fail(f"{run_dir}: no checkpoint.pt")
    from cotscope.cot2 import evaluate_run

    with progress_bar(quiet=json) as prog:
        bar = prog.add_task(f"eval {run_dir.name}", total=1, info="")
        m = evaluate_run(run_dir, device, pass_k)
        prog.update(bar, advance=1)
    if json:
        print_json(m)
        return
    rows = {a: b for a, b in m.items() if a != "pass_at_k"}
    rows.update(_pass_rows(m.get("pass_at_k")))
    console.print(_summary(f"cot2 eval {run_dir}", rows))
