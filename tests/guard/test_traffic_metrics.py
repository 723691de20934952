"""Guard traffic through the commands that read a store: `cotscope metrics` (table and --json) and the report.

The guard serves real requests (openai SDK, fake upstream, phrase monitor) and records them; the commands then
read the store the guard wrote, so the figures are checked against what the clients saw.
"""

from __future__ import annotations

import json
from pathlib import Path

import openai
from tests.guard.conftest import guard_on, upstream, wait_for
from typer.testing import CliRunner

from cotscope.cli import app
from cotscope.pipeline import guard_metrics
from cotscope.store import Store


def _ask(base: str, q: str, stream: bool) -> str | None:
    client = openai.OpenAI(base_url=base, api_key="k", max_retries=0)
    msgs = [{"role": "user", "content": q}]
    if stream:
        finish = None
        for chunk in client.chat.completions.create(model="fake", messages=msgs, stream=True):  # type: ignore[arg-type]
            finish = chunk.choices[0].finish_reason if chunk.choices else finish
        return finish
    return client.chat.completions.create(model="fake", messages=msgs).choices[0].finish_reason  # type: ignore[arg-type]


def test_metrics_and_report_read_the_guards_traffic(tmp_path: Path) -> None:
    store = tmp_path / "guard.duckdb"
    with upstream() as up, guard_on(up, store=store) as (g, records):
        finishes = [_ask(g.base_url, "turning", True), _ask(g.base_url, "benign", True),
                    _ask(g.base_url, "benign", False), _ask(g.base_url, "answer-turns", True)]
        assert wait_for(lambda: len(records) == 4)
    assert finishes == ["content_filter", "stop", "stop", "content_filter"]

    with Store(store, read_only=True) as st:
        rows = guard_metrics(st, ["model"])
        assert guard_metrics(st, evaluator="guard:other") == []
    assert len(rows) == 1
    r = rows[0]
    assert r.evaluator == "guard:phrase" and r.by == {"model": "fake"}
    assert (r.requests, r.passed, r.blocked, r.flagged, r.logged, r.error) == (4, 2, 2, 0, 0, 0)
    assert r.passed + r.blocked + r.flagged + r.logged + r.error == r.requests
    assert r.monitor_flagged == 2 and r.flag_rate == 0.5 and r.no_verdict == 0
    # The reasoning turn is stopped inside the reasoning, past the phrase; latency was recorded per request.
    stops = sorted(x.stop_offset for x in records if x.stop_offset is not None)
    assert r.median_stop_offset == sum(stops) / 2
    assert r.latency_p50_s is not None and 0 < r.latency_p50_s <= r.latency_p95_s  # type: ignore[operator]

    runner = CliRunner()
    res = runner.invoke(app, ["metrics", "--store", str(store), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["rows"] == [] and len(out["guard"]) == 1
    assert out["guard"][0]["blocked"] == 2 and out["guard"][0]["requests"] == 4
    res = runner.invoke(app, ["metrics", "--store", str(store)], env={"COLUMNS": "250"})
    assert res.exit_code == 0 and "Guard traffic" in res.output and "guard:phrase" in res.output
    assert "no labels of a safety judge" not in res.output

    res = runner.invoke(app, ["report", "--store", str(store), "--out", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "Guard traffic per monitor" in page and "guard:phrase" in page
