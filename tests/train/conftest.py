"""Fixtures of the training tests: the tiny model folder, built once per session."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("cotscope_test_tinylm", Path(__file__).with_name("tinylm.py"))
assert _spec is not None and _spec.loader is not None
tinylm = importlib.util.module_from_spec(_spec)
sys.modules["cotscope_test_tinylm"] = tinylm
_spec.loader.exec_module(tinylm)


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama folder with SmolLM2's tokenizer."""
    pytest.importorskip("trl")
    return tinylm.build_tiny_lm(tmp_path_factory.mktemp("tiny-lm"))
