"""One pipeline: every entry point goes through the same stages, and each command reads what the others wrote.

Each test here pins one bug that two copies of a stage caused (CLI vs benchmark runner).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cotscope_test_fakes as fakes  # registered by tests/conftest.py
import pytest
from typer.testing import CliRunner

from cotscope.cli import app
from cotscope.models import modelapi
from cotscope.store import Store

runner = CliRunner()


def _spec(tmp_path: Path) -> Path:
    return fakes.tiny_safechain_spec(tmp_path, ('normal',))


def test_run_then_metrics_prints_the_runs_safe_at_k(tmp_path: Path) -> None:
    store = tmp_path / "s.duckdb"
    r = runner.invoke(app, ["run", str(_spec(tmp_path)), "--model", "fake/model", "--store", str(store), "--json"])
    assert r.exit_code == 0, r.output
    m = runner.invoke(app, ["metrics", "--store", str(store), "--json"])
    assert m.exit_code == 0, m.output
    rows = {(x["judge"], x["part"]): x for x in json.loads(m.stdout)["rows"]}
    # 2 of 3 prompts mention a bomb and get the fake refusal: refusal-strings says safe.
    assert rows[("refusal-strings", "answer")]["k"] == 2
    assert rows[("refusal-strings", "answer")]["safe@k"] == pytest.approx(2 / 3)
    assert ("refusal-strings", "reasoning+answer") in rows
    human = runner.invoke(app, ["metrics", "--store", str(store)])
    assert "first" not in human.output and "Safe@K" in human.output


def _rows(store: Path) -> dict[str, dict[str, Any]]:
    with Store(store, read_only=True) as st:
        out = {}
        for r in st.iter_rows():
            r = dict(r)
            r["metadata"] = {k: v for k, v in r["metadata"].items() if k != "cached"}
            out[r["id"]] = r
        return out


def test_run_and_generate_store_identical_traces_and_run_uses_the_cache(tmp_path: Path) -> None:
    a, b = tmp_path / "gen.duckdb", tmp_path / "run.duckdb"
    g = runner.invoke(app, ["generate", "--benchmark", "safechain-strongreject", "--limit", "3", "-m", "fake/model",
                            "-s", str(a), "-k", "2", "--temperature", "0.6", "--top-p", "0.95", "--max-tokens", "64",
                            "--seed", "0", "--json"])
    assert g.exit_code == 0, g.output
    r = runner.invoke(app, ["run", "safechain-strongreject", "--limit", "3", "-m", "fake/model", "-s", str(b),
                            "-k", "2", "--strategy", "normal", "--max-tokens", "64", "--no-judge", "--json"])
    assert r.exit_code == 0, r.output
    ga, rb = _rows(a), _rows(b)
    assert len(ga) == 6 and set(ga) == set(rb)
    for tid, row in ga.items():
        assert row == rb[tid]
    # The run found every request in the cache that generate filled: the same engine, the same cache.
    with Store(b, read_only=True) as st:
        assert all(t.metadata["cached"] for t in st.traces())
        assert {t.metadata["benchmark"] for t in st.traces()} == {"safechain-strongreject"}


CAPTURED: list[dict[str, Any]] = []


@pytest.fixture
def capture_provider() -> None:
    CAPTURED.clear()

    def factory(model: str, base_url: str | None = None, **kw: Any) -> Any:
        CAPTURED.append(kw)
        return fakes.FakeModel("model")

    modelapi("capture")(factory)


def test_model_args_are_typed_alike_in_run_and_generate(tmp_path: Path, capture_provider: None) -> None:
    r = runner.invoke(app, ["run", str(_spec(tmp_path)), "--model", "capture/x", "-M", "threads=2", "-M", "flavor=a",
                            "--store", str(tmp_path / "r.duckdb"), "--no-judge", "--json"])
    assert r.exit_code == 0, r.output
    p = tmp_path / "q.jsonl"
    p.write_text('{"prompt": "hi"}\n')
    g = runner.invoke(app, ["generate", "-m", "capture/x", "-M", "threads=2", "-M", "flavor=a", "-p", str(p),
                            "-s", str(tmp_path / "g.duckdb"), "--json"])
    assert g.exit_code == 0, g.output
    assert CAPTURED[0]["threads"] == 2 and CAPTURED[-1]["threads"] == 2
    assert isinstance(CAPTURED[0]["threads"], int) and CAPTURED[0]["flavor"] == CAPTURED[-1]["flavor"] == "a"


def test_a_prompt_file_with_a_goal_field_generates(tmp_path: Path) -> None:
    p = tmp_path / "goals.jsonl"
    p.write_text('{"goal": "Write a poem", "target": "Sure"}\nnot json\n{"goal": "Write a story"}\n')
    r = runner.invoke(app, ["generate", "-m", "fake/model", "-p", str(p), "-s", str(tmp_path / "s.duckdb"),
                            "--json"])
    out = json.loads(r.stdout)
    assert out["new_traces"] == 2 and out["bad_prompts"] == 1
    assert out["bad_prompt_list"][0]["line"] == 2 and out["bad_prompt_list"][0]["source"] == str(p)
    assert r.exit_code == 1  # a bad record is reported; the rest is generated
    with Store(tmp_path / "s.duckdb", read_only=True) as st:
        assert sorted(t.prompt_text for t in st.traces()) == ["Write a poem", "Write a story"]


def test_benchmark_llm_judges_go_through_the_engine(tmp_path: Path, fake: Any) -> None:
    """DeceptionBench's judge: cached, fault-handled (a backend failure is an error, retried on rerun)."""
    state = {"fail": True}

    def reply(req: Any) -> Any:
        from cotscope.models import ModelOutput

        if state["fail"] and "<TEXT>" in fake.text(req) and "answer" in fake.text(req).split("<TEXT>")[0][-40:]:
            raise RuntimeError("judge server down")
        return ModelOutput(text='{"quote": "", "consistent": true}', answer='{"quote": "", "consistent": true}')

    judge = fake.model("dec", reply)
    args = ["run", "deceptionbench", "--model", "fake/model", "--judge-model", judge, "--limit", "2", "--json"]
    r = runner.invoke(app, [*args, "--store", str(tmp_path / "a.duckdb")])
    s = json.loads(r.stdout)
    assert r.exit_code == 1 and s["judge_errors"] == 2 and s["judged"] == 2  # the answer part failed: not stored
    state["fail"] = False
    r2 = runner.invoke(app, [*args, "--store", str(tmp_path / "a.duckdb")])
    s2 = json.loads(r2.stdout)
    assert r2.exit_code == 0 and s2["judged"] == 2 and s2["skipped_judgments"] == 2
    # The consistency judge read the belief as explicit context; no trace metadata was edited.
    with Store(tmp_path / "a.duckdb", read_only=True) as st:
        assert not any("belief" in t.metadata for t in st.traces())
        assert {r["evaluator"] for r in st.results()} == {"deception-consistency"}
    calls = len(fake.calls("dec"))
    # A fresh store: every judge call is answered by the engine's request cache.
    r3 = runner.invoke(app, [*args, "--store", str(tmp_path / "b.duckdb")])
    assert r3.exit_code == 0 and json.loads(r3.stdout)["judged"] == 4
    assert len(fake.calls("dec")) == calls


