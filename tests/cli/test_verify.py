"""End to end: ingest URSA-style JSONL -> verify score -> verify best-of-n, each command on the others' output."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cotscope.cli import app
from cotscope.store import Store
from cotscope.verify._ursa_data import _FILE as URSA_FILE

_spec = importlib.util.spec_from_file_location("prm_fixtures",
                                               Path(__file__).parents[1] / "verify" / "prm_fixtures.py")
assert _spec is not None and _spec.loader is not None
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)

runner = CliRunner()


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args))


@pytest.fixture(scope="module")
def prm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fixtures.tiny_prm(tmp_path_factory.mktemp("prm") / "tiny")


def ursa_jsonl(path: Path, problems: int = 4, k: int = 4) -> Path:
    """K URSA-format responses per question with the gold answer next to them, as URSA's files have it."""
    with path.open("w", encoding="utf-8") as f:
        for q in range(problems):
            for i in range(k):
                a = q + 2 if (q + i) % 3 else q + 3
                f.write(json.dumps({
                    "question": f"What is {q} + 2?", "pid": str(q), "sample_index": i, "answer": str(q + 2),
                    "response": f"Step 1: We add {q} and 2.\nStep 2: The sum is {a}.\n†Answer: {a}",
                }) + "\n")
    return path


@pytest.fixture
def store(tmp_path: Path) -> Path:
    s = tmp_path / "s.duckdb"
    r = invoke("ingest", str(ursa_jsonl(tmp_path / "ursa.jsonl")), "--store", str(s), "--json")
    assert r.exit_code == 0, r.output
    return s


def test_ingest_keeps_the_gold_answer_in_the_metadata(store: Path) -> None:
    with Store(store, read_only=True) as st:
        traces = list(st.traces())
    assert len(traces) == 16 and len({t.group_id for t in traces}) == 4
    t = next(t for t in traces if t.prompt_text == "What is 1 + 2?")
    assert t.metadata["answer"] == "3" and t.metadata["pid"] == "1" and t.answer.startswith("Step 1:")


