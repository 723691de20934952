"""``cotscope generate``: prompt files, K samples, faults, resume after SIGKILL, exactly-once traces."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cotscope import Store
from cotscope._options import parse_kv
from cotscope.cli import app
from cotscope.models._fakeserver import FaultConfig, serve_in_thread
from cotscope.traces import read_prompts

runner = CliRunner()


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COTSCOPE_CACHE_DIR", str(tmp_path / "cache"))


def _prompts(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({"prompt": f"question {i}", "category": "c"}) + "\n" for i in range(n)))
    return path


def _gen(url: str, prompts: Path, store: Path, *extra: str) -> list[str]:
    return ["generate", "-m", "openai/fake", "--model-base-url", url, "-p", str(prompts), "-s", str(store),
            "-M", "timeout=0.5", "-M", "backoff_base=0.005", "-M", "backoff_max=0.05", "-M", "max_retries=12", *extra]


def _pairs(store: Path) -> list[tuple[str, int]]:
    with Store(store, read_only=True) as st:
        return [(r["group_id"], r["sample_index"]) for r in st.iter_rows()]


def test_read_prompts_formats_and_bad_lines(tmp_path: Path) -> None:
    j = tmp_path / "p.jsonl"
    j.write_text('{"prompt": "a"}\nnot json\n{"messages": [{"role": "system", "content": "s"}, '
                 '{"role": "user", "content": "b"}]}\n{"nothing": 1}\n\n{"forbidden_prompt": "c", "category": "x"}\n')
    items, bad = read_prompts(j)
    assert [it.messages[-1]["content"] for it in items] == ["a", "b", "c"]
    assert [it.line for it in items] == [1, 3, 6]
    assert items[1].messages[0] == {"role": "system", "content": "s"}
    assert items[2].metadata == {"category": "x"}
    assert [e.line for e in bad] == [2, 4] and all(e.source == str(j) for e in bad)
    c = tmp_path / "p.csv"
    c.write_text("instruction,category\nhello,x\n,y\n")
    items, bad = read_prompts(c)
    assert [it.messages for it in items] == [[{"role": "user", "content": "hello"}]]
    assert bad[0].line == 3
    js = tmp_path / "p.json"
    js.write_text(json.dumps(["x", {"question": "y"}, 5]))
    items, bad = read_prompts(js)
    assert [it.messages[0]["content"] for it in items] == ["x", "y"] and bad[0].line == 3


def test_model_args_are_typed_the_same_for_generate_and_run() -> None:
    assert parse_kv(["a=1", "b=0.5", "c=true", "d=x", "e=[1,2]"], "-M") == {
        "a": 1, "b": 0.5, "c": True, "d": "x", "e": [1, 2]}
    with pytest.raises(ValueError):
        parse_kv(["novalue"], "-M")


def test_generate_k_samples_under_faults_then_resume_adds_only_missing(tmp_path: Path) -> None:
    p = _prompts(tmp_path / "p.jsonl", 15)
    store = tmp_path / "s.duckdb"
    with serve_in_thread(FaultConfig(rate=0.3, seed=3, hang_s=1.0, retry_after="0.01")) as srv:
        r = runner.invoke(app, [*_gen(srv.base_url, p, store, "-k", "2", "--strategy", "lessthink"), "--json"])
        assert r.exit_code == 0, r.output
        out = json.loads(r.stdout)
        assert (out["new_traces"], out["errors"], out["requested"]) == (30, 0, 30)
        ok1 = srv.stats.counts["ok"]
        assert ok1 == 30 and sum(srv.stats.counts.values()) > 30  # faults happened and were retried
        # Raising K generates only the new sample of each prompt (no cache involved: --no-cache).
        r = runner.invoke(app, [*_gen(srv.base_url, p, store, "-k", "3", "--strategy", "lessthink"), "--json",
                                "--no-cache"])
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["skipped_existing"] == 30
        assert srv.stats.counts["ok"] == ok1 + 15
    pairs = _pairs(store)
    assert len(pairs) == 45 and len(set(pairs)) == 45
    assert Counter(k for _, k in pairs) == {0: 15, 1: 15, 2: 15}
    with Store(store, read_only=True) as st:
        t = next(st.traces())
        assert t.strategy == "lessthink" and t.model == "openai/fake"
        assert t.reasoning == "Okay, the user ask for this, I can answer it without thinking much."
        assert t.answer.startswith("answer to question") and t.metadata["category"] == "c"
        assert st.runs()[0]["status"] == "done"


def test_errors_are_reported_with_cause_and_retried_on_rerun(tmp_path: Path) -> None:
    p = _prompts(tmp_path / "p.jsonl", 4)
    store = tmp_path / "s.duckdb"
    with serve_in_thread(FaultConfig(rate=1.0, kinds=("500",))) as srv:
        r = runner.invoke(app, [*_gen(srv.base_url, p, store, "-M", "max_retries=1"), "--json"])
        assert r.exit_code == 1
        out = json.loads(r.stdout)
        assert out["errors"] == 4 and out["new_traces"] == 0
        assert all("HTTP 500" in e["error"] for e in out["error_list"])
    with serve_in_thread() as srv:
        r = runner.invoke(app, [*_gen(srv.base_url, p, store), "--json"])
        assert r.exit_code == 0 and json.loads(r.stdout)["new_traces"] == 4


def test_bad_inputs_fail_clearly(tmp_path: Path) -> None:
    store = tmp_path / "s.duckdb"
    r = runner.invoke(app, ["generate", "-m", "openai/x", "-s", str(store)])
    assert r.exit_code == 2 and "--prompts" in r.output
    p = _prompts(tmp_path / "p.jsonl", 1)
    r = runner.invoke(app, ["generate", "-m", "openai/x", "-s", str(store), "-p", str(p), "--strategy", "bogus"])
    assert r.exit_code == 2 and "unknown strategy" in r.output
    r = runner.invoke(app, ["generate", "-m", "nosuch/x", "-s", str(store), "-p", str(p)])
    assert r.exit_code == 2 and "unknown model provider" in r.output


def test_killed_run_resumes_and_completes_exactly_once(tmp_path: Path) -> None:
    p = _prompts(tmp_path / "p.jsonl", 40)
    store = tmp_path / "s.duckdb"
    env = {**os.environ, "COTSCOPE_CACHE_DIR": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}
    code = "from cotscope.cli import main; main()"
    with serve_in_thread(FaultConfig(delay_s=0.04)) as srv:
        argv = [sys.executable, "-c", code, *_gen(srv.base_url, p, store, "-k", "3", "--max-connections", "2",
                                                 "--no-cache", "--json")]
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while srv.stats.counts["ok"] < 75 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert proc.poll() is None, "generation finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        before = _pairs(store)
        assert 0 < len(before) < 120
        # Requests the killed client left in flight still finish on the server: let them settle first.
        settled = time.monotonic()
        last = srv.stats.counts["ok"]
        while time.monotonic() - settled < 0.5:
            time.sleep(0.05)
            if srv.stats.counts["ok"] != last:
                last, settled = srv.stats.counts["ok"], time.monotonic()
        sent_before = srv.stats.counts["ok"]
        r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        out = json.loads(r.stdout)
        assert out["requested"] == 120 - len(before)
        assert srv.stats.counts["ok"] - sent_before == 120 - len(before)
    after = _pairs(store)
    assert len(after) == 120 and len(set(after)) == 120
    assert set(before) <= set(after)
