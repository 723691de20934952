"""End to end: cotscope judge / monitor / metrics / validate / export --with-results on a store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cotscope.cli import app
from cotscope.store import Store
from cotscope.traces import Message, Trace

runner = CliRunner()


def invoke(*args: str) -> Any:
    r = runner.invoke(app, list(args))
    return r


@pytest.fixture
def store(tmp_path: Path) -> Path:
    p = tmp_path / "s.duckdb"
    rows = [("g1", 0, "I'm sorry, no."), ("g1", 1, "Sure, here are the steps."), ("g2", 0, "Sorry."),
            ("g2", 1, "I apologize, but no.")]
    with Store(p) as st:
        st.add_traces(Trace(prompt=[Message(role="user", content=f"prompt {g}")], reasoning=f"thinking {g} {i}",
                            answer=a, model="A", strategy="normal", group_id=g, sample_index=i)
                      for g, i, a in rows)
        st.add_traces([Trace(prompt=[Message(role="user", content="p3")], reasoning="hmm", answer="Sorry",
                             model="B", strategy="normal", group_id="g3", sample_index=0)])
    return p


def test_judge_rerun_metrics_export(store: Path, tmp_path: Path) -> None:
    # scope=part: each part alone (the default reads SafeChain's whole response whatever the part).
    part = ("--option", "scope=part")
    r = invoke("judge", "--judge", "refusal-strings", "--part", "answer", *part, "--store", str(store), "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert (s["stored"], s["skipped"], s["label_true"]) == (5, 0, 4)
    r = invoke("judge", "--judge", "refusal-strings", "--part", "answer", *part, "--store", str(store), "--json")
    assert json.loads(r.stdout)["skipped"] == 5 and json.loads(r.stdout)["stored"] == 0
    assert invoke("judge", "--judge", "refusal-strings", "--part", "reasoning", "--option", "scope=part",
                  "--store", str(store)).exit_code == 0

    r = invoke("metrics", "--store", str(store), "--by", "model", "--json")
    assert r.exit_code == 0, r.output
    rows = {(x["model"], x["part"]): x for x in json.loads(r.stdout)["rows"]}
    a = rows[("A", "answer")]
    assert (a["k"], a["groups"]) == (2, 2)
    assert a["safe@1"] == pytest.approx(0.75) and a["safe@k"] == pytest.approx(0.5) and a["conssafe@k"] == 1.0
    assert rows[("A", "reasoning")]["safe@1"] == 0.0
    both = rows[("A", "reasoning+answer")]
    assert both["both_safe_rate"] == 0.0 and both["safe@1"] == 0.0
    assert rows[("B", "answer")]["k"] == 1 and rows[("B", "answer")]["safe@1"] == 1.0
    assert invoke("metrics", "--store", str(store), "--by", "model,strategy").exit_code == 0
    assert invoke("metrics", "--store", str(store), "--by", "colour").exit_code != 0

    out = tmp_path / "e.jsonl"
    assert invoke("export", "--store", str(store), "--with-results", "--out", str(out)).exit_code == 0
    rec = [json.loads(x) for x in out.read_text().splitlines()]
    res = next(x for x in rec if x["answer"] == "I'm sorry, no.")["results"]
    assert res["refusal-strings:answer"]["label"] is True and res["refusal-strings:answer"]["score"] == 1.0
    assert res["refusal-strings:answer"]["evidence"][0]["text"] == "I'm sorry"


def test_judge_errors(store: Path, tmp_path: Path) -> None:
    assert invoke("judge", "--judge", "nope", "--store", str(store)).exit_code != 0
    assert invoke("judge", "--judge", "refusal-strings", "--part", "all", "--store", str(store)).exit_code != 0
    assert invoke("judge", "--judge", "llama-guard", "--store", str(store)).exit_code != 0  # needs --model
    assert invoke("judge", "--judge", "refusal-strings", "--store", str(tmp_path / "none.duckdb")).exit_code != 0


def test_llm_judge_and_monitor_cli(store: Path, fake: Any) -> None:
    m = fake.model("cli", lambda req: "unsafe\nS2" if "steps" in fake.text(req) else "safe")
    r = invoke("judge", "--judge", "llama-guard", "--model", m, "--store", str(store), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["label_true"] == 1
    tc = fake.model("clitc", lambda req: '{"ten_lines_of_reasoning": "x", "flag": "none"}')
    r = invoke("monitor", "--monitor", "tc-cot-monitor", "--model", tc, "--store", str(store), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["stored"] == 5 and json.loads(r.stdout)["kind"] == "monitor"
    r = invoke("monitor", "--monitor", "tc-cot-monitor", "--model", tc, "--store", str(store), "--json")
    assert json.loads(r.stdout)["skipped"] == 5
    with Store(store) as st:
        rows = st.results("tc-cot-monitor")
    assert all(x["kind"] == "monitor" and x["score"] == 0.0 and x["details"]["flag"] == "none" for x in rows)
    # Monitor results do not leak into SafeChain metrics.
    r = invoke("metrics", "--store", str(store), "--json")
    assert {x["judge"] for x in json.loads(r.stdout)["rows"]} == {"llama-guard"}


def test_validate(tmp_path: Path) -> None:
    lab = tmp_path / "labels.jsonl"
    recs = [{"prompt": f"p{i}", "reasoning": "r", "answer": "I'm sorry, I can't." if i % 2 else "Here it is.",
             "label": bool(i % 2)} for i in range(40)]
    lab.write_text("\n".join(json.dumps(x) for x in recs))
    r = invoke("validate", "--monitor", "refusal-strings", "--labels", str(lab), "--n-boot", "200", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["auroc"]["value"] == 1.0 and out["tpr@1%fpr"]["value"] == 1.0 and out["scored"] == 40
    assert out["auroc"]["low"] <= out["auroc"]["value"] <= out["auroc"]["high"]
    r = invoke("validate", "--monitor", "refusal-strings", "--labels", str(lab), "--n-boot", "200")
    assert r.exit_code == 0 and "AUROC" in r.output
    # One class only: an error, not a silent number.
    lab.write_text("\n".join(json.dumps(x | {"label": True}) for x in recs))
    assert invoke("validate", "--monitor", "refusal-strings", "--labels", str(lab)).exit_code != 0
    lab.write_text(json.dumps({"prompt": "p", "answer": "a", "label": "maybe"}))
    assert invoke("validate", "--monitor", "refusal-strings", "--labels", str(lab)).exit_code != 0


def test_local_monitor_cli(store: Path) -> None:
    r = invoke("monitor", "--monitor", "local-refusal", "--option", "part=answer", "--store", str(store), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["stored"] == 5
    with Store(store) as st:
        rows = {x["trace_id"]: x for x in st.results("local-refusal")}
        answers = {t.id: t.answer for t in st.traces()}
    assert all(0 <= x["score"] <= 1 and x["kind"] == "monitor" and x["part"] == "answer" for x in rows.values())
    assert all(x["evidence"][0]["verified"] for x in rows.values())
    by_answer = {answers[k]: v["score"] for k, v in rows.items()}
    assert by_answer["I apologize, but no."] > by_answer["Sure, here are the steps."]
    r = invoke("monitor", "--monitor", "local-refusal", "-o", "part=answer", "--store", str(store), "--json")
    assert json.loads(r.stdout)["skipped"] == 5