def test_score_then_best_of_n(store: Path, prm_dir: Path) -> None:
    r = invoke("verify", "score", "--prm", str(prm_dir), "--store", str(store), "--batch-size", "5", "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert (s["stored"], s["skipped"], s["parse_errors"], s["errors"], s["kind"]) == (16, 0, 0, 0, "prm")
    assert s["rule"] == "min" and s["key"].startswith("local@")
    again = json.loads(invoke("verify", "score", "--prm", str(prm_dir), "--store", str(store), "--json").stdout)
    assert (again["stored"], again["skipped"]) == (0, 16)

    r = invoke("verify", "best-of-n", "--store", str(store), "--prm", str(prm_dir), "--n", "1,2,4", "--agg", "min",
               "--agg", "mean,last", "--resamples", "200", "--json")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert (rep["groups"], rep["samples"], rep["unscored"], rep["errors"], rep["no_gold"]) == (4, 16, 0, 0, 0)
    methods = ["prm:min", "prm:mean", "prm:last", "majority", "random"]
    assert [(x["n"], x["method"]) for x in rep["rows"]] == [(n, m) for n in (1, 2, 4) for m in methods]
    for x in rep["rows"]:
        assert 0.0 <= x["ci_low"] <= x["accuracy"] <= x["ci_high"] <= 1.0 and x["problems"] == 4
    # 10 of the 16 samples are right ((q + i) % 3 != 0); a random pick's expectation at every N.
    assert all(x["accuracy"] == pytest.approx(10 / 16) for x in rep["rows"] if x["method"] == "random")

    # The stored name works as well as the directory; the paper form has no intervals.
    r = invoke("verify", "best-of-n", "--store", str(store), "--prm", "local", "--n", "4", "--form", "paper", "--json")
    assert r.exit_code == 0, r.output
    assert {x["ci_low"] for x in json.loads(r.stdout)["rows"]} == {None}

    r = invoke("verify", "best-of-n", "--store", str(store), "--prm", "local", "--n", "1,2")
    assert r.exit_code == 0, r.output
    assert "prm:min" in r.output and "majority" in r.output and "95% CIs" in r.output


def test_a_second_prm_key_must_be_named(store: Path, prm_dir: Path) -> None:
    assert invoke("verify", "score", "--prm", str(prm_dir), "--store", str(store)).exit_code == 0
    r = invoke("verify", "score", "--prm", str(prm_dir), "--store", str(store), "-o", "max_length=256")
    assert r.exit_code == 0
    r = invoke("verify", "best-of-n", "--store", str(store), "--prm", "local", "--n", "1")
    assert r.exit_code == 2 and "several PRM keys named 'local'" in r.output
    r = invoke("verify", "best-of-n", "--store", str(store), "--prm", str(prm_dir), "-o", "max_length=256",
               "--n", "1", "--json")
    assert r.exit_code == 0, r.output


def test_errors_are_one_line(store: Path, prm_dir: Path) -> None:
    r = invoke("verify", "score", "--prm", "nope", "--store", str(store))
    assert r.exit_code == 2 and "unknown process reward model 'nope'" in r.output
    r = invoke("verify", "score", "--prm", str(prm_dir), "--store", str(store), "--rule", "max")
    assert r.exit_code == 2 and "unknown --rule" in r.output
    r = invoke("verify", "best-of-n", "--store", str(store), "--prm", str(prm_dir), "--n", "1,x")
    assert r.exit_code == 2 and "--n must be" in r.output
    r = invoke("verify", "best-of-n", "--store", str(store), "--prm", str(prm_dir), "--n", "1")
    assert r.exit_code == 2 and "verify score" in r.output  # nothing scored yet
    assert invoke("verify", "score", "--prm", str(prm_dir), "--store", str(store)).exit_code == 0
    r = invoke("verify", "best-of-n", "--store", str(store), "--prm", "local", "--n", "8")
    assert r.exit_code == 2 and "fewer than N=8" in r.output
    r = invoke("verify", "best-of-n", "--store", str(store), "--prm", "local", "--agg", "max")
    assert r.exit_code == 2 and "unknown aggregation rule" in r.output


def test_llm_judge_prm_through_the_cli(store: Path, fake: Any) -> None:
    def reply(req: Any) -> str:
        text = fake.text(req)
        return '{"steps": [0.9, 0.2]}' if "The sum is" in text else "garbled"

    m = fake.model("prm-cli", reply)
    r = invoke("verify", "score", "--prm", "llm-judge", "-o", f"model={m}", "-o", "cache=false",
               "--store", str(store), "--rule", "mean", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["stored"] == 16 and len(fake.calls("prm-cli")) == 16
    r = invoke("verify", "best-of-n", "--store", str(store), "--prm", "llm-judge", "--n", "1,2", "--json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)["rows"]
    # Every sample gets the same scores, so the PRM's pick is the first drawn: a random pick.
    acc = {(x["n"], x["method"]): x["accuracy"] for x in rows}
    assert acc[(2, "prm:min")] == pytest.approx(acc[(2, "random")])


def test_ursas_own_output_file_ingests_and_scores(tmp_path: Path, prm_dir: Path) -> None:
    s = tmp_path / "u.duckdb"
    r = invoke("ingest", str(URSA_FILE), "--store", str(s), "--json")
    assert r.exit_code == 0, r.output
    ing = json.loads(r.stdout)
    # Metadata written as a string no longer rejects the rows; one row repeats another (same question, response).
    assert (ing["accepted"], ing["rejected"], ing["new"]) == (200, 0, 199)
    r = invoke("verify", "score", "--prm", str(prm_dir), "--store", str(s), "--json")
    assert r.exit_code == 0, r.output
    sc = json.loads(r.stdout)
    assert sc["stored"] == 199 and sc["errors"] == 0
    r = invoke("verify", "best-of-n", "--store", str(s), "--prm", "local", "--n", "1", "--baselines", "random",
               "--form", "paper", "--json")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["no_gold"] == 0 and rep["groups"] + rep["errors"] == 199
    # One response per question: at N=1 every method is that response; URSA's verdicts put URSA-8B near 58%.
    assert 0.45 < rep["rows"][0]["accuracy"] < 0.7


def test_the_report_shows_best_of_n_by_n(store: Path, prm_dir: Path, tmp_path: Path) -> None:
    """ingest -> verify score -> report: the page has the best-of-N table and chart of the scored PRM, with the
    same numbers as ``verify best-of-n``."""
    assert invoke("verify", "score", "--prm", str(prm_dir), "--store", str(store)).exit_code == 0
    r = invoke("report", "--store", str(store), "--out", str(tmp_path / "rep"), "--json")
    assert r.exit_code == 0, r.output
    html = (tmp_path / "rep" / "index.html").read_text()
    assert "Best-of-N with process reward models" in html and "Best-of-N accuracy by N: local@" in html
    rep = json.loads(invoke("verify", "best-of-n", "--store", str(store), "--prm", "local", "--n", "1,2,4",
                            "--baselines", "majority,random,oracle", "--json").stdout)
    oracle4 = next(x["accuracy"] for x in rep["rows"] if x["n"] == 4 and x["method"] == "oracle")
    assert f"{100 * oracle4:.1f}%" in html and "N=4" in html and "<svg" in html


def test_the_report_caps_n_at_the_largest_scored_problem(store: Path, prm_dir: Path, tmp_path: Path) -> None:
    """Only 3 of a problem's 4 samples scored: the report's best-of-N goes to N=2, the largest power of two the
    scored samples allow, instead of giving up at the 4 samples every group has."""
    assert invoke("verify", "score", "--prm", str(prm_dir), "--store", str(store), "--limit", "3").exit_code == 0
    assert invoke("report", "--store", str(store), "--out", str(tmp_path / "rep")).exit_code == 0
    html = (tmp_path / "rep" / "index.html").read_text()
    assert "Best-of-N accuracy by N: local@" in html and "N=2" in html and "N=4" not in html