def test_report_shows_ingested_and_judged_traces(tmp_path: Path) -> None:
    f = tmp_path / "t.jsonl"
    f.write_text(json.dumps({"prompt": "How to <b>hack</b>?", "response": "<think>hmm</think>I'm sorry, no."}) + "\n"
                 + json.dumps({"prompt": "Say hi", "response": "<think>easy</think>Hi there"}) + "\n")
    store = tmp_path / "s.duckdb"
    assert runner.invoke(app, ["ingest", str(f), "--store", str(store)]).exit_code == 0
    j = runner.invoke(app, ["judge", "--judge", "refusal-strings", "--store", str(store)])
    assert j.exit_code == 0, j.output
    r = runner.invoke(app, ["report", "--store", str(store), "--out", str(tmp_path / "rep"), "--json"])
    assert r.exit_code == 0, r.output
    html = Path(json.loads(r.stdout)["report"]).read_text()
    assert "All judged traces in this store" in html and "refusal-strings" in html
    assert "How to &lt;b&gt;hack&lt;/b&gt;?" in html and "<b>hack" not in html
    # The refusal phrase is highlighted as the judge's verified evidence, inside the escaped answer.
    assert "<mark" in html and "sorry</mark>, no." in html


class _ClosingModel:
    """A backend that fails once closed, like the local transformers backend (it frees its model)."""

    def __init__(self) -> None:
        self.inner: Any = fakes.FakeModel("model")
        self.name = "closing"
        self.closed = 0

    async def generate(self, requests: Any) -> Any:
        return await self.inner.generate(requests)

    async def aclose(self) -> None:
        self.inner = None
        self.closed += 1


def test_one_backend_serves_every_phase_and_is_closed_once(tmp_path: Path) -> None:
    """Two strategies (two generation phases) on one backend: the first phase must not close it."""
    built: list[_ClosingModel] = []

    def factory(model: str, base_url: str | None = None, **kw: Any) -> _ClosingModel:
        built.append(_ClosingModel())
        return built[-1]

    modelapi("closing")(factory)
    y = _spec(tmp_path)
    y.write_text(y.read_text().replace("strategies: [normal]", "strategies: [normal, zerothink]"))
    r = runner.invoke(app, ["run", str(y), "--model", "closing/x", "--store", str(tmp_path / "s.duckdb"), "--json"])
    s = json.loads(r.stdout)
    assert r.exit_code == 0 and s["generation_errors"] == 0 and s["generated"] == 12, s["notes"]
    assert len(built) == 1 and built[0].closed == 1
