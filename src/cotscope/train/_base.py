"""What every training recipe shares: the base model's resolution, the device and precision rule, the adapter's
metadata file, checkpoints, the per-step log and the report.

The precision rule lives here once because getting it wrong is expensive: TRL's ``SFTConfig`` and
``GRPOConfig`` default to ``bf16=True``, and on a CPU bf16 autocast made one SFT step of SmolLM2 (8 x 48
tokens) take 60 s instead of 3 s. On a CPU training runs in float32 with no gradient checkpointing; on CUDA
in bf16 where the GPU supports it (else fp16).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from cotscope._progress import NullProgress, Progress, ProgressTask
from cotscope.models._local import ADAPTER_META, local_model_path

__all__ = [
    "ADAPTER_META",
    "LOG_FILE",
    "LoraOptions",
    "TrainReport",
    "latest_checkpoint",
    "pick_device",
    "precision_args",
    "resolve_base",
]

#: The per-step training log written into the output folder (one JSON object per logged step).
LOG_FILE = "log.jsonl"
#: Where checkpoints go, under the output folder.
CHECKPOINTS = "checkpoints"

_CKPT = re.compile(r"^checkpoint-(\d+)$")


def resolve_base(model: str) -> str:
    """The folder or Hub id a base model name loads from.

    ``smollm2``, ``local/smollm2`` and ``.gguf`` paths become the de-quantised transformers folder (converted
    once into the cotscope cache); ``local/PATH`` becomes ``PATH``; anything else is a folder or Hub id.
    """
    path = local_model_path(model)
    # A folder is recorded absolute, so the adapter loads from any working directory.
    return str(Path(path).expanduser().resolve()) if Path(path).expanduser().is_dir() else path


def pick_device(device: str = "auto") -> str:
    """``cuda`` when ``auto`` and a GPU is visible, else ``cpu``; any other value is returned as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def precision_args(device: str) -> dict[str, Any]:
    """The ``TrainingArguments`` that set precision and placement for ``device`` (the rule in the module doc).

    Gradient checkpointing (TRL's default) is off everywhere: LoRA on the models this is run with fits in
    memory without it, and it costs a second forward pass per step.
    """
    if not device.startswith("cuda"):
        return {"bf16": False, "fp16": False, "use_cpu": True, "gradient_checkpointing": False}
    import torch

    bf16 = bool(torch.cuda.is_bf16_supported())
    return {"bf16": bf16, "fp16": not bf16, "use_cpu": False, "gradient_checkpointing": False}


def model_dtype(device: str) -> Any:
    """The dtype the base model's weights load in: float32 on a CPU, bf16 (or fp16) on CUDA."""
    import torch

    if not device.startswith("cuda"):
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def set_threads(threads: int | None) -> None:
    """Limit torch's CPU threads (``None``: torch's choice)."""
    if threads:
        import torch

        torch.set_num_threads(int(threads))


class LoraOptions(BaseModel):
    """The LoRA adapter's shape, shared by SFT and GRPO.

    Attributes:
        lora_r: rank. 32 is Thought Crime's figure (arXiv 2506.13206 §2: "LoRA ... rank of 32").
        lora_alpha: scaling numerator (scale = alpha / r).
        lora_dropout: dropout on the adapter's input.
        target_modules: ``all-linear`` (every linear layer but the output head) or a list of module names.
    """

    lora_r: int = Field(default=32, ge=1)
    lora_alpha: int = Field(default=64, ge=1)
    lora_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    target_modules: str | list[str] = "all-linear"

    def lora_config(self) -> Any:
        """The PEFT ``LoraConfig`` for a causal LM."""
        from peft import LoraConfig

        return LoraConfig(r=self.lora_r, lora_alpha=self.lora_alpha, lora_dropout=self.lora_dropout,
                          target_modules=self.target_modules, task_type="CAUSAL_LM")


def latest_checkpoint(out: Path) -> Path | None:
    """The newest complete checkpoint under ``out/checkpoints``, or ``None``.

    A checkpoint counts only when its ``trainer_state.json`` exists: transformers writes that file last, so a
    run killed while saving leaves a folder without it, which is skipped (its step is trained again).
    """
    root = out / CHECKPOINTS
    if not root.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _CKPT.match(p.name)) and
             (p / "trainer_state.json").is_file()]
    return max(found)[1] if found else None


def checkpoint_step(ckpt: Path) -> int:
    """The global step a checkpoint folder was saved at."""
    m = _CKPT.match(ckpt.name)
    if m is None:
        raise ValueError(f"{ckpt} is not a checkpoint folder")
    return int(m.group(1))


