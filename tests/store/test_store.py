from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cotscope import Store, Trace
from cotscope.store import export_traces
from cotscope.traces import Message


def _write(path: Path, n: int, bad_every: int = 0) -> Path:
    lines = []
    for i in range(n):
        if bad_every and i % bad_every == 0:
            lines.append("{broken")
        else:
            lines.append(json.dumps({"prompt": f"q{i}", "response": f"<think>step {i}\n\nWait, {i}</think>a{i}"}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_ingest_counts_reconcile_and_reingest_adds_nothing(tmp_path: Path) -> None:
    f = _write(tmp_path / "t.jsonl", 100, bad_every=10)
    with Store(tmp_path / "s.duckdb") as st:
        r1 = st.ingest([f])
        assert (r1.records, r1.accepted, r1.rejected, r1.new) == (100, 90, 10, 90)
        assert r1.records == r1.accepted + r1.rejected
        r2 = st.ingest([f])
        assert (r2.new, r2.duplicates, r2.rejected) == (0, 90, 10)
        assert st.count() == 90
        assert [e["line"] for e in r1.errors] == list(range(1, 101, 10))


def test_traces_roundtrip_and_get_by_prefix(tmp_path: Path) -> None:
    t = Trace(prompt=[Message(role="user", content="hi")], reasoning="a\n\nb", answer="c", model="m",
              strategy="normal", metadata={"k": [1, 2]})
    with Store(tmp_path / "s.duckdb") as st:
        assert st.add_traces([t, t]) == 1
        got = st.get(t.id[:6])
        assert got is not None
        assert got.model_dump() == t.model_dump()
        assert [s.text for s in got.steps] == ["a", "b"]
        assert st.get("zzz") is None
        assert st.count(model="m") == 1 and st.count(model="other") == 0


def test_store_persists_between_connections(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with Store(path) as st:
        st.add_traces([Trace(prompt=[Message(role="user", content="x")], answer="y")])
    with Store(path) as st:
        assert st.count() == 1
        assert [r["kind"] for r in st.runs()] == []


def test_results_keyed_and_skipped(tmp_path: Path) -> None:
    t = Trace(prompt=[Message(role="user", content="q")], answer="a")
    with Store(tmp_path / "s.duckdb") as st:
        st.add_traces([t])
        res = {"trace_id": t.id, "evaluator": "refusal-strings", "config_hash": "h", "part": "answer",
               "label": True, "score": 1.0, "evidence": [{"text": "a"}]}
        assert st.add_results([res, res]) == 1
        assert st.add_results([res | {"label": False}]) == 0  # an existing key is kept
        assert st.done_trace_ids("refusal-strings", "h", "answer") == {t.id}
        assert st.done_trace_ids("refusal-strings", "other", "answer") == set()
        (r,) = st.results("refusal-strings")
        assert r["label"] is True and r["evidence"] == [{"text": "a"}]


def test_export_jsonl_and_parquet(tmp_path: Path) -> None:
    f = _write(tmp_path / "t.jsonl", 5)
    with Store(tmp_path / "s.duckdb") as st:
        st.ingest([f])
        out = tmp_path / "e.jsonl"
        assert export_traces(st, out, "jsonl") == 5
        recs = [json.loads(x) for x in out.read_text().splitlines()]
        assert set(recs[0]) == {"id", "prompt", "reasoning", "answer", "reasoning_closed", "steps", "actions",
                                "model", "strategy", "group_id", "sample_index", "source", "metadata",
                                "reasoning_provenance"}
        assert recs[0]["steps"][1]["text"] == "Wait, 0" and recs[0]["steps"][1]["kind"] == "reflection"
        assert recs[0]["source"]["line"] == 1
        pq_out = tmp_path / "e.parquet"
        assert export_traces(st, pq_out, "parquet") == 5
        table = pq.read_table(pq_out)
        assert table.num_rows == 5 and table.column("reasoning")[0].as_py() == "step 0\n\nWait, 0"
        # An exported file ingests back to the same traces (ids kept).
        with Store(tmp_path / "s2.duckdb") as st2:
            st2.ingest([out])
            assert st2.trace_ids() == st.trace_ids()


def test_unknown_filter_rejected(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as st, pytest.raises(TypeError, match="unknown trace filter"):
        st.count(colour="red")


def test_ingest_takes_any_iterable_of_paths(tmp_path: Path) -> None:
    files = [_write(tmp_path / f"t{i}.jsonl", 3) for i in range(2)]
    seen: list[Path] = []
    with Store(tmp_path / "s.duckdb") as st:
        report = st.ingest((f for f in files), on_file=seen.append)
        assert report.files == [str(f) for f in files] and seen == files
        assert report.records == 6 and st.count() == 3  # the two files hold the same three records


def _hold(path: Path, seconds: float) -> subprocess.Popen[str]:
    """A separate process that opens ``path`` for writing, says READY, and holds it for ``seconds``."""
    code = ("import sys, time; from cotscope.store import Store\n"
            "st = Store(sys.argv[1]); print('READY', flush=True); time.sleep(float(sys.argv[2])); st.close()")
    proc = subprocess.Popen([sys.executable, "-c", code, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "READY"
    return proc


def test_a_store_held_briefly_by_another_process_is_waited_for(tmp_path: Path) -> None:
    """A writer that holds the file for a moment (the guard's recorder, a viewer label) delays a command instead of
    failing it; with no wait, or past the wait, the error says the file is locked."""
    path = tmp_path / "s.duckdb"
    Store(path).close()
    proc = _hold(path, 1.0)
    try:
        with pytest.raises(OSError, match="lock"):
            Store(path, read_only=True, lock_wait_s=0)
        with pytest.raises(OSError, match="lock"):
            Store(path, lock_wait_s=0.2)
        t0 = time.monotonic()
        with Store(path, read_only=True) as st:  # the default wait outlasts the holder
            assert time.monotonic() - t0 > 0.2 and st.count() == 0
    finally:
        proc.wait(10)


def test_a_damaged_file_is_not_taken_for_a_held_one_even_under_a_lock_named_path(tmp_path: Path) -> None:
    bad = tmp_path / "clock" / "s.duckdb"
    bad.parent.mkdir()
    bad.write_bytes(b"not a database" * 100)
    t0 = time.monotonic()
    with pytest.raises(OSError, match="cannot open store"):
        Store(bad)
    assert time.monotonic() - t0 < 2  # failed at once: only DuckDB's lock words mean "held"


def test_traces_and_results_are_stored_together_or_not_at_all(tmp_path: Path) -> None:
    t = Trace(prompt=[Message(role="user", content="q")], reasoning="r", answer="a")
    row = {"trace_id": t.id, "evaluator": "m", "config_hash": "h", "part": "both", "kind": "monitor", "label": True}
    with Store(tmp_path / "s.duckdb") as st:
        with pytest.raises(TypeError):  # a result the store cannot encode: the trace is not kept either
            st.add_traces_and_results([t], [row | {"details": {"x": {1, 2}}}])
        assert st.count() == 0 and st.results() == []
        assert st.add_traces_and_results([t, t], [row, row]) == (1, 1)
        assert st.add_traces_and_results([t], [row]) == (0, 0)
