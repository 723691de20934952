"""Supervised training (CSFT / discrete CoT), GRPO runs, checkpoints and metrics.json."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cotscope.cot2._config import GRPOConfig, TrainConfig, resolve_device
from cotscope.cot2._csft import csft_loss, fed_logits
from cotscope.cot2._eval import eval_continuous, eval_greedy, eval_pass_at_k, eval_sampling
from cotscope.cot2._grpo import grpo_train
from cotscope.cot2._model import CoT2Model
from cotscope.cot2._tasks import Task, TaskData, make_task

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"

#: Called after every optimiser step with the running loss.
StepHook = Callable[[float], None]
#: Called after every epoch with the epoch's record.
EpochHook = Callable[[dict[str, Any]], None]


@dataclass
class TrainResult:
    """A trained model with its data and metrics."""

    model: CoT2Model
    task: Task
    train: TaskData
    test: TaskData
    metrics: dict[str, Any]


def build_model(cfg: TrainConfig, task: Task) -> CoT2Model:
    """A fresh model sized for ``task``."""
    return CoT2Model(cfg.model, len(task.vocab), task.prompt_len + task.num_steps)


def teacher_prob(cfg: TrainConfig, epoch: int) -> float:
    """Probability of feeding alpha*_t (rather than the model's own softmax) in ``epoch``.

    The curriculum decays linearly from 1 to 0 over the first three quarters of training and
    self-feeds for the last quarter, so the model ends trained on the inputs it sees at inference.
    """
    if cfg.feed == "teacher":
        return 1.0
    if cfg.feed == "self":
        return 0.0
    span = max(1.0, 0.75 * cfg.epochs)
    return max(0.0, 1.0 - epoch / span)


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    tmp.replace(path)  # atomic, so a reader never sees half a file


def save_checkpoint(out_dir: Path, model: CoT2Model, payload: dict[str, Any]) -> None:
    """Write ``out_dir/checkpoint.pt`` with the weights and ``payload`` (configs, kind, epoch)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({**payload, "state_dict": state}, out_dir / CHECKPOINT)


def load_checkpoint(
    run_dir: str | Path, device: str = "auto"
) -> tuple[CoT2Model, TrainConfig, GRPOConfig | None, Task, TaskData, TaskData]:
    """Load a run directory written by :func:`train` or :func:`run_grpo`.

    Returns:
        ``(model, train_config, grpo_config or None, task, train_split, test_split)``; the splits are
        regenerated from the training seed and moved to ``device``.
    """
    ck = torch.load(Path(run_dir) / CHECKPOINT, map_location="cpu", weights_only=True)
    cfg = TrainConfig.model_validate(ck["train_config"])
    gcfg = GRPOConfig.model_validate(ck["grpo_config"]) if ck.get("grpo_config") else None
    dev = resolve_device(device)
    task = make_task(cfg.task)
    model = build_model(cfg, task)
    model.load_state_dict(ck["state_dict"])
    train, test = task.split(cfg.seed)
    return model.to(dev).eval(), cfg, gcfg, task, train.to(dev), test.to(dev)


def _eval_split(model: CoT2Model, method: str, data: TaskData) -> dict[str, Any]:
    return eval_continuous(model, data) if method == "csft" else eval_greedy(model, data)


def train(
    cfg: TrainConfig,
    out_dir: str | Path | None = None,
    on_step: StepHook | None = None,
    on_epoch: EpochHook | None = None,
) -> TrainResult:
    """Train a model from scratch with CSFT (``method="csft"``) or discrete CoT (``"discrete"``).

    Discrete CoT is CSFT with budget 1 (one-hot alpha*, i.e. cross-entropy on the best trace) and is
    evaluated with discrete decoding: greedy accuracy plus the pass@k curve.

    Args:
        cfg: Training configuration.
        out_dir: When given, ``checkpoint.pt`` and ``metrics.json`` are rewritten after every epoch.
        on_step: Progress hook per optimiser step.
        on_epoch: Hook per epoch.

    Returns:
        The model, the task and its splits, and the final metrics (also in ``metrics.json``).
    """
    torch.manual_seed(cfg.seed)
    dev = resolve_device(cfg.device)
    if dev == "cpu":
        torch.set_num_threads(cfg.threads)
    task = make_task(cfg.task)
    train_data, test_data = (d.to(dev) for d in task.split(cfg.seed))
    v = len(task.vocab)
    budget = 1 if cfg.method == "discrete" else cfg.budget
    targets = train_data.target_dists(budget, v)
    model = build_model(cfg, task).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = len(train_data)
    per_epoch = math.ceil(n / cfg.batch_size)
    total = per_epoch * cfg.epochs
    warm = max(1, int(cfg.warmup_frac * total))

    def lr_at(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    gen = torch.Generator(dev).manual_seed(cfg.seed)
    out = Path(out_dir) if out_dir is not None else None
    history: list[dict[str, Any]] = []
    metrics: dict[str, Any] = {}
    t0 = time.perf_counter()
    train_time = 0.0
    for epoch in range(cfg.epochs):
        model.train()
        tp = teacher_prob(cfg, epoch)
        perm = torch.randperm(n, generator=gen, device=dev)
        sums = {"loss": 0.0, "kl": 0.0, "ce": 0.0}
        te = time.perf_counter()
        for s in range(0, n, cfg.batch_size):
            idx = perm[s : s + cfg.batch_size]
            step_logits, ans_logits = fed_logits(model, train_data.prompts[idx], targets[idx], tp, gen)
            loss = csft_loss(step_logits, ans_logits, targets[idx], train_data.answers[idx])
            opt.zero_grad(set_to_none=True)
            loss.total.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            w = idx.shape[0] / n
            sums["loss"] += float(loss.total.detach()) * w
            sums["kl"] += float(loss.kl.detach()) * w
            sums["ce"] += float(loss.ce.detach()) * w
            if on_step is not None:
                on_step(float(loss.total.detach()))
        train_time += time.perf_counter() - te
        rec: dict[str, Any] = {"epoch": epoch + 1, "teacher_prob": tp, **sums}
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            ev = _eval_split(model, cfg.method, test_data)
            rec["test_accuracy"] = ev["accuracy"]
            rec["per_step_entropy"] = ev["per_step_entropy"]
        history.append(rec)
        if on_epoch is not None:
            on_epoch(rec)
        last = epoch + 1 == cfg.epochs
        if last:
            metrics = _final_metrics(model, cfg, train_data, test_data, dev)
        metrics.update(_run_info(cfg, model, history, train_time, per_epoch * (epoch + 1), t0))
        if out is not None:
            save_checkpoint(out, model, {"kind": "sft", "train_config": cfg.model_dump(), "epoch": epoch + 1})
            _write_json(out / METRICS, metrics)
    return TrainResult(model, task, train_data, test_data, metrics)


def _run_info(
    cfg: TrainConfig, model: CoT2Model, history: list[dict[str, Any]], train_s: float, steps: int, t0: float
) -> dict[str, Any]:
    return {
        "task": cfg.task.name,
        "method": cfg.method,
        "budget": 1 if cfg.method == "discrete" else cfg.budget,
        # MNNS: m - 1 continuous steps, answer at step m (the paper's layout).
        "num_steps": make_task(cfg.task).num_steps,
        "layers": cfg.model.layers,
        "heads": cfg.model.heads,
        "dim": cfg.model.dim,
        "seed": cfg.seed,
        "num_parameters": model.num_parameters(),
        "epochs_done": len(history),
        "train_seconds": train_s,
        "train_steps_per_second": steps / max(train_s, 1e-9),
        "wall_seconds": time.perf_counter() - t0,
        "history": history,
        "config": cfg.model_dump(),
    }


def _final_metrics(
    model: CoT2Model, cfg: TrainConfig, train_data: TaskData, test_data: TaskData, dev: str
) -> dict[str, Any]:
    ev = _eval_split(model, cfg.method, test_data)
    tr = _eval_split(model, cfg.method, train_data.subset(slice(0, 2000)))
    m: dict[str, Any] = {
        "test_accuracy": ev["accuracy"],
        "train_accuracy": tr["accuracy"],
        "per_step_entropy": ev["per_step_entropy"],
        "num_train": len(train_data),
        "num_test": len(test_data),
    }
    if cfg.method == "discrete":
        gen = torch.Generator(dev).manual_seed(cfg.seed + 1)
        m["pass_at_k"] = {str(k): v for k, v in eval_pass_at_k(model, test_data, cfg.pass_k, gen).items()}
        # The same discrete model read as a CoT2 model (softmax fed back), for reference.
        m["continuous_accuracy"] = eval_continuous(model, test_data)["accuracy"]
    return m


def evaluate_run(run_dir: str | Path, device: str = "auto", pass_k: int | None = None) -> dict[str, Any]:
    """Re-evaluate a run directory on its test split.

    Returns:
        ``test_accuracy`` (continuous decoding for CSFT runs, greedy for discrete runs, the sampling
        policy for GRPO runs) plus ``continuous_accuracy``, ``greedy_accuracy``, ``per_step_entropy``
        and, for discrete and GRPO runs, ``pass_at_k``.
    """
    model, cfg, gcfg, _, _, test = load_checkpoint(run_dir, device)
    dev = str(test.prompts.device)
    cont = eval_continuous(model, test)
    greedy = eval_greedy(model, test)
    m: dict[str, Any] = {
        "run": str(run_dir),
        "task": cfg.task.name,
        "method": "grpo" if gcfg else cfg.method,
        "continuous_accuracy": cont["accuracy"],
        "greedy_accuracy": greedy["accuracy"],
        "num_test": len(test),
    }
    if gcfg is not None:
        gen = torch.Generator(dev).manual_seed(gcfg.seed + 7)
        m["sampling"] = gcfg.sampling
        m["test_accuracy"] = eval_sampling(
            model, test, gcfg.sampling, gcfg.k, gcfg.gamma, gcfg.eval_samples, gen,
            mts_ratio=gcfg.mts_ratio, dirichlet=gcfg.dirichlet,
        )
        m.update(policy_form(gcfg))
        m["per_step_entropy"] = cont["per_step_entropy"]
    elif cfg.method == "csft":
        m["test_accuracy"] = cont["accuracy"]
        m["per_step_entropy"] = cont["per_step_entropy"]
    else:
        m["test_accuracy"] = greedy["accuracy"]
        m["per_step_entropy"] = greedy["per_step_entropy"]
    if cfg.method == "discrete" or gcfg is not None:
        gen = torch.Generator(dev).manual_seed(cfg.seed + 1)
        curve = eval_pass_at_k(model, test, pass_k or cfg.pass_k, gen)
        m["pass_at_k"] = {str(k): v for k, v in curve.items()}
    return m


def policy_form(cfg: GRPOConfig) -> dict[str, str]:
    """Which sampling policy and ratio a GRPO run used, for its metrics (every result says which)."""
    if cfg.sampling == "mts":
        desc = {
            "geometric": f"MTS K={cfg.k}, tokens ~ softmax(z), ratio = geometric mean of the K token ratios "
                         "(paper)",
            "official": f"MTS K={cfg.k}, tokens ~ softmax(z/K), ratio = product of the K token ratios "
                        "(official code default)",
        }[cfg.mts_ratio]
        return {"sampling": "mts", "mts_ratio": cfg.mts_ratio, "policy_ratio": desc}
    desc = {
        "scaled": f"Dirichlet(gamma={cfg.gamma:g} * softmax(z) + 1e-3) over the vocabulary, density ratio",
        "official": "Dirichlet(1 * clamp(softmax(z), 1e-3) renormalised) over tokens with p >= 1e-3, "
                    "density ratio (official code)",
    }[cfg.dirichlet]
    return {"sampling": "dirichlet", "dirichlet": cfg.dirichlet, "policy_ratio": desc}


def run_grpo(
    init_dir: str | Path,
    cfg: GRPOConfig,
    out_dir: str | Path | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    """GRPO-fine-tune the checkpoint in ``init_dir`` and report before/after accuracies.

    ``test_accuracy`` and ``init_test_accuracy`` are the accuracy of one rollout of the sampling policy
    (MTS with K tokens, or Dirichlet), averaged over ``eval_samples`` rollouts per test prompt, after and
    before GRPO; greedy discrete and continuous accuracies are reported for both as well. ``mts_ratio``
    or ``dirichlet`` and a ``policy_ratio`` sentence record which policy and ratio the run used.
    The official MTS and Dirichlet runs start from a CSFT (teacher-forced) checkpoint
    (``main`` of ``train/continuous_train_grpo_mts.py`` loads ``..._supervisionhard_teacher_...pt``).
    """
    dev = resolve_device(cfg.device)
    if dev == "cpu":
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model, tcfg, _, _, train_data, test = load_checkpoint(init_dir, dev)

    def scores(tag: str) -> dict[str, float]:
        gen = torch.Generator(dev).manual_seed(cfg.seed + 7)
        return {
            f"{tag}test_accuracy": eval_sampling(
                model, test, cfg.sampling, cfg.k, cfg.gamma, cfg.eval_samples, gen,
                mts_ratio=cfg.mts_ratio, dirichlet=cfg.dirichlet,
            ),
            f"{tag}greedy_accuracy": eval_greedy(model, test)["accuracy"],
            f"{tag}continuous_accuracy": eval_continuous(model, test)["accuracy"],
        }

    before = scores("init_")
    gen = torch.Generator(dev).manual_seed(cfg.seed)
    t0 = time.perf_counter()
    hist = grpo_train(model, train_data, cfg, gen, on_step)
    secs = time.perf_counter() - t0
    after = scores("")
    every = max(1, len(hist.reward) // 50)
    metrics: dict[str, Any] = {
        **after,
        **before,
        "init": str(init_dir),
        "init_method": tcfg.method,
        "init_budget": tcfg.budget if tcfg.method == "csft" else 1,
        **policy_form(cfg),
        "k": cfg.k,
        "gamma": cfg.gamma,
        "grpo_seconds": secs,
        "rollouts_per_second": cfg.steps * cfg.prompts_per_step * cfg.group_size / max(secs, 1e-9),
        "reward_curve": [sum(hist.reward[i : i + every]) / len(hist.reward[i : i + every])
                         for i in range(0, len(hist.reward), every)],
        "zero_variance_group_frac": sum(hist.zero_var_frac) / len(hist.zero_var_frac),
        "grpo_config": cfg.model_dump(),
        "train_config": tcfg.model_dump(),
    }
    if out_dir is not None:
        out = Path(out_dir)
        save_checkpoint(
            out, model, {"kind": "grpo", "train_config": tcfg.model_dump(), "grpo_config": cfg.model_dump()}
        )
        _write_json(out / METRICS, metrics)
    return metrics
