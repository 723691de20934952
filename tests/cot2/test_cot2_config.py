"""Config models: validation and YAML/JSON loading."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from cotscope.cot2 import GRPOConfig, TrainConfig, load_config
from cotscope.cot2._train import teacher_prob


def test_yaml_and_json_roundtrip(tmp_path: Path) -> None:
    y = tmp_path / "c.yaml"
    y.write_text("method: discrete\nmodel: {dim: 32, heads: 4}\ntask: {name: mnns, mnns: {num_digits: 3}}\n")
    cfg = load_config(y, TrainConfig)
    assert cfg.method == "discrete" and cfg.model.dim == 32 and cfg.task.mnns.num_digits == 3
    j = tmp_path / "c.json"
    j.write_text(json.dumps(cfg.model_dump()))
    assert load_config(j, TrainConfig) == cfg


def test_unknown_keys_and_bad_values_rejected(tmp_path: Path) -> None:
    y = tmp_path / "c.yaml"
    y.write_text("methd: csft\n")
    with pytest.raises(ValidationError):
        load_config(y, TrainConfig)
    with pytest.raises(ValidationError):
        GRPOConfig(clip_eps=1.5)
    with pytest.raises(ValidationError):
        TrainConfig(budget=0)


def test_repo_configs_load() -> None:
    root = Path(__file__).resolve().parents[2] / "configs" / "cot2"
    files = sorted(root.glob("*.yaml"))
    assert files
    for f in files:
        cls = GRPOConfig if f.name.startswith("grpo") else TrainConfig
        if f.name.startswith("grid"):
            continue
        load_config(f, cls)


def test_curriculum_schedule() -> None:
    cfg = TrainConfig(feed="curriculum", epochs=8)
    probs = [teacher_prob(cfg, e) for e in range(8)]
    assert probs[0] == 1.0 and probs[-1] == 0.0
    assert all(a >= b for a, b in itertools.pairwise(probs))
    assert teacher_prob(TrainConfig(feed="teacher"), 3) == 1.0
    assert teacher_prob(TrainConfig(feed="self"), 0) == 0.0
