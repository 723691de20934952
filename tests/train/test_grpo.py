"""GRPO: prompt files with bad records, two steps on the tiny model with the self-monitor reward (log, reward
curve, store run, adapter), batch checks and the line chart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cotscope_test_tinylm import write_jsonl  # type: ignore[import-not-found]

from cotscope.report import line_chart, standalone_svg
from cotscope.store import Store
from cotscope.train import ADAPTER_META, REWARD_CURVE, GRPOOptions, read_prompt_records, train_grpo
from cotscope.train._base import read_log


def test_prompt_records(tmp_path: Path) -> None:
    p = write_jsonl(tmp_path / "p.jsonl", [
        {"prompt": "a"},
        {"prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "b"}]},
        {"messages": [{"role": "user", "content": "c"}, {"role": "assistant", "content": "drop me"}]},
        {"other": 1},
        "{oops",
        {"prompt": ""},
    ])
    items, errors = read_prompt_records(p)
    assert items == ["a", [{"role": "system", "content": "s"}, {"role": "user", "content": "b"}],
                     [{"role": "user", "content": "c"}]]
    assert [e.line for e in errors] == [4, 5, 6] and all(e.source == str(p) for e in errors)


def test_batch_must_hold_whole_groups() -> None:
    assert GRPOOptions(num_generations=4).per_step_batch() == 8
    with pytest.raises(ValueError, match="multiple"):
        GRPOOptions(num_generations=4, batch_size=6).per_step_batch()
    assert GRPOOptions().beta == 0.0  # TRL's default: no reference model


def test_two_grpo_steps_with_the_self_monitor_reward(tiny_lm: Path, tmp_path: Path) -> None:
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Tell me a story."}, {"prompt": "How are you?"},
                                                 "{bad line"])
    out = tmp_path / "grpo"
    with Store(tmp_path / "s.duckdb") as st:
        rep = train_grpo(str(tiny_lm), prompts, out, "self-monitor", {"judge": "refusal-strings"},
                         GRPOOptions(steps=2, num_generations=2, max_completion_length=8, lora_r=4, lora_alpha=8,
                                     save_steps=1, threads=2), store=st)
        (run,) = st.runs()
    assert rep.steps == 2 and rep.records == {"read": 3, "used": 2, "rejected": 1}
    assert rep.errors[0].startswith(f"{prompts}:3: ")
    log = read_log(out / "log.jsonl")
    assert [e["step"] for e in log] == [1, 2]
    for key in ("reward", "reward_std", "loss", "completion_length", "rewards/self_monitor/mean", "seconds"):
        assert key in log[0], key
    # The random tiny model writes no <monitor> segment: every completion scores the missing value.
    assert log[0]["reward"] == pytest.approx(-0.5)
    assert rep.rewards["counts"]["calls"] == 8 and rep.rewards["counts"]["missing"] == 8
    svg = (out / REWARD_CURVE).read_text()
    assert svg.startswith("<?xml") and "<polyline" in svg and "<style>" in svg
    meta = json.loads((out / ADAPTER_META).read_text())
    assert meta["recipe"] == "grpo" and meta["reward"]["name"] == "self-monitor"
    assert (run["kind"], run["name"], run["status"]) == ("train", "grpo", "done")
    assert run["config"]["reward"]["args"]["judge"] == "refusal-strings"
    assert run["stats"]["rewards"]["counts"]["calls"] == 8


def test_line_chart_breaks_at_missing_values() -> None:
    svg = line_chart({"title": "t <x>", "x": [1, 2, 3, 4], "series": [{"name": "a", "values": [0.1, None, 0.3, 0.4]},
                                                                     {"name": "b", "values": [1, 1, 1, 1]}]})
    assert svg.count("<polyline") == 2 and svg.count("<circle") == 1  # a: one dot, one segment; b: one line
    assert "t &lt;x&gt;" in svg
    assert standalone_svg(svg).startswith('<?xml version="1.0"')
