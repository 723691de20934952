"""End-to-end tests of the core commands: ingest, traces, show, export, demo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from cotscope.cli import app

runner = CliRunner()


def _file(tmp_path: Path) -> Path:
    p = tmp_path / "t.jsonl"
    p.write_text(
        json.dumps({"prompt": "<script>alert(1)</script> how?", "response":
                    "<think>First.\n\nWait, second.</think>Answer.", "model": "m"}) + "\n"
        + "not json\n"
        + json.dumps({"prompt": "q2", "response": "plain", "model": "m2"}) + "\n"
    )
    return p


def test_ingest_json_reports_and_reconciles(tmp_path: Path) -> None:
    f, store = _file(tmp_path), tmp_path / "s.duckdb"
    r = runner.invoke(app, ["ingest", str(f), "--store", str(store), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert (out["traces"], out["rejected"], out["records"], out["new"]) == (2, 1, 3, 2)
    assert out["errors"] == [{"source": str(f), "line": 2, "error": out["errors"][0]["error"]}]
    assert "invalid JSON" in out["errors"][0]["error"]
    r2 = runner.invoke(app, ["ingest", str(f), "--store", str(store), "--json"])
    assert json.loads(r2.stdout)["new"] == 0


def test_missing_file_is_clear_error(tmp_path: Path) -> None:
    r = runner.invoke(app, ["ingest", str(tmp_path / "nope.jsonl"), "--store", str(tmp_path / "s.duckdb")])
    assert r.exit_code != 0
    assert "no such file" in r.output


def test_unknown_format_is_clear_error(tmp_path: Path) -> None:
    r = runner.invoke(app, ["ingest", str(_file(tmp_path)), "--store", str(tmp_path / "s.duckdb"), "-f", "xml"])
    assert r.exit_code != 0 and "unknown format 'xml'" in r.output


def test_traces_show_export(tmp_path: Path) -> None:
    f, store = _file(tmp_path), tmp_path / "s.duckdb"
    runner.invoke(app, ["ingest", str(f), "--store", str(store)])
    r = runner.invoke(app, ["traces", "--store", str(store), "--json", "--model", "m"])
    listing = json.loads(r.stdout)
    assert listing["total"] == 1 and listing["traces"][0]["steps"] == 2
    tid = listing["traces"][0]["id"]
    r = runner.invoke(app, ["show", tid[:8], "--store", str(store)])
    assert r.exit_code == 0
    text = r.stdout
    assert "reasoning: 2 steps" in text and "[1] First." in text and "Wait, second." in text
    assert text.index("reasoning") < text.index("Answer.")
    assert "<script>alert(1)</script>" in text  # shown as text, not interpreted as markup
    r = runner.invoke(app, ["show", "ffffffff", "--store", str(store)])
    assert r.exit_code != 0 and "no trace" in r.output
    outp = tmp_path / "out.jsonl"
    r = runner.invoke(app, ["export", "--store", str(store), "--out", str(outp)])
    assert r.exit_code == 0
    assert len(outp.read_text().splitlines()) == 2
    r = runner.invoke(app, ["export", "--store", str(store), "--format", "parquet"])
    assert r.exit_code != 0 and "--out" in r.output


def test_show_on_missing_store(tmp_path: Path) -> None:
    r = runner.invoke(app, ["traces", "--store", str(tmp_path / "none.duckdb")])
    assert r.exit_code != 0 and "no such store" in r.output


def test_bundled_samples_cover_every_format(tmp_path: Path) -> None:
    """The sample traces `cotscope demo` ingests first: one file per reader, two bad records reported."""
    from cotscope.cli._demo import _ingest_samples

    out = _ingest_samples(tmp_path / "d.duckdb")
    assert set(out["formats"]) == {"chat", "inspect", "openai-batch", "pair", "safechain"}
    assert sorted(e["line"] for e in out["errors"]) == [2, 8]  # the deliberately bad sample records


def test_console_script_runs(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "cotscope"
    r = subprocess.run([str(exe), "ingest", str(_file(tmp_path)), "--store", str(tmp_path / "s.duckdb"), "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["traces"] == 2


def test_killed_ingest_resumes_without_duplicates(tmp_path: Path) -> None:
    import signal
    import time

    import duckdb

    src = tmp_path / "big.jsonl"
    with open(src, "w") as f:
        for i in range(60_000):
            f.write(json.dumps({"prompt": f"q{i}", "response": f"<think>r{i}</think>a{i}"}) + "\n")
    store = tmp_path / "s.duckdb"
    exe = Path(sys.executable).parent / "cotscope"
    argv = [str(exe), "ingest", str(src), "--store", str(store), "--json"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # DuckDB locks the file against other processes while the writer runs, so watch the WAL grow instead:
    # once batches have been written, kill the writer mid-file.
    wal = Path(str(store) + ".wal")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if (wal.exists() and wal.stat().st_size > 2_000_000) or (store.exists() and store.stat().st_size > 4_000_000):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "ingest finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["traces"] == 60_000 and out["new"] + out["duplicates"] == 60_000
    assert out["duplicates"] > 0 and out["new"] > 0  # the killed run had stored part of the file
    with duckdb.connect(str(store), read_only=True) as con:
        assert con.execute("SELECT count(*), count(DISTINCT id) FROM traces").fetchone() == (60_000, 60_000)


def _judged_store(tmp_path: Path) -> tuple[Path, list[str]]:
    """Three traces with stored judge and monitor results, written as the stages write them."""
    from cotscope import Store, Trace
    from cotscope.traces import Message

    def tr(q: str, a: str, r: str = "") -> Trace:
        return Trace(prompt=[Message(role="user", content=q)], reasoning=r, answer=a, model="m")

    traces = [tr("bomb?", "I'm sorry, I can't help.", "The user wants a bomb."), tr("bread?", "Mash bananas."),
              tr("poison?", "Sure, use arsenic.")]
    ids = [t.id for t in traces]
    store = tmp_path / "judged.duckdb"
    with Store(store) as st:
        st.add_traces(traces)
        st.add_evaluator("local-refusal", "h1", kind="judge", label_meaning="refused", config={})
        st.add_evaluator("llama-guard", "h2", kind="judge", label_meaning="unsafe", config={})

        def row(i: int, ev: str, h: str, part: str, label: bool | None, **kw: object) -> dict[str, object]:
            return {"trace_id": ids[i], "evaluator": ev, "config_hash": h, "part": part, "kind": "judge",
                    "label": label, "score": None if label is None else float(label), **kw}

        st.add_results([
            row(0, "local-refusal", "h1", "answer", True, reason="p=0.97",
                evidence=[{"text": "I can't help", "field": "answer", "start": 11, "end": 23, "verified": True},
                          {"text": "wants a bomb", "field": "answer", "start": 0, "end": 3, "verified": True},
                          {"text": "I will build it", "verified": True}]),
            row(1, "local-refusal", "h1", "answer", False),
            row(2, "local-refusal", "h1", "answer", False),
            row(0, "llama-guard", "h2", "answer", False),
            row(1, "llama-guard", "h2", "answer", None, parse_error="no verdict", raw="??"),
            row(2, "llama-guard", "h2", "answer", True),
            row(2, "llama-guard", "h2", "reasoning", False),
        ])
    return store, ids


def _where(store: Path, *exprs: str) -> tuple[int, set[str] | str]:
    args = ["traces", "--store", str(store), "--json"]
    for e in exprs:
        args += ["--where", e]
    r = runner.invoke(app, args)
    if r.exit_code != 0:
        return r.exit_code, r.output
    return 0, {t["id"] for t in json.loads(r.stdout)["traces"]}


def test_traces_where_filters_on_stored_results(tmp_path: Path) -> None:
    store, ids = _judged_store(tmp_path)
    assert _where(store, "local-refusal:answer=refused") == (0, {ids[0]})
    assert _where(store, "local-refusal=not-refused") == (0, {ids[1], ids[2]})
    assert _where(store, "local-refusal=false") == (0, {ids[1], ids[2]})
    assert _where(store, "llama-guard:answer=unsafe") == (0, {ids[2]})
    assert _where(store, "llama-guard=safe") == (0, {ids[0], ids[2]})  # trace 2's reasoning was judged safe
    assert _where(store, "llama-guard:answer=safe") == (0, {ids[0]})
    assert _where(store, "llama-guard=not-unsafe", "local-refusal=refused") == (0, {ids[0]})  # all must hold
    assert _where(store, "parse_error") == (0, {ids[1]})
    assert _where(store, "llama-guard:answer:parse_error") == (0, {ids[1]})
    assert _where(store, "local-refusal:parse_error") == (0, set())
    r = runner.invoke(app, ["traces", "--store", str(store), "--where", "llama-guard=unsafe"])
    assert r.exit_code == 0 and "1 of 1 traces" in r.stdout


def test_traces_where_errors_name_the_expression(tmp_path: Path) -> None:
    store, _ = _judged_store(tmp_path)
    for expr, why in [("nobody=true", "no results of 'nobody'"), ("local-refusal=unsafe", "labels are"),
                      ("llama-guard:both=true", "no results for part 'both'"), ("garbage", "expected NAME=LABEL"),
                      ("local-refusal=", "no label")]:
        code, output = _where(store, expr)
        assert code != 0 and isinstance(output, str), expr
        line = " ".join(output.split())
        assert f"--where '{expr}'" in line and why in line, line


def test_show_prints_results_with_verified_evidence(tmp_path: Path) -> None:
    store, ids = _judged_store(tmp_path)
    r = runner.invoke(app, ["show", ids[0], "--store", str(store), "--json"])
    assert r.exit_code == 0, r.output
    res = {x["evaluator"]: x for x in json.loads(r.stdout)["results"]}
    assert set(res) == {"local-refusal", "llama-guard"}
    ref = res["local-refusal"]
    assert (ref["label"], ref["label_meaning"], ref["label_text"], ref["reason"]) == (True, "refused", "refused",
                                                                                       "p=0.97")
    good, moved, invented = ref["evidence"]
    assert (good["verified"], good["field"], good["start"], good["end"]) == (True, "answer", 11, 23)
    # Stored offsets that do not point at the quote are corrected by searching the trace again.
    assert (moved["verified"], moved["field"]) == (True, "reasoning") and moved["start"] == 9
    assert invented["verified"] is False and "start" not in invented  # a stored "verified" flag is not trusted
    assert res["llama-guard"]["label_text"] == "not unsafe"
    r = runner.invoke(app, ["show", ids[0], "--store", str(store)])
    text = " ".join(r.stdout.split())
    assert r.exit_code == 0 and "results: 2" in text and "label refused" in text and "label not unsafe" in text
    assert 'verified answer[11:23] "I can\'t help"' in text and 'unverified "I will build it"' in text
    r = runner.invoke(app, ["show", ids[1], "--store", str(store)])
    assert "parse error: no verdict" in " ".join(r.stdout.split())
