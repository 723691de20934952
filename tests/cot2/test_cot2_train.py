"""End-to-end training on tiny tasks: learns above chance; checkpoints and metrics round-trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cotscope.cot2 import (
    GRPOConfig,
    ModelConfig,
    TaskConfig,
    TrainConfig,
    evaluate_run,
    load_checkpoint,
    run_grpo,
    train,
)


def _chance(answers: torch.Tensor) -> float:
    # Majority-class accuracy: what a model ignoring the input would get.
    return float(torch.bincount(answers).max()) / len(answers)


def test_csft_learns_small_mnns_above_chance(small_mnns: TaskConfig, tiny_model: ModelConfig) -> None:
    cfg = TrainConfig(task=small_mnns, model=tiny_model, method="csft", epochs=60, batch_size=16, lr=1e-2,
                      eval_every=60, device="cpu")
    res = train(cfg)
    assert res.metrics["train_accuracy"] > _chance(res.train.answers) + 0.15
    assert len(res.metrics["per_step_entropy"]) == 2 == res.metrics["num_steps"]  # m - 1 steps for m = 3
    assert res.metrics["history"][-1]["loss"] < res.metrics["history"][0]["loss"]


def test_discrete_training_writes_checkpoint_and_metrics(
    tmp_path: Path, small_mnns: TaskConfig, tiny_model: ModelConfig
) -> None:
    cfg = TrainConfig(task=small_mnns, model=tiny_model, method="discrete", epochs=4, batch_size=32,
                      eval_every=2, pass_k=4, device="cpu")
    res = train(cfg, tmp_path / "run")
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["test_accuracy"] == pytest.approx(res.metrics["test_accuracy"])
    assert set(m["pass_at_k"]) == {"1", "2", "3", "4"}
    assert [h["epoch"] for h in m["history"]] == [1, 2, 3, 4]
    assert "test_accuracy" in m["history"][1] and "test_accuracy" not in m["history"][0]
    _, tcfg, gcfg, _, _, test = load_checkpoint(tmp_path / "run", "cpu")
    assert tcfg == cfg and gcfg is None
    ev = evaluate_run(tmp_path / "run", "cpu")
    assert ev["test_accuracy"] == pytest.approx(res.metrics["test_accuracy"])
    assert torch.equal(test.prompts, res.test.prompts)
    g = run_grpo(tmp_path / "run", GRPOConfig(steps=3, group_size=4, prompts_per_step=4, k=2, device="cpu"),
                 tmp_path / "grpo")
    assert 0.0 <= g["test_accuracy"] <= 1.0 and "init_test_accuracy" in g
    assert evaluate_run(tmp_path / "grpo", "cpu")["method"] == "grpo"


def test_graph_csft_self_feeding_runs(small_graph: TaskConfig, tiny_model: ModelConfig) -> None:
    cfg = TrainConfig(task=small_graph, model=tiny_model, method="csft", feed="curriculum", epochs=3,
                      batch_size=50, eval_every=3, device="cpu")
    res = train(cfg)
    assert res.metrics["history"][0]["teacher_prob"] == 1.0
    assert 0.0 <= res.metrics["test_accuracy"] <= 1.0


def test_training_is_seeded(small_mnns: TaskConfig, tiny_model: ModelConfig) -> None:
    cfg = TrainConfig(task=small_mnns, model=tiny_model, epochs=2, batch_size=32, device="cpu")
    a, b = train(cfg), train(cfg)
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(pa, pb)
