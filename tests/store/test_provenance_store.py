"""Reasoning provenance through the store: the column, migration, export, ingest, Parquet attach (issue 18)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from cotscope import Store
from cotscope.store import export_traces
from cotscope.traces import ProvenanceSpan, Trace


def _spans(t: Trace) -> list[tuple[str, int, int, str | None]]:
    return [(s.kind, s.start, s.end, s.payload) for s in t.reasoning_provenance]


SOURCE = [
    {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x", "stop_reason": "end_turn",
     "content": [{"type": "thinking", "thinking": "Let me think.", "signature": "SIG"},
                 {"type": "redacted_thinking", "data": "BLOB"}, {"type": "text", "text": "Answer."}]},
    {"object": "response", "model": "o3", "output": [
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Short."}], "encrypted_content": "ENC"},
        {"type": "message", "content": [{"type": "output_text", "text": "A."}]}]},
    {"prompt": "q", "response": "<think>cut off"},
    {"prompt": "q2", "response": "plain"},
]


def _by_id(traces: Any) -> dict[str, tuple[Any, ...]]:
    return {t.id: (t.reasoning, t.answer, _spans(t)) for t in traces}


def test_ingest_export_ingest_keeps_spans_and_ids(tmp_path: Path) -> None:
    src = tmp_path / "src.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in SOURCE))
    with Store(tmp_path / "a.duckdb") as a:
        rep = a.ingest([src])
        assert (rep.records, rep.new) == (4, 4)
        first = _by_id(a.traces())
        assert {t[2][0][0] for t in first.values() if t[2]} == {"raw", "summary"}
        out = tmp_path / "e.jsonl"
        export_traces(a, out, "jsonl")
        recs = [json.loads(x) for x in out.read_text().splitlines()]
        assert all("reasoning_provenance" in r for r in recs)
        anth = next(r for r in recs if r["model"] == "claude-x")
        assert anth["reasoning_provenance"] == [{"kind": "raw", "start": 0, "end": 13, "payload": "SIG"},
                                                {"kind": "redacted", "start": 13, "end": 13, "payload": "BLOB"}]
        pq_out = tmp_path / "e.parquet"
        export_traces(a, pq_out, "parquet")
    with Store(tmp_path / "b.duckdb") as b:
        assert b.ingest([out]).new == 4
        assert _by_id(b.traces()) == first
    with Store(tmp_path / "c.duckdb") as c:
        assert c.ingest([pq_out]).new == 4
        assert _by_id(c.traces()) == first
        c.attach_traces(pq_out)
        assert _by_id(c.traces()) == first
    # A dataset written before provenance existed attaches too; its traces read as unknown.
    old = tmp_path / "old.parquet"
    pq.write_table(pq.read_table(pq_out).drop(["reasoning_provenance"]), old)
    with Store(tmp_path / "d.duckdb") as d:
        d.attach_traces([old, pq_out])  # files whose columns differ, by name
        got = list(d.traces())
        assert len(got) == 8 and sum(1 for t in got if not t.reasoning_provenance) == 4 + 1  # + "plain"


def test_v3_store_gains_the_column_and_reads_as_unknown(tmp_path: Path) -> None:
    path = tmp_path / "v3.duckdb"
    with Store(path) as st:
        st.add_traces([Trace(reasoning="r", answer="a",
                             reasoning_provenance=[ProvenanceSpan(kind="raw", start=0, end=1)])])
        tid = next(st.traces()).id
    # Make it the store an older cotscope wrote: no column, version 3.
    con = duckdb.connect(str(path))
    con.execute("ALTER TABLE traces DROP COLUMN reasoning_provenance")
    con.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    con.close()
    with Store(path, read_only=True) as st:  # read as it is
        (t,) = st.traces()
        assert (t.id, t.reasoning_provenance) == (tid, [])
        assert st.traces_df().shape[0] == 1
    with Store(path) as st:  # migrated when opened for writing
        assert st.con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("4",)
        (t,) = st.traces()
        assert (t.id, t.reasoning_provenance) == (tid, [])
        st.add_traces([Trace(reasoning="x", answer="b",
                             reasoning_provenance=[ProvenanceSpan(kind="summary", start=0, end=1)])])
        kinds = {t.answer: [s.kind for s in t.reasoning_provenance] for t in st.traces()}
        assert kinds == {"a": [], "b": ["summary"]}
