"""GRPO with a LoRA adapter (TRL ``GRPOTrainer`` + PEFT), rewarded by a named reward such as ``self-monitor``.

Each step samples ``num_generations`` completions of every prompt in the batch, scores them with the reward
function(s), and updates the adapter towards the completions that beat their group's mean. Generation runs
through transformers on the training model; on GPUs ``use_vllm=True`` hands it to vLLM (TRL's own
integration, whose default ``vllm_mode="colocate"`` runs vLLM in the training process, no server needed).

Checkpoints, resume, the adapter folder and the store run work as for SFT; the log adds the reward's mean and
spread per step and the curve is drawn into ``out/reward_curve.svg``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from cotscope._progress import Progress
from cotscope._registry import registry_config, registry_info
from cotscope.errors import DataError
from cotscope.traces import RecordError, iter_records
from cotscope.train._base import (
    LOG_FILE,
    LoraOptions,
    TrainReport,
    checkpoint_step,
    cotscope_version,
    latest_checkpoint,
    pick_device,
    quiet_datasets,
    read_log,
    resolve_base,
    set_threads,
    silence_printer,
    step_logger,
    summary,
    truncate_log,
    write_adapter_meta,
)
from cotscope.train._records import file_sha256
from cotscope.train._reward import RewardFunction, get_reward
from cotscope.train._sft import common_args, load_base

if TYPE_CHECKING:
    from cotscope.store import Store

__all__ = ["REWARD_CURVE", "GRPOOptions", "read_prompt_records", "train_grpo"]

#: The reward curve drawn into the output folder.
REWARD_CURVE = "reward_curve.svg"


class GRPOOptions(LoraOptions):
    """Options of a GRPO run (LoRA shape as :class:`SFTOptions`).

    Attributes:
        num_generations: completions sampled per prompt (the group whose mean is the baseline).
        max_completion_length: tokens per completion.
        steps: optimizer steps.
        batch_size: completions per step (``None``: ``num_generations * 2``, two prompts per step); must be a
            multiple of ``num_generations``.
        grad_accum: gradient accumulation steps.
        learning_rate: peak learning rate.
        beta: KL coefficient against the base model. 0.0 is TRL's default (no reference model is kept, which
            halves the memory), as in DAPO/Dr. GRPO; DeepSeek-R1 used 0.001.
        temperature: sampling temperature of the completions.
        use_vllm: generate with vLLM (GPU only; TRL's colocate mode). Off on CPUs.
        save_steps: checkpoint every this many steps.
        save_total_limit: checkpoints kept.
        seed: training seed.
        device: ``auto``, ``cpu``, ``cuda``.
        threads: CPU threads for torch.
        logging_steps: log every this many steps.
    """

    num_generations: int = Field(default=4, ge=2)
    max_completion_length: int = Field(default=96, ge=1)
    steps: int = Field(default=30, ge=1)
    batch_size: int | None = Field(default=None, ge=2)
    grad_accum: int = Field(default=1, ge=1)
    learning_rate: float = Field(default=5e-5, gt=0)
    beta: float = Field(default=0.0, ge=0.0)
    temperature: float = Field(default=1.0, gt=0.0)
    use_vllm: bool = False
    save_steps: int = Field(default=10, ge=1)
    save_total_limit: int = Field(default=2, ge=1)
    seed: int = 0
    device: str = "auto"
    threads: int | None = Field(default=None, ge=1)
    logging_steps: int = Field(default=1, ge=1)

    def per_step_batch(self) -> int:
        """Completions per optimizer step, checked to hold whole groups."""
        b = self.batch_size if self.batch_size is not None else self.num_generations * 2
        if b % self.num_generations:
            raise ValueError(f"batch_size ({b}) must be a multiple of num_generations ({self.num_generations})")
        return b


def _prompt_of(rec: Any) -> str | list[dict[str, str]]:
    if not isinstance(rec, dict):
        raise ValueError(f"expected an object, got {type(rec).__name__}")
    value = rec.get("prompt", rec.get("messages"))
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("'prompt' is empty")
        return value
    if isinstance(value, list) and value:
        msgs = [m for m in value if isinstance(m, dict)]
        if len(msgs) != len(value) or any(not isinstance(m.get("content"), str) or "role" not in m for m in msgs):
            raise ValueError("messages must be objects with 'role' and string 'content'")
        # A trailing assistant turn (an SFT record reused as a prompt) is what the policy is to write.
        while msgs and msgs[-1]["role"] == "assistant":
            msgs = msgs[:-1]
        if not msgs:
            raise ValueError("no message before the assistant turn")
        return [{"role": str(m["role"]), "content": str(m["content"])} for m in msgs]
    raise ValueError("expected 'prompt' (a string or a message list) or 'messages'")


def read_prompt_records(path: str | Path) -> tuple[list[str | list[dict[str, str]]], list[RecordError]]:
    """The prompts of a JSONL/JSON file (``prompt`` as a string or messages, or ``messages``) and its bad
    records, each named by file and line (read through :func:`cotscope.traces.iter_records`)."""
    errors: list[RecordError] = []
    out: list[str | list[dict[str, str]]] = []
    for line, rec in iter_records(path, errors):
        try:
            out.append(_prompt_of(rec))
        except ValueError as e:
            errors.append(RecordError(str(e), str(path), line))
    return out, errors


def _reward_name(fn: Any) -> str:
    info = registry_info(fn)
    return info.name if info is not None else str(getattr(fn, "__name__", type(fn).__name__))


def _reward_config(fn: Any) -> Any:
    return registry_config(fn) if registry_info(fn) is not None else {"name": _reward_name(fn)}


def train_grpo(
    model: str,
    prompts: str | Path,
    out: str | Path,
    reward: str | Callable[..., list[float | None]] = "self-monitor",
    reward_options: dict[str, Any] | None = None,
    options: GRPOOptions | None = None,
    *,
    store: Store | None = None,
    progress: Progress | None = None,
    resume: bool = True,
) -> TrainReport:
    """Train a LoRA adapter with GRPO and write it to ``out``.

    Args:
        model: the base model (as :func:`train_sft`).
        prompts: a JSONL/JSON file of ``prompt`` (string or messages) or ``messages`` records; bad records are
            reported with file and line in the report's ``errors`` and the rest used.
        out: the output folder: adapter, tokenizer, ``cotscope_adapter.json``, ``log.jsonl``,
            ``reward_curve.svg``, ``checkpoints/``.
        reward: a registered reward name (built with ``reward_options``) or a TRL reward function.
        reward_options: options of a named reward (e.g. ``{"judge": "llama-guard", "judge_model": ...}``).
        options: :class:`GRPOOptions`.
        store: record the run (kind ``train``, name ``grpo``).
        progress: one task, one unit per optimizer step.
        resume: continue from the newest complete checkpoint.

    Returns:
        The report; ``rewards`` holds the logged reward's first/last/mean and the reward's counters.

    Raises:
        DataError: no usable prompt.
    """
    options = options or GRPOOptions()
    options.per_step_batch()
    t0 = time.perf_counter()
    out_dir = Path(out)
    items, errors = read_prompt_records(prompts)
    if not items:
        first = f"; first: {errors[0]}" if errors else ""
        raise DataError(f"{prompts}: no usable prompt ({len(errors)} bad){first}")
    owned = isinstance(reward, str)
    fn: RewardFunction = get_reward(reward, **(reward_options or {})) if isinstance(reward, str) else reward
    base_path = resolve_base(model)
    device = pick_device(options.device)
    set_threads(options.threads)
    config = {"recipe": "grpo", "model": model, "base_path": base_path, "data": str(prompts),
              "data_sha256": file_sha256(prompts), "out": str(out_dir), "device": device,
              "reward": _reward_config(fn), "options": options.model_dump(mode="json")}
    report = TrainReport(recipe="grpo", model=model, base_path=base_path, out=str(out_dir),
                         records={"read": len(items) + len(errors), "used": len(items), "rejected": len(errors)},
                         errors=[str(e) for e in errors], log=str(out_dir / LOG_FILE), adapter=str(out_dir))
    run_id = store.start_run("train", "grpo", config) if store is not None else None
    report.run_id = run_id
    status = "failed"
    try:
        _train(model, base_path, device, items, fn, out_dir, options, config, progress, resume, run_id, report)
        status = "done"
    except BaseException:
        status = "interrupted"
        raise
    finally:
        report.seconds = time.perf_counter() - t0
        counts = getattr(fn, "counts", None)
        if isinstance(counts, dict):
            report.rewards["counts"] = dict(counts)
        if owned and callable(getattr(fn, "close", None)):
            fn.close()  # type: ignore[attr-defined]
        if store is not None and run_id is not None:
            store.finish_run(run_id, status, report.model_dump(mode="json"))
    return report


def build_grpo_trainer(base_path: str, device: str, items: list[str | list[dict[str, str]]], fn: RewardFunction,
                       out: Path, options: GRPOOptions, callbacks: list[Any]) -> Any:
    """The TRL ``GRPOTrainer`` of a run."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    hf_model, tok = load_base(base_path, device)
    # Prompts are left-padded for generation.
    tok.padding_side = "left"
    args = GRPOConfig(
        **common_args(out, options, device),
        per_device_train_batch_size=options.per_step_batch(),
        gradient_accumulation_steps=options.grad_accum,
        num_generations=options.num_generations,
        max_completion_length=options.max_completion_length,
        temperature=options.temperature,
        beta=options.beta,
        use_vllm=options.use_vllm,
        data_seed=options.seed,
    )
    rows = [{"prompt": [{"role": "user", "content": p}] if isinstance(p, str) else p} for p in items]
    with quiet_datasets():
        trainer = GRPOTrainer(model=hf_model, reward_funcs=[fn], args=args, train_dataset=Dataset.from_list(rows),
                              processing_class=tok, peft_config=options.lora_config(), callbacks=callbacks)
    return silence_printer(trainer)


def _train(model: str, base_path: str, device: str, items: list[str | list[dict[str, str]]], fn: RewardFunction,
           out: Path, options: GRPOOptions, config: dict[str, Any], progress: Progress | None, resume: bool,
           run_id: str | None, report: TrainReport) -> None:
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / LOG_FILE
    ckpt = latest_checkpoint(out) if resume else None
    if ckpt is not None:
        report.resumed_from = checkpoint_step(ckpt)
        truncate_log(log_path, report.resumed_from)
    else:
        log_path.unlink(missing_ok=True)
    keys = {"reward": "reward", "reward_std": "reward_std", "loss": "loss", "kl": "kl",
            "completion_length": "completions/mean_length"}
    logger = step_logger(log_path, keys, progress, f"grpo {model}", prefixes=("rewards/",))
    trainer = build_grpo_trainer(base_path, device, items, fn, out, options, [logger])
    t_train = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(ckpt) if ckpt is not None else None)
    ran = trainer.state.global_step - (report.resumed_from or 0)
    report.steps = trainer.state.global_step
    report.seconds_per_step = (time.perf_counter() - t_train) / ran if ran else None
    trainer.save_model(str(out))
    trainer.processing_class.save_pretrained(str(out))
    write_adapter_meta(out, {"base": model, "base_path": base_path, "recipe": "grpo", "options": config["options"],
                             "reward": config["reward"], "data": config["data"], "data_sha256": config["data_sha256"],
                             "run_id": run_id, "cotscope_version": cotscope_version(), "steps": report.steps})
    entries = read_log(log_path)
    report.rewards.update(summary([e["reward"] for e in entries if e.get("reward") is not None]))
    report.train_loss = summary([e["loss"] for e in entries if e.get("loss") is not None])
    write_reward_curve(out / REWARD_CURVE, entries, f"GRPO reward · {model}")


def write_reward_curve(path: Path, entries: list[dict[str, Any]], title: str) -> None:
    """Draw the logged mean reward (and each reward function's mean) per step into an SVG file."""
    from cotscope.report import line_chart, standalone_svg

    steps = [e["step"] for e in entries]
    series = [{"name": "reward (mean)", "values": [e.get("reward") for e in entries]}]
    per_fn = sorted({k for e in entries for k in e if k.startswith("rewards/") and k.endswith("/mean")})
    if len(per_fn) > 1:  # with one function its mean is the reward itself
        series += [{"name": k.removeprefix("rewards/"), "values": [e.get(k) for e in entries]} for k in per_fn]
    svg = line_chart({"title": title, "x": steps, "series": series, "xlabel": "step", "ylabel": "reward"})
    path.write_text(standalone_svg(svg), encoding="utf-8")
