"""``cotscope demo`` (the main job) on a fake backend: both benchmark slices, then the report."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cotscope.cli import app
from cotscope.store import Store

from . import fakes  # noqa: F401  (registers the fake/ provider)

runner = CliRunner()


def test_demo_runs_both_slices_and_writes_the_report(tmp_path: Path) -> None:
    store = tmp_path / "demo.duckdb"
    r = runner.invoke(app, ["demo", "--store", str(store), "--model", "fake/model", "--prompts", "3",
                            "--samples", "2", "--questions", "2", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert [x["benchmark"] for x in out["runs"]] == ["safechain-strongreject", "thought-crime"]
    sc, tc = out["runs"]
    assert sc["items"] == 3 and sc["strategies"] == ["think-budget:48", "zerothink"] and sc["generated"] == 12
    assert tc["items"] == 2 and tc["generated"] == 6  # K + 1 samples per question
    assert set(out["formats"]) == {"chat", "inspect", "openai-batch", "pair", "safechain"}
    # The demo's model writes reasoning (think-budget), so the reasoning judges judge something.
    with Store(store, read_only=True) as st:
        budget = [t for t in st.traces(strategy="think-budget:48")]
        assert budget and all(t.reasoning.strip() and t.reasoning_closed for t in budget)
    html = Path(out["report"]).read_text()
    assert "safechain-strongreject" in html and "thought-crime" in html
    # A second demo finds everything in the store.
    r2 = runner.invoke(app, ["demo", "--store", str(store), "--model", "fake/model", "--prompts", "3",
                             "--samples", "2", "--questions", "2", "--json"])
    assert all(x["generated"] == 0 for x in json.loads(r2.stdout)["runs"])
