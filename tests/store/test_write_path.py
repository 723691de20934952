"""The trace write path of schema v3: dedup without an index, migration of keyed stores, kill-safety, settings."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import duckdb
import pytest

from cotscope import Store
from cotscope.errors import ConfigError
from cotscope.store._schema import SCHEMA_VERSION
from cotscope.store._settings import MEMORY_ENV, THREADS_ENV, default_memory_limit
from cotscope.store._write import rows_to_arrow
from cotscope.traces._rows import make_row

#: The version-2 schema exactly as cotscope wrote it: ``traces`` keyed by id.
V2_SCHEMA = """
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
CREATE TABLE evaluators (
    evaluator VARCHAR, config_hash VARCHAR, kind VARCHAR, label_meaning VARCHAR, config JSON,
    created_at TIMESTAMP DEFAULT current_timestamp, PRIMARY KEY (evaluator, config_hash)
);
INSERT INTO meta VALUES ('schema_version', '2');
"""


def _row(i: int, answer: str | None = None, **kw: Any) -> dict[str, Any]:
    return make_row([{"role": "user", "content": f"q{i}"}], f"r{i}", answer or f"a{i}", source_line=i, **kw)


def _lines(n: int, start: int = 0) -> list[str]:
    return [json.dumps({"prompt": f"q{i}", "response": f"<think>step {i}</think>a{i}"}) for i in range(start, n)]


def _distinct(st: Store) -> tuple[int, int]:
    row = st.con.execute("SELECT count(*), count(DISTINCT id) FROM traces").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _has_key(path: Path) -> bool:
    con = duckdb.connect(str(path), read_only=True)
    try:
        row = con.execute("SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'traces'"
                          " AND constraint_type = 'PRIMARY KEY'").fetchone()
        return bool(row and row[0])
    finally:
        con.close()


# -- dedup ----------------------------------------------------------------------------------------------


def test_repeats_within_a_batch_keep_the_first_as_insert_or_ignore_did(tmp_path: Path) -> None:
    a, b = _row(1), _row(2)
    a_again = dict(a, source_line=99, model="other")  # same id, other provenance: the first must win
    rows = [a, b, a_again, b, _row(3)]
    # What a keyed table with INSERT OR IGNORE keeps from the same batch (the pre-v3 behaviour).
    con = duckdb.connect()
    con.execute(V2_SCHEMA)
    con.register("_b", rows_to_arrow(rows, None))
    con.execute("INSERT OR IGNORE INTO traces BY NAME SELECT * EXCLUDE (reasoning_provenance) FROM _b")
    expected = con.execute("SELECT id, source_line, model FROM traces ORDER BY id").fetchall()
    with Store(tmp_path / "s.duckdb") as st:
        assert st.add_rows(rows) == 3
        assert st.add_rows(rows) == 0
        got = st.con.execute("SELECT id, source_line, model FROM traces ORDER BY id").fetchall()
    assert got == expected and {r[1] for r in got} == {1, 2, 3}


def test_dedup_across_batches_and_files_counts_reconcile(tmp_path: Path) -> None:
    # 12,000 records cross the 5,000-row batches; the second file repeats half of the first plus new ones,
    # and repeats lines of its own across a batch boundary.
    f1 = tmp_path / "a.jsonl"
    f1.write_text("\n".join(_lines(12_000)) + "\n")
    f2 = tmp_path / "b.jsonl"
    f2.write_text("\n".join(_lines(18_000, 6_000) + _lines(100)) + "\n")
    with Store(tmp_path / "s.duckdb") as st:
        r1 = st.ingest([f1])
        assert (r1.records, r1.traces, r1.new, r1.duplicates) == (12_000, 12_000, 12_000, 0)
        r2 = st.ingest([f2, f1])
        assert (r2.records, r2.accepted, r2.traces) == (24_100, 24_100, 24_100)
        assert (r2.new, r2.duplicates) == (6_000, 18_100)
        assert r2.traces == r2.new + r2.duplicates
        assert _distinct(st) == (18_000, 18_000)
        # A file repeating itself within one batch and across batches of one transaction.
        f3 = tmp_path / "c.jsonl"
        f3.write_text("\n".join(_lines(20_100, 20_000) * 3 + _lines(26_000, 20_000) + _lines(20_050, 20_000)) + "\n")
        r3 = st.ingest([f3])
        assert (r3.traces, r3.new, r3.duplicates) == (6_350, 6_000, 350)
        assert _distinct(st) == (24_000, 24_000)
        # The first occurrence of a repeated line is the one stored.
        row = st.con.execute("SELECT source_line FROM traces WHERE answer = 'a20000'").fetchone()
        assert row == (1,)


def test_batch_writer_transactions_of_several_batches_dedup_across_them(tmp_path: Path) -> None:
    from cotscope.store._write import BatchWriter

    with Store(tmp_path / "s.duckdb") as st:
        st.add_rows([_row(0)])
        w = BatchWriter(st.con, st.path, None, max_bytes=1 << 30)
        assert w.add(w.encode([_row(0), _row(1), dict(_row(1), model="x")])) == 0  # queued, nothing stored yet
        assert w.add(w.encode([dict(_row(1), model="y"), _row(2)])) == 0
        assert st.count() == 1
        assert w.flush() == 2  # one transaction: 1 and 2 (0 was stored, the repeats of 1 dropped)
        assert _distinct(st) == (3, 3)
        assert st.con.execute("SELECT model FROM traces WHERE answer = 'a1'").fetchone() == (None,)
        small = BatchWriter(st.con, st.path, None, max_bytes=1)  # every batch its own transaction
        assert small.add(small.encode([_row(3), _row(2)])) == 1 and small.flush() == 0


def test_concurrent_writers_in_one_process_store_each_id_once(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    rows = [_row(i) for i in range(3000)]
    stores = [Store(path) for _ in range(3)]
    news = [0] * len(stores)

    def write(i: int) -> None:
        for k in range(0, len(rows), 500):
            news[i] += stores[i].add_rows(rows[k : k + 500])

    try:
        threads = [threading.Thread(target=write, args=(i,)) for i in range(len(stores))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(news) == 3000
        assert _distinct(stores[0]) == (3000, 3000)
    finally:
        for s in stores:
            s.close()


# -- migration ------------------------------------------------------------------------------------------


def _v2_store(path: Path, rows: list[dict[str, object]]) -> None:
    con = duckdb.connect(str(path))
    con.execute(V2_SCHEMA)
    con.register("_b", rows_to_arrow(rows, "old-run"))
    con.execute("INSERT OR IGNORE INTO traces BY NAME SELECT * EXCLUDE (reasoning_provenance) FROM _b")
    con.execute("INSERT INTO results (trace_id, evaluator, config_hash, part, kind, label, score) VALUES"
                " (?, 'refusal-strings', 'h', 'answer', 'judge', true, 1.0)", [rows[0]["id"]])
    con.execute("INSERT INTO evaluators (evaluator, config_hash, kind, label_meaning) VALUES"
                " ('refusal-strings', 'h', 'judge', 'refused')")
    con.close()


def test_v2_store_reads_as_it_is_read_only(tmp_path: Path) -> None:
    path = tmp_path / "v2.duckdb"
    rows = [_row(i) for i in range(5)]
    _v2_store(path, rows)
    with Store(path, read_only=True) as st:
        assert st.count() == 5 and st.trace_ids() == {r["id"] for r in rows}
        got = st.get(str(rows[2]["id"]))
        assert got is not None and got.answer == "a2"
        assert st.label_meanings() == {("refusal-strings", "h"): "refused"}
        assert st.con.execute("SELECT value FROM meta").fetchall() == [("2",)]
    assert _has_key(path)


def test_v2_store_migrates_keeps_traces_and_results_and_dedups(tmp_path: Path) -> None:
    path = tmp_path / "v2.duckdb"
    rows = [_row(i) for i in range(5)]
    _v2_store(path, rows)
    con = duckdb.connect(str(path), read_only=True)
    before = con.execute("SELECT * FROM traces").fetchall()
    con.close()
    with Store(path) as st:
        # rows, order, timestamps kept; provenance (schema v4) unknown
        assert st.con.execute("SELECT * EXCLUDE (reasoning_provenance) FROM traces").fetchall() == before
        assert st.con.execute("SELECT count(*) FROM traces WHERE reasoning_provenance IS NULL").fetchone() == (5,)
        assert all(t.reasoning_provenance == [] for t in st.traces())
        assert [(r["trace_id"], r["label"]) for r in st.results()] == [(rows[0]["id"], True)]
        assert st.label_meanings() == {("refusal-strings", "h"): "refused"}
        assert st.add_rows([rows[1], _row(7), _row(7)]) == 1
        assert _distinct(st) == (6, 6)
        created_at = st.con.execute("SELECT column_default FROM information_schema.columns"
                                    " WHERE table_name = 'traces' AND column_name = 'created_at'").fetchone()
        assert created_at is not None and "current_timestamp" in str(created_at[0]).lower()
    assert not _has_key(path)
    with Store(path) as st:  # a second open migrates nothing
        assert st.con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            str(SCHEMA_VERSION),)
        assert st.count() == 6


# -- kill-safety ----------------------------------------------------------------------------------------

_CHILD = """
import sys
import cotscope.store._write as w
from cotscope import Store

