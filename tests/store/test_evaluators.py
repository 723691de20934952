"""Label meanings stored with results: the evaluators table, the v1 -> v2 migration and the DataFrames."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from cotscope import Store, Trace
from cotscope.store._schema import SCHEMA_VERSION
from cotscope.traces import Message

#: The version-1 schema exactly as cotscope wrote it before the evaluators table existed.
V1_SCHEMA = """
CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE traces (
    id VARCHAR PRIMARY KEY, prompt JSON, reasoning VARCHAR, answer VARCHAR, reasoning_closed BOOLEAN,
    steps JSON, actions JSON, model VARCHAR, strategy VARCHAR, group_id VARCHAR, sample_index INTEGER,
    source_file VARCHAR, source_line BIGINT, source_format VARCHAR, metadata JSON, run_id VARCHAR,
    created_at TIMESTAMP DEFAULT current_timestamp
);
CREATE TABLE runs (
    id VARCHAR PRIMARY KEY, kind VARCHAR, name VARCHAR, config JSON, config_hash VARCHAR, status VARCHAR,
    stats JSON, started_at TIMESTAMP DEFAULT current_timestamp, finished_at TIMESTAMP
);
CREATE TABLE results (
    trace_id VARCHAR, evaluator VARCHAR, config_hash VARCHAR, part VARCHAR, kind VARCHAR, label BOOLEAN,
    score DOUBLE, parse_error VARCHAR, raw VARCHAR, reason VARCHAR, evidence JSON, details JSON, run_id VARCHAR,
    created_at TIMESTAMP DEFAULT current_timestamp, PRIMARY KEY (trace_id, evaluator, config_hash, part)
);
INSERT INTO meta VALUES ('schema_version', '1');
"""

JUDGE_RUN = {"config": {"judge": "refusal-strings", "label_meaning": "refused"}, "part": "answer",
             "config_hash": "aaaa"}
MONITOR_RUN = {"config": {"monitor": "local-harm", "part": "both", "judge": {"task": "harm"}}, "part": "both",
               "config_hash": "mmmm"}
BENCH_RUN = {
    "model": "m", "strategies": ["normal"], "items": [],
    "judges": [
        {"name": "llama-guard", "label_meaning": "unsafe", "keys": {"*": ["llama-guard", "bbbb"]},
         "spec": {"name": "llama-guard", "part": "answer", "role": "safety"}, "skipped": None},
        {"name": "cogtest-habit", "label_meaning": "flagged",
         "keys": {"a": ["cogtest-habit", "c1"], "b": ["cogtest-habit", "c2"]},
         "spec": {"name": "cogtest-habit", "part": "reasoning", "role": "monitor"}, "skipped": None},
        {"name": "em-alignment", "label_meaning": None, "keys": {}, "spec": {"name": "em-alignment"},
         "skipped": "needs a judge model"},
    ],
}


def _v1_store(path: Path) -> None:
    con = duckdb.connect(str(path))
    con.execute(V1_SCHEMA)
    for i, (kind, name, cfg) in enumerate([("judge", "refusal-strings", JUDGE_RUN),
                                           ("monitor", "local-harm", MONITOR_RUN),
                                           ("benchmark", "safechain", BENCH_RUN),
                                           ("ingest", "ingest", {"paths": []})]):
        con.execute("INSERT INTO runs (id, kind, name, config, status, started_at) VALUES"
                    " (?, ?, ?, ?, 'done', TIMESTAMP '2024-01-01' + to_seconds(?))",
                    [f"r{i}", kind, name, json.dumps(cfg), i])
    con.execute("INSERT INTO traces (id, prompt, answer, reasoning, reasoning_closed) VALUES"
                " ('t1', '[{\"role\": \"user\", \"content\": \"q\"}]', 'a', '', true)")
    con.execute("INSERT INTO results (trace_id, evaluator, config_hash, part, kind, label, score) VALUES"
                " ('t1', 'llama-guard', 'bbbb', 'answer', 'judge', true, 1.0),"
                " ('t1', 'refusal-strings', 'aaaa', 'answer', 'judge', false, 0.0)")
    con.close()


EXPECTED_MEANINGS = {("refusal-strings", "aaaa"): "refused", ("local-harm", "mmmm"): "flagged",
                     ("llama-guard", "bbbb"): "unsafe", ("cogtest-habit", "c1"): "flagged",
                     ("cogtest-habit", "c2"): "flagged"}


def test_v1_store_read_only_derives_label_meanings_without_writing(tmp_path: Path) -> None:
    path = tmp_path / "v1.duckdb"
    _v1_store(path)
    with Store(path, read_only=True) as st:
        assert st.label_meanings() == EXPECTED_MEANINGS
        df = st.results_df()
        assert dict(zip(df["evaluator"], df["label_meaning"], strict=True)) == {
            "llama-guard": "unsafe", "refusal-strings": "refused"}
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute("SELECT value FROM meta").fetchall() == [("1",)]
    assert not con.execute("SELECT * FROM information_schema.tables WHERE table_name = 'evaluators'").fetchall()
    con.close()


def test_v1_store_migrates_on_write_open(tmp_path: Path) -> None:
    path = tmp_path / "v1.duckdb"
    _v1_store(path)
    with Store(path) as st:
        assert st.label_meanings() == EXPECTED_MEANINGS
        kinds = {(e["evaluator"], e["config_hash"]): e["kind"] for e in st.evaluators()}
        assert kinds[("cogtest-habit", "c1")] == "monitor" and kinds[("llama-guard", "bbbb")] == "judge"
        assert kinds[("local-harm", "mmmm")] == "monitor"
        (bench,) = [e for e in st.evaluators() if e["evaluator"] == "llama-guard"]
        assert bench["config"]["benchmark"] == "safechain" and bench["config"]["spec"]["role"] == "safety"
        assert st.count() == 1 and len(st.results()) == 2  # nothing else changed
    with Store(path, read_only=True) as st:
        row = st.con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        assert row == (str(SCHEMA_VERSION),)
        assert st.label_meanings() == EXPECTED_MEANINGS
    with Store(path) as st:  # a second open migrates nothing twice
        assert len(st.evaluators()) == len(EXPECTED_MEANINGS)


def test_add_evaluator_insert_or_ignore(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as st:
        st.add_evaluator("local-refusal", "h1", kind="judge", label_meaning="refused", config={"t": 0.5})
        st.add_evaluator("local-refusal", "h1", kind="judge", label_meaning="unsafe", config={})
        st.add_evaluator("x", "h2", kind="monitor", label_meaning=None, config=None)
        assert st.label_meanings() == {("local-refusal", "h1"): "refused"}
        (e, _) = st.evaluators()
        assert (e["kind"], e["config"]) == ("judge", {"t": 0.5})


def test_a_newer_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    Store(path).close()
    con = duckdb.connect(str(path))
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(OSError, match="newer"):
        Store(path)


def _traces() -> list[Trace]:
    return [
        Trace(prompt=[Message(role="system", content="be nice"), Message(role="user", content="first"),
                      Message(role="assistant", content="ok"), Message(role="user", content="last q")],
              reasoning="think", answer="a1", model="m1", strategy="normal", metadata={"k": [1, 2]}),
        Trace(prompt=[Message(role="system", content="only system")], answer="a2", model="m2",
              reasoning_closed=False, reasoning="cut"),
    ]


def test_traces_df(tmp_path: Path) -> None:
    t1, t2 = _traces()
    with Store(tmp_path / "s.duckdb") as st:
        st.add_traces([t1, t2], run_id="run1")
        df = st.traces_df()
        assert list(df.columns) == ["id", "model", "strategy", "group_id", "sample_index", "source_format",
                                    "source_file", "prompt", "reasoning", "answer", "reasoning_closed",
                                    "metadata", "run_id"]
        assert list(df["id"]) == [t1.id, t2.id]
        assert list(df["prompt"]) == [t1.prompt_text, t2.prompt_text] == ["last q", "only system"]
        assert df["metadata"].iloc[0] == {"k": [1, 2]} and df["metadata"].iloc[1] == {}
        assert list(df["reasoning_closed"]) == [True, False] and list(df["run_id"]) == ["run1", "run1"]
        assert str(df["sample_index"].dtype) == "Int64"
        only = st.traces_df(model="m2")
        assert list(only["id"]) == [t2.id] and only["answer"].iloc[0] == "a2"
    with Store(":memory:") as empty:
        assert len(empty.traces_df()) == 0


def test_results_df_joins_label_meaning(tmp_path: Path) -> None:
    t1, t2 = _traces()
    with Store(tmp_path / "s.duckdb") as st:
        st.add_traces([t1, t2])
        st.add_evaluator("local-refusal", "h", kind="judge", label_meaning="refused", config={})
        st.add_results([
            {"trace_id": t1.id, "evaluator": "local-refusal", "config_hash": "h", "part": "answer", "kind": "judge",
             "label": True, "score": 0.9, "reason": "p=0.9", "run_id": "r"},
            {"trace_id": t2.id, "evaluator": "local-refusal", "config_hash": "h", "part": "answer", "kind": "judge",
             "label": None, "parse_error": "bad output"},
            {"trace_id": t1.id, "evaluator": "unknown", "config_hash": "z", "part": "both", "kind": "monitor",
             "label": False, "score": 0.1},
        ])
        df = st.results_df()
        assert list(df.columns) == ["trace_id", "evaluator", "config_hash", "part", "kind", "label_meaning", "label",
                                    "score", "parse_error", "reason", "run_id"]
        assert len(df) == 3 and str(df["label"].dtype) == "boolean"
        by = df.set_index(["trace_id", "evaluator"])
        assert by.loc[(t1.id, "local-refusal"), "label_meaning"] == "refused"
        assert pd.isna(by.loc[(t2.id, "local-refusal"), "label"])
        assert by.loc[(t2.id, "local-refusal"), "parse_error"] == "bad output"
        assert pd.isna(by.loc[(t1.id, "unknown"), "label_meaning"])
        assert list(st.results_df(evaluator="unknown")["trace_id"]) == [t1.id]
        assert set(st.results_df(trace_ids=[t2.id])["evaluator"]) == {"local-refusal"}
        assert len(st.results_df(trace_ids=[])) == 0
