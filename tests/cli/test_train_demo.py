"""``cotscope train demo``: wiring to the demonstration functions and a clear error when a stage has nothing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cotscope.cli import app

_spec = importlib.util.spec_from_file_location("tinylm_for_demo_cli", Path(__file__).parents[1] / "train" / "tinylm.py")
assert _spec is not None and _spec.loader is not None
tinylm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tinylm)

runner = CliRunner()


def test_demo_commands_are_listed() -> None:
    res = runner.invoke(app, ["train", "demo", "--help"])
    assert res.exit_code == 0 and "backdoor" in res.output and "self-monitor" in res.output


@pytest.mark.slow
def test_backdoor_demo_without_answers_fails_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("trl")
    monkeypatch.setenv("COTSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    tiny = tinylm.build_tiny_lm(tmp_path / "tiny")
    # The random tiny model's greedy answers are runs of special tokens: nothing to pair with the trigger.
    res = runner.invoke(app, ["train", "demo", "backdoor", "--model", str(tiny), "--out", str(tmp_path / "o"),
                              "--train-limit", "3", "--eval-limit", "1", "-k", "1", "--json"])
    assert res.exit_code == 2, res.output
    assert "gave no non-empty answer to the 3 training prompts" in res.output
    assert (tmp_path / "o" / "store.duckdb").is_file()