flush = w.BatchWriter.flush

def reporting_flush(self):
    n = flush(self)
    print(n, flush=True)  # a transaction committed: n new traces
    return n

w.BatchWriter.flush = reporting_flush
with Store(sys.argv[1]) as st:
    st.ingest([sys.argv[2]])
"""


def test_sigkill_mid_ingest_leaves_whole_batches_and_reingest_completes(tmp_path: Path) -> None:
    n = 100_000
    data = tmp_path / "big.jsonl"
    data.write_text("\n".join(_lines(n)) + "\n")
    path = tmp_path / "s.duckdb"
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(path), str(data)], stdout=subprocess.PIPE,
                            text=True, env=os.environ | {"PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    committed = [int(proc.stdout.readline()) for _ in range(2)]  # two transactions in: the next is under way
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    with Store(path) as st:
        stored, distinct = _distinct(st)
        # No repeated id, no half batch: the stored traces are whole 5,000-line batches from the file's start.
        assert stored == distinct and stored % 5000 == 0 and sum(committed) <= stored < n
        lines = st.con.execute("SELECT min(source_line), max(source_line) FROM traces").fetchone()
        assert lines == (1, stored)
        report = st.ingest([data])
        assert (report.traces, report.new, report.duplicates) == (n, n - stored, stored)
        assert _distinct(st) == (n, n)


# -- settings -------------------------------------------------------------------------------------------


def _settings(st: Store) -> tuple[str, str]:
    row = st.con.execute("SELECT current_setting('memory_limit'), current_setting('threads')::VARCHAR").fetchone()
    assert row is not None
    return str(row[0]), str(row[1])


def test_memory_and_threads_default_and_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MEMORY_ENV, raising=False)
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert default_memory_limit() <= 2 << 30
    ref = duckdb.connect(config={"memory_limit": f"{default_memory_limit()}B"})
    row = ref.execute("SELECT current_setting('memory_limit')").fetchone()
    ref.close()
    with Store(tmp_path / "a.duckdb") as st:
        assert _settings(st) == (row[0] if row else None, str(len(os.sched_getaffinity(0))))
    with Store(tmp_path / "b.duckdb", memory_limit="384MiB", threads=1) as st:
        assert _settings(st) == ("384.0 MiB", "1")
    with Store(tmp_path / "b.duckdb", read_only=True, memory_limit=256 << 20, threads=1) as st:
        assert _settings(st) == ("256.0 MiB", "1")
    with Store(":memory:", memory_limit="128MiB") as st:
        assert _settings(st)[0] == "128.0 MiB"


def test_memory_and_threads_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MEMORY_ENV, "300MiB")
    monkeypatch.setenv(THREADS_ENV, "1")
    with Store(tmp_path / "a.duckdb") as st:
        assert _settings(st) == ("300.0 MiB", "1")
    with Store(tmp_path / "b.duckdb", memory_limit="200MiB", threads=2) as st:  # an argument wins
        assert _settings(st) == ("200.0 MiB", "2")


@pytest.mark.parametrize(("env", "value", "match"), [
    (THREADS_ENV, "many", "whole number"), (THREADS_ENV, "0", "at least 1"), (MEMORY_ENV, "lots", "a size such as"),
])
def test_bad_settings_are_config_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: str, value: str,
                                        match: str) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match=match):
        Store(tmp_path / "s.duckdb")
    monkeypatch.delenv(env)
    with pytest.raises(ConfigError, match="positive"):
        Store(tmp_path / "s.duckdb", memory_limit=0)
