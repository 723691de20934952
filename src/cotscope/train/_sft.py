"""LoRA supervised fine-tuning with TRL and PEFT on any causal LM.

Records (OpenAI-style ``messages`` or ``prompt``/``response`` pairs, read by :func:`read_sft_records`) become
TRL's conversational prompt/completion examples: the chat template renders both, and TRL's completion-only
loss masks every prompt token, so only the assistant turn is learned. TRL's ``assistant_only_loss`` is not
used: it needs ``{% generation %}`` markers in the chat template, which most templates (SmolLM2's
included) lack.

Checkpoints go to ``out/checkpoints/``; a rerun (``resume=True``) continues from the newest complete one, so
a killed run finishes at the same total steps. The adapter, the tokenizer and :data:`ADAPTER_META` go to
``out/``, which then loads as ``local/<out>`` in ``cotscope generate`` and ``cotscope run``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from cotscope._progress import Progress
from cotscope.traces import split_reasoning
from cotscope.train._base import (
    CHECKPOINTS,
    LOG_FILE,
    LoraOptions,
    TrainReport,
    checkpoint_step,
    cotscope_version,
    latest_checkpoint,
    model_dtype,
    pick_device,
    precision_args,
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
from cotscope.train._records import SFTRecord, assistant_text, file_sha256, read_sft_records

if TYPE_CHECKING:
    from cotscope.store import Store

__all__ = ["SFTOptions", "sft_examples", "train_sft"]


class SFTOptions(LoraOptions):
    """Options of a LoRA SFT run.

    ``lora_r=32`` and ``learning_rate=4e-5`` are Thought Crime's figures (arXiv 2506.13206 §2: "LoRA ... rank of
    32 and a relatively low learning 4e-5"), so the defaults reproduce its fine-tunes.

    Attributes:
        learning_rate: peak learning rate (linear decay).
        epochs: passes over the data; ignored when ``steps`` is set.
        steps: optimizer steps (overrides ``epochs``).
        batch_size: examples per device step.
        grad_accum: gradient accumulation steps (effective batch = batch_size * grad_accum).
        max_length: tokens per example (prompt and completion; longer ones are truncated).
        reasoning: ``keep`` trains the assistant turn as it is; ``strip`` empties its think block, leaving the
            blank ``<think>\\n\\n</think>\\n\\n`` of non-reasoning mode (also added where a record had no block).
        save_steps: checkpoint every this many steps.
        save_total_limit: checkpoints kept (the oldest are deleted).
        seed: training seed (data order, adapter initialisation).
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda``.
        threads: CPU threads for torch (``None``: torch's choice).
        logging_steps: log (and write ``log.jsonl``) every this many steps.
    """

    learning_rate: float = Field(default=4e-5, gt=0)
    epochs: float = Field(default=1.0, gt=0)
    steps: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=8, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    max_length: int = Field(default=1024, ge=8)
    reasoning: Literal["keep", "strip"] = "keep"
    save_steps: int = Field(default=50, ge=1)
    save_total_limit: int = Field(default=2, ge=1)
    seed: int = 0
    device: str = "auto"
    threads: int | None = Field(default=None, ge=1)
    logging_steps: int = Field(default=1, ge=1)


def strip_reasoning(text: str) -> str:
    """The assistant text with its think block emptied: ``<think>\\n\\n</think>\\n\\n`` then the answer."""
    return assistant_text(split_reasoning(text).answer, "")


def sft_examples(records: Sequence[SFTRecord], reasoning: Literal["keep", "strip"] = "keep") -> list[dict[str, Any]]:
    """TRL conversational prompt/completion examples of ``records``.

    Each example is ``{"prompt": [messages before the assistant turn], "completion": [{"role": "assistant",
    "content": ...}]}``; TRL masks the prompt's tokens out of the loss.
    """
    out = []
    for r in records:
        text = r.completion() if reasoning == "keep" else strip_reasoning(r.completion())
        out.append({"prompt": r.prompt_messages(), "completion": [{"role": "assistant", "content": text}]})
    return out


def load_base(base_path: str, device: str) -> tuple[Any, Any]:
    """The base causal LM (float32 on a CPU, bf16/fp16 on CUDA) and its tokenizer with a pad token.

    The base may itself be an adapter folder (GRPO on an SFT adapter): it is loaded merged onto its own base,
    as ``local/PATH`` loads it, and the new adapter is trained on top.
    """
    from cotscope.models._local import load_causal_lm

    model, tok, _ = load_causal_lm(base_path, model_dtype(device))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok


def common_args(out: Path, options: Any, device: str) -> dict[str, Any]:
    """The ``TrainingArguments`` both recipes share: output, schedule, checkpoints, logging, precision."""
    return {
        "output_dir": str(out / CHECKPOINTS),
        "max_steps": options.steps if options.steps is not None else -1,
        "learning_rate": options.learning_rate,
        "save_strategy": "steps",
        "save_steps": options.save_steps,
        "save_total_limit": options.save_total_limit,
        "logging_steps": options.logging_steps,
        "seed": options.seed,
        "report_to": "none",
        "disable_tqdm": True,  # library code never draws; the callback drives cotscope's Progress
        "dataloader_num_workers": 0,
        **precision_args(device),
    }


def train_sft(
    model: str,
    data: str | Path,
    out: str | Path,
    options: SFTOptions | None = None,
    *,
    store: Store | None = None,
    progress: Progress | None = None,
    resume: bool = True,
) -> TrainReport:
    """Fine-tune a LoRA adapter on ``data`` and write it to ``out``.

    Args:
        model: the base: ``smollm2`` / ``local/smollm2``, a ``.gguf`` file, ``local/PATH``, a folder or a Hub id.
        data: a JSONL (or JSON) file of ``messages`` records or ``prompt``/``response`` pairs. A bad record is
            reported in the report's ``errors`` with file and line; the rest is trained on.
        out: the output folder: adapter, tokenizer, ``cotscope_adapter.json``, ``log.jsonl``, ``checkpoints/``.
        options: LoRA shape, schedule and precision (:class:`SFTOptions`).
        store: record the run (kind ``train``, name ``sft``) with its config and report.
        progress: one task, one unit per optimizer step.
        resume: continue from the newest complete checkpoint in ``out/checkpoints`` when there is one.

    Returns:
        The report (steps, the checkpoint resumed from, records, losses, timings).

    Raises:
        DataError: no usable record in ``data``.
    """
    from cotscope.errors import DataError

    options = options or SFTOptions()
    t0 = time.perf_counter()
    out_dir = Path(out)
    records, errors = read_sft_records(data)
    if not records:
        raise DataError(f"{data}: no usable SFT record ({len(errors)} bad)"
                        + (f"; first: {errors[0]}" if errors else ""))
    base_path = resolve_base(model)
    device = pick_device(options.device)
    set_threads(options.threads)
    config = {"recipe": "sft", "model": model, "base_path": base_path, "data": str(data),
              "data_sha256": file_sha256(data), "out": str(out_dir), "device": device,
              "options": options.model_dump(mode="json")}
    report = TrainReport(recipe="sft", model=model, base_path=base_path, out=str(out_dir),
                         records={"read": len(records) + len(errors), "used": len(records), "rejected": len(errors)},
                         errors=[str(e) for e in errors], log=str(out_dir / LOG_FILE), adapter=str(out_dir))
    run_id = store.start_run("train", "sft", config) if store is not None else None
    report.run_id = run_id
    status = "failed"
    try:
        _train(model, base_path, device, records, out_dir, options, config, progress, resume, run_id, report)
        status = "done"
    except BaseException:
        status = "interrupted"
        raise
    finally:
        report.seconds = time.perf_counter() - t0
        if store is not None and run_id is not None:
            store.finish_run(run_id, status, report.model_dump(mode="json"))
    return report


def build_sft_trainer(base_path: str, device: str, records: Sequence[SFTRecord], out: Path, options: SFTOptions,
                      callbacks: Sequence[Any] = ()) -> Any:
    """The TRL ``SFTTrainer`` of a run (its ``train_dataset`` holds the tokenised examples and their labels)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    hf_model, tok = load_base(base_path, device)
    args = SFTConfig(
        **common_args(out, options, device),
        num_train_epochs=options.epochs,
        per_device_train_batch_size=options.batch_size,
        gradient_accumulation_steps=options.grad_accum,
        max_length=options.max_length,
        completion_only_loss=True,
        data_seed=options.seed,
    )
    ds = Dataset.from_list(sft_examples(records, options.reasoning))
    with quiet_datasets():
        trainer = SFTTrainer(model=hf_model, args=args, train_dataset=ds, processing_class=tok,
                             peft_config=options.lora_config(), callbacks=list(callbacks))
    return silence_printer(trainer)


def _train(model: str, base_path: str, device: str, records: Sequence[SFTRecord], out: Path, options: SFTOptions,
           config: dict[str, Any], progress: Progress | None, resume: bool, run_id: str | None,
           report: TrainReport) -> None:
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / LOG_FILE
    ckpt = latest_checkpoint(out) if resume else None
    if ckpt is not None:
        report.resumed_from = checkpoint_step(ckpt)
        truncate_log(log_path, report.resumed_from)
    else:
        log_path.unlink(missing_ok=True)
    logger = step_logger(log_path, {"loss": "loss", "grad_norm": "grad_norm"}, progress, f"sft {model}")
    trainer = build_sft_trainer(base_path, device, records, out, options, [logger])
    t_train = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(ckpt) if ckpt is not None else None)
    ran = trainer.state.global_step - (report.resumed_from or 0)
    report.steps = trainer.state.global_step
    report.seconds_per_step = (time.perf_counter() - t_train) / ran if ran else None
    trainer.save_model(str(out))
    trainer.processing_class.save_pretrained(str(out))
    write_adapter_meta(out, {"base": model, "base_path": base_path, "recipe": "sft", "options": config["options"],
                             "data": config["data"], "data_sha256": config["data_sha256"], "run_id": run_id,
                             "cotscope_version": cotscope_version(), "steps": report.steps})
    report.train_loss = summary([e["loss"] for e in read_log(log_path) if e.get("loss") is not None])
