"""``--ray`` and ``--ray-workers`` on every command whose stage fans out; a clear error without Ray."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cotscope.cli import app

runner = CliRunner()

COMMANDS = [["generate"], ["judge"], ["monitor"], ["run"], ["agent", "run"]]


@pytest.mark.parametrize("cmd", COMMANDS, ids=" ".join)
def test_every_fanning_command_takes_ray(cmd: list[str]) -> None:
    r = runner.invoke(app, [*cmd, "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0
    assert "--ray " in r.output and "--ray-workers" in r.output and "COTSCOPE_RAY" in r.output


def test_ray_without_ray_installed_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *a: Any) -> Any:
        return None if name == "ray" else real(name, *a)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    p = tmp_path / "p.jsonl"
    p.write_text('{"prompt": "hi"}\n')
    r = runner.invoke(app, ["generate", "-m", "openai/x", "-p", str(p), "-s", str(tmp_path / "s.duckdb"),
                            "--ray", "auto"])
    assert r.exit_code == 2 and "cotscope[ray]" in r.output
    r = runner.invoke(app, ["judge", "-j", "refusal-strings", "-s", str(tmp_path / "s.duckdb")],
                      env={"COTSCOPE_RAY": "auto"})
    assert r.exit_code == 2 and "cotscope[ray]" in r.output
