"""The provenance contract on the command line: ingest reports what it lost, export writes the spans, judge and
monitor read chosen kinds (issue 18)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cotscope.cli import app

runner = CliRunner()

RECORDS = [
    {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x", "stop_reason": "end_turn",
     "stop_sequence": None, "container": {"id": "c1"},
     "content": [{"type": "thinking", "thinking": "I'm sorry, I can't.", "signature": "SIG"},
                 {"type": "redacted_thinking", "data": "BLOB"}, {"type": "text", "text": "Fine."}]},
    {"object": "response", "model": "o3", "output": [
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Looks fine."}], "encrypted_content": "E"},
        {"type": "message", "content": [{"type": "output_text", "text": "A."}]}]},
]


def test_ingest_lost_export_spans_and_judge_kinds(tmp_path: Path) -> None:
    src = tmp_path / "api.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    store = str(tmp_path / "s.duckdb")
    r = runner.invoke(app, ["ingest", str(src), "--store", store, "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert (rep["records"], rep["accepted"], rep["traces"]) == (2, 2, 2)
    assert rep["lost"] == [{"file": str(src), "format": "anthropic", "field": "container",
                            "reason": "not read by the anthropic reader", "records": 1}]
    # Without --json the table says it too (a second ingest of the same file stores nothing new).
    r = runner.invoke(app, ["ingest", str(src), "--store", store])
    assert r.exit_code == 0, r.output
    assert "source fields not kept" in r.output and "container" in r.output

    out = tmp_path / "e.jsonl"
    r = runner.invoke(app, ["export", "--store", store, "--format", "jsonl", "--out", str(out)])
    assert r.exit_code == 0, r.output
    kinds = {rec["model"]: {s["kind"] for s in rec["reasoning_provenance"]}
             for rec in map(json.loads, out.read_text().splitlines())}
    assert kinds == {"claude-x": {"raw", "redacted"}, "o3": {"summary", "encrypted"}}

    def judge(*extra: str) -> dict[str, int]:
        r = runner.invoke(app, ["judge", "-j", "refusal-strings", "-p", "reasoning", "-s", store, "--json", *extra])
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout)

    raw = judge("--reasoning-kinds", "raw")
    summary = judge("--reasoning-kinds", "summary")
    assert (raw["stored"], raw["label_true"], summary["stored"], summary["label_true"]) == (2, 1, 2, 0)
    assert raw["config_hash"] != summary["config_hash"]
    r = runner.invoke(app, ["monitor", "--monitor", "tc-cot-monitor", "-m", "fake/model", "-s", store,
                            "--reasoning-kinds", "raw,thoughts"])
    assert r.exit_code != 0 and "unknown reasoning kind 'thoughts'" in r.output
