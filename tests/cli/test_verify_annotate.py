"""cotscope verify synth -> generate -> verify annotate -> verify train-prm -> verify score, each command on the
others' output, with a scripted policy."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cotscope.cli import app
from cotscope.models import GenerateRequest
from cotscope.store import Store

runner = CliRunner()


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args))


def _policy(req: GenerateRequest) -> str:
    """Solves an additions-only synthetic problem right when its sample index is even; a rollout (its prefill
    ends in a step header) reaches the answer only from the first step."""
    q = str(req.messages[-1]["content"])
    nums = [int(x) for x in re.findall(r"\d+", q.split("Question:")[-1])]
    gold = sum(nums)  # additions only
    if req.prefill.rstrip().endswith(":") and req.prefill.count("Step") > 1:
        k = req.prefill.count("Step") - 1
        return f" done.\n†Answer: {gold if k <= 1 else 0}"
    right = req.sample_index % 2 == 0
    return f"Step 1: I read {nums[0]}.\nStep 2: I compute it.\n†Answer: {gold if right else gold + 1}"


@pytest.mark.slow
def test_synth_generate_annotate_train_score(fake: Any, tmp_path: Path) -> None:
    model = fake.model("policy", _policy)
    prompts, store, prm = tmp_path / "p.jsonl", tmp_path / "s.duckdb", tmp_path / "prm"
    r = invoke("verify", "synth", "--n", "4", "--out", str(prompts), "--ops", "2", "--kinds", "add", "--small",
               "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["problems"] == 4
    r = invoke("generate", "--prompts", str(prompts), "--model", model, "--store", str(store), "--samples", "2")
    assert r.exit_code == 0, r.output
    r = invoke("verify", "annotate", "--store", str(store), "--model", model, "--rollouts", "2", "--json")
    assert r.exit_code == 0, r.output
    stats = json.loads(r.stdout)
    assert stats["labelled"] == 8 and stats["all_correct"] == 4 and stats["first_errors"] == {"2": 4}
    assert stats["calls"] == 4 * 2  # two steps: one check of prefix 1, two rollouts
    r = invoke("verify", "annotate", "--store", str(store), "--model", model, "--rollouts", "2")
    assert r.exit_code == 0 and "next: cotscope verify train-prm" in r.output
    with Store(store, read_only=True) as st:
        assert len(st.results("ursa-bel")) == 8
    r = invoke("verify", "train-prm", "--data", str(store), "--out", str(prm), "--epochs", "1", "--batch-size",
               "4", "--threads", "1", "--json")
    assert r.exit_code == 0, r.output
    t = json.loads(r.stdout)
    assert t["used"] == 8 and t["steps_labelled"] == 16 and t["positives"] == 12
    r = invoke("verify", "score", "--prm", str(prm), "--store", str(store), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["stored"] == 8


def test_annotate_and_train_errors(fake: Any, tmp_path: Path) -> None:
    r = invoke("verify", "annotate", "--store", str(tmp_path / "s.duckdb"), "--model", "fakejudge/x",
               "--method", "mcts")
    assert r.exit_code == 2 and "unknown --method" in r.output
    r = invoke("verify", "train-prm", "--data", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "o"))
    assert r.exit_code == 2 and "no such file" in r.output
    r = invoke("verify", "synth", "--n", "3", "--out", str(tmp_path / "p.jsonl"), "--ops", "9")
    assert r.exit_code == 2 and "ops must lie in 2..6" in r.output