def truncate_log(path: Path, last_step: int) -> None:
    """Keep only the log entries up to ``last_step``: a resumed run logs the steps after its checkpoint again,
    and the log must hold each step once."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= last_step]
    path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


def read_log(path: Path) -> list[dict[str, Any]]:
    """The entries of a training log (empty when there is none)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class TrainReport(BaseModel):
    """What one training run did.

    Attributes:
        recipe: ``sft`` or ``grpo``.
        model: the base model as named.
        base_path: the folder (or Hub id) it was loaded from.
        out: the output folder (the adapter, ``log.jsonl``, ``checkpoints/``).
        steps: optimizer steps of the whole run (a resumed run counts the steps before its checkpoint too).
        resumed_from: the checkpoint step this run continued from, or ``None`` for a fresh start.
        records: ``read`` (good and bad records of the data file), ``used`` (trained on), ``rejected``.
        errors: ``"file:line: what"`` for every rejected record.
        train_loss: ``first``, ``last`` and ``mean`` of the logged losses (``None`` when none were logged).
        rewards: GRPO only: ``first``, ``last`` and ``mean`` of the logged mean rewards, and the reward
            function's counters.
        seconds: wall time of this process's training (loading included).
        seconds_per_step: training wall time per step run in this process.
        run_id: the store run, when one was recorded.
        log: the per-step log's path.
        adapter: where the adapter was written (``out``), loadable as ``local/<out>``.
    """

    recipe: str
    model: str
    base_path: str
    out: str
    steps: int = 0
    resumed_from: int | None = None
    records: dict[str, int] = Field(default_factory=dict)
    errors: list[str] = Field(default_factory=list)
    train_loss: dict[str, float | None] = Field(default_factory=dict)
    rewards: dict[str, Any] = Field(default_factory=dict)
    seconds: float = 0.0
    seconds_per_step: float | None = None
    run_id: str | None = None
    log: str = ""
    adapter: str = ""


def summary(values: list[float]) -> dict[str, float | None]:
    """``first``, ``last`` and ``mean`` of a logged series (``None`` each when it is empty)."""
    if not values:
        return {"first": None, "last": None, "mean": None}
    return {"first": values[0], "last": values[-1], "mean": sum(values) / len(values)}


def write_adapter_meta(out: Path, meta: dict[str, Any]) -> None:
    """Write :data:`ADAPTER_META` into an adapter folder."""
    (out / ADAPTER_META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def cotscope_version() -> str:
    """The installed cotscope version (``unknown`` in a source tree without metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cotscope")
    except PackageNotFoundError:
        return "unknown"


@contextmanager
def quiet_datasets() -> Iterator[None]:
    """Hide the ``datasets`` progress bars while TRL tokenises (library code never draws), restoring the setting."""
    from datasets.utils import logging as ds_logging

    was = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            ds_logging.enable_progress_bar()


def silence_printer(trainer: Any) -> Any:
    """Remove the callback that prints every log dict to stdout (transformers adds it when tqdm is off)."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    return trainer


def step_logger(log_path: Path, keys: dict[str, str], progress: Progress | None, description: str,
                prefixes: tuple[str, ...] = ()) -> Any:
    """A ``TrainerCallback`` that appends one JSON line per logged step and drives a :class:`Progress` task.

    Args:
        log_path: the ``log.jsonl`` to append to.
        keys: log name -> the trainer's metric key (e.g. ``{"loss": "loss", "reward": "reward"}``); missing
            metrics are left out of the entry. The first key's value is shown in the progress text.
        prefixes: metric keys starting with one of these are logged under their own name too (GRPO's
            per-function ``rewards/NAME/mean``).
        progress: where progress goes (default: nowhere).
        description: the progress task's label.
    """
    from transformers import TrainerCallback

    class _StepLog(TrainerCallback):
        def __init__(self) -> None:
            self.task: ProgressTask | None = None
            self.t_step = time.perf_counter()
            self.seconds: list[float] = []
            self.last = ""

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.task = (progress or NullProgress()).task(description, total=state.max_steps)
            if state.global_step:
                self.task.advance(state.global_step, f"resumed at step {state.global_step}")

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.t_step = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.seconds.append(time.perf_counter() - self.t_step)
            if self.task is not None:
                self.task.advance(1, self.last)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                   **kw: Any) -> None:
            logs = logs or {}
            entry: dict[str, Any] = {"step": state.global_step}
            entry.update({k: logs[v] for k, v in keys.items() if v in logs})
            entry.update({k: v for k, v in logs.items() if k.startswith(prefixes)} if prefixes else {})
            if len(entry) == 1:  # the end-of-training summary (train_loss, runtime): not a step
                return
            entry["epoch"] = logs.get("epoch", state.epoch)
            entry["learning_rate"] = logs.get("learning_rate")
            entry["seconds"] = round(self.seconds[-1], 4) if self.seconds else None
            with log_path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")
            first = next(iter(keys))
            if entry.get(first) is not None:
                self.last = f"{first} {entry[first]:.4f}"

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.task is not None:
                self.task.done()

    return _StepLog()
