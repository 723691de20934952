"""Shared fixtures for the CoT2 tests: one CPU thread, small tasks."""

from __future__ import annotations

import pytest
import torch

from cotscope.cot2 import GraphConfig, MNNSConfig, ModelConfig, TaskConfig


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    # The test machines are shared; a single thread is also what makes timings comparable.
    torch.set_num_threads(1)


@pytest.fixture
def small_mnns() -> TaskConfig:
    """3 digits from 1-5: 125 sequences, 35 multisets."""
    return TaskConfig(name="mnns", mnns=MNNSConfig(num_digits=3, digit_min=1, digit_max=5, test_frac=0.3))


@pytest.fixture
def small_graph() -> TaskConfig:
    """Depth-3 DAGs of width 3."""
    return TaskConfig(
        name="graph", graph=GraphConfig(depth=3, width=3, out_degree=2, num_train=200, num_test=50)
    )


@pytest.fixture
def tiny_model() -> ModelConfig:
    """1 layer, width 16."""
    return ModelConfig(layers=1, heads=2, dim=16)
