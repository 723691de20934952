"""The ``cotscope cot2`` CLI end to end: train -> eval -> grpo on a tiny config."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cotscope.cli import app

runner = CliRunner()


def _json(stdout: str) -> dict:
    return json.loads(stdout)


def test_cli_train_eval_grpo(tmp_path: Path) -> None:
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("task: {name: mnns, mnns: {num_digits: 3, digit_max: 5}}\nbatch_size: 32\neval_every: 2\n"
                   "device: cpu\npass_k: 4\n")
    run = tmp_path / "disc"
    r = runner.invoke(app, ["cot2", "train", "--config", str(cfg), "--task", "mnns", "--method",
                            "discrete", "--layers", "1", "--heads", "2", "--dim", "16", "--epochs", "2",
                            "--seed", "1", "--out", str(run), "--json"])
    assert r.exit_code == 0, r.output
    out = _json(r.stdout)
    m = json.loads((run / "metrics.json").read_text())
    assert out["test_accuracy"] == m["test_accuracy"] and "pass_at_k" in m
    assert (run / "checkpoint.pt").is_file() and m["dim"] == 16 and m["seed"] == 1

    r = runner.invoke(app, ["cot2", "eval", str(run), "--json"])
    assert r.exit_code == 0, r.output
    assert _json(r.stdout)["test_accuracy"] == m["test_accuracy"]

    g = tmp_path / "grpo"
    r = runner.invoke(app, ["cot2", "grpo", "--init", str(run), "--sampling", "mts", "--k", "3",
                            "--steps", "2", "--group-size", "4", "--prompts-per-step", "4", "--device", "cpu",
                            "--out", str(g), "--json"])
    assert r.exit_code == 0, r.output
    gm = json.loads((g / "metrics.json").read_text())
    assert gm["k"] == 3 and gm["sampling"] == "mts"
    assert _json(r.stdout)["test_accuracy"] == gm["test_accuracy"]

    # Human-readable mode prints a summary table (on stderr, keeping stdout clean).
    r = runner.invoke(app, ["cot2", "train", "--config", str(cfg), "--method", "csft", "--budget", "2",
                            "--layers", "1", "--heads", "2", "--dim", "16", "--epochs", "1",
                            "--out", str(tmp_path / "csft")])
    assert r.exit_code == 0, r.output
    assert "test_accuracy" in r.output
    assert json.loads((tmp_path / "csft" / "metrics.json").read_text())["budget"] == 2


def test_cli_errors(tmp_path: Path) -> None:
    r = runner.invoke(app, ["cot2", "eval", str(tmp_path)])
    assert r.exit_code == 2
    r = runner.invoke(app, ["cot2", "grpo", "--init", str(tmp_path), "--out", str(tmp_path / "x")])
    assert r.exit_code == 2
    r = runner.invoke(app, ["cot2", "train", "--method", "nope", "--out", str(tmp_path / "y")])
    assert r.exit_code == 2


def test_cot2_help_lists_commands() -> None:
    r = runner.invoke(app, ["cot2", "--help"])
    assert r.exit_code == 0
    for cmd in ("train", "grpo", "eval"):
        assert cmd in r.output
