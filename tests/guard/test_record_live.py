"""The guard's records are readable while it serves: the writer holds the store only for each flush.

Other processes (``cotscope report``, a reader, a process holding the file) run as real subprocesses, since
DuckDB's file lock is between processes; the viewer runs in this process, beside the guard.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from cotscope.guard import GuardRecord, RecordWriter
from cotscope.store import Store
from cotscope.view import ViewSettings, create_app

from .conftest import guard_on, upstream, wait_for

ENV = os.environ | {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
# What another process sees of the store: trace ids, the ids of the guard's results, the runs.
READ = """import json, sys
from cotscope.store import Store
with Store(sys.argv[1], read_only=True) as st:
    print(json.dumps({"ids": sorted(t.id for t in st.traces()),
                      "results": sorted(r["trace_id"] for r in st.results(evaluator="guard:phrase")),
                      "runs": [{"status": r["status"], "stats": r["stats"]} for r in st.runs()]}))
"""
# Holds the store open for writing (as a long `cotscope judge` does) until its stdin closes.
HOLD = """import sys
from cotscope.store import Store
st = Store(sys.argv[1])
print("held", flush=True)
sys.stdin.read()
st.close()
"""


def _read(db: Path) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", READ, str(db)], capture_output=True, text=True, timeout=60,
                         env=ENV)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@contextmanager
def held(db: Path) -> Iterator[Callable[[], None]]:
    """Another process holds ``db`` for writing until the yielded ``release()`` is called (or the block ends)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)
    assert proc.stdin is not None and proc.stdout is not None

    def release() -> None:
        if proc.returncode is None:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(30)

    try:
        assert proc.stdout.readline().strip() == "held", proc.stderr.read() if proc.stderr else ""
        yield release
    finally:
        release()


def _ask(base_url: str, question: str, stream: bool = True) -> None:
    req = {"model": "fake", "messages": [{"role": "user", "content": question}], "stream": stream}
    r = httpx.post(f"{base_url}/chat/completions", json=req, timeout=30)
    assert r.status_code == 200, r.text


def _listed(html: str) -> list[str]:
    return sorted(re.findall(r'href="/traces/([^"?]+)\?', html))


def test_guard_traffic_is_readable_while_the_guard_serves(tmp_path: Path) -> None:
    db = tmp_path / "live.duckdb"
    with upstream() as up, guard_on(up, store=db) as (g, records):
        w = g.guard.writer
        assert w is not None and w.flush_s == 1.0
        for q in ("benign", "turning", "benign"):
            _ask(g.base_url, q)
        assert wait_for(lambda: w.written == 3, timeout=15)  # one flush interval after the last request
        ids = sorted(r.request_id for r in records)
        # Another process reads the live store: every record so far, its verdict, the run still running.
        seen = _read(db)
        assert seen["ids"] == ids and seen["results"] == ids
        assert [r["status"] for r in seen["runs"]] == ["running"]
        # `cotscope report`, in a process of its own, while the guard still serves.
        out = subprocess.run([sys.executable, "-c", "from cotscope.cli import main; main()", "report", "--store",
                              str(db), "--out", str(tmp_path / "rep"), "--json"],
                             capture_output=True, text=True, timeout=120, env=ENV)
        assert out.returncode == 0, out.stderr
        assert "EVIL" in (tmp_path / "rep" / "index.html").read_text()
        # The viewer, in this process, lists them; it keeps its read-only connection open 4 s after a request,
        # so the flush of a request that arrives meanwhile finds the file held, waits, then lands.
        with TestClient(create_app(ViewSettings(store=db, token="t", keep_open=4.0)),
                        base_url="http://127.0.0.1:8000") as c:
            assert _listed(c.get("/").text) == ids
            _ask(g.base_url, "turning", stream=False)
            assert wait_for(lambda: w.busy_retries > 0, timeout=10) and w.written == 3
            assert wait_for(lambda: w.written == 4, timeout=15)
            ids = sorted(r.request_id for r in records)
            assert _listed(c.get("/").text) == ids and len(ids) == 4
        assert (w.received, w.failed, w.queued) == (4, 0, 0)
    seen = _read(db)  # the guard stopped: the run records its end, counts reconciled
    assert seen["ids"] == ids and seen["results"] == ids
    [run] = seen["runs"]
    assert run["status"] == "done" and run["stats"]["written"] == run["stats"]["received"] == 4
    assert run["stats"]["failed"] == 0 and run["stats"]["busy_retries"] > 0 and run["stats"]["errors"] == []


def test_a_store_held_by_another_process_delays_the_flush_and_every_record_lands_once(tmp_path: Path) -> None:
    db = tmp_path / "held.duckdb"
    with upstream() as up, guard_on(up, store=db) as (g, records):
        w = g.guard.writer
        assert w is not None
        with held(db) as release:  # a `cotscope judge` run, say, holding the file for writing
            for q in ("benign", "turning", "answer-turns"):
                _ask(g.base_url, q, stream=q != "answer-turns")
            # The flushes came due and found the file held: nothing written, nothing dropped.
            assert wait_for(lambda: w.busy_retries >= 3, timeout=15)
            assert (w.received, w.written, w.failed, w.queued) == (3, 0, 0, 3)
            release()
            assert wait_for(lambda: w.written == 3, timeout=15)
        _ask(g.base_url, "benign")  # and the writer goes on once the file is free
        assert wait_for(lambda: w.written == 4, timeout=15)
        assert (w.received, w.failed, w.queued, w.errors) == (4, 0, 0, [])
    seen = _read(db)
    ids = sorted(r.request_id for r in records)
    assert len(ids) == 4 and seen["ids"] == ids and seen["results"] == ids  # each exactly once
    [run] = seen["runs"]
    assert run["status"] == "done" and (run["stats"]["received"], run["stats"]["written"]) == (4, 4)


def _writer(db: Path, **kw: Any) -> RecordWriter:
    return RecordWriter(db, evaluator="guard:phrase", label_meaning="flagged", config={"monitor": "phrase"},
                        run_config={"upstream": "fake"}, **kw)


def test_writer_batches_and_a_bad_record_fails_alone(tmp_path: Path) -> None:
    db = tmp_path / "batch.duckdb"
    good = [GuardRecord(reasoning=f"Step {i}: add the numbers.", answer="4", flagged=False) for i in range(2)]
    # A value the store cannot encode as JSON (a set smuggled into a message): this record alone fails.
    bad = GuardRecord(prompt=[{"role": "user", "content": "q", "extra": {1, 2}}], reasoning="x", flagged=False)
    # A lone surrogate (JSON can carry one as "\\ud800"; UTF-8 cannot) is stored as U+FFFD, one for one.
    odd = GuardRecord(reasoning="broken \ud800 text", flagged=False)
    good.append(odd)

    async def run() -> RecordWriter:
        w = _writer(db, flush_s=60.0, max_batch=3)
        await w.start()
        w.submit(good[0])
        await asyncio.sleep(0.3)
        assert (w.written, w.queued, w.flushes) == (0, 1, 0)  # neither flush_s passed nor the batch full
        w.submit(bad)
        w.submit(good[1])  # a full batch flushes at once
        for _ in range(200):
            if w.flushes:
                break
            await asyncio.sleep(0.05)
        assert (w.flushes, w.written, w.failed, w.queued) == (1, 2, 1, 0)
        assert len(w.errors) == 1 and w.errors[0].startswith(bad.request_id + ": ")
        late = GuardRecord(reasoning="Queued at shutdown.", flagged=False)
        good.append(late)
        w.submit(late)
        w.submit(odd)
        await w.aclose()  # writes what is queued
        return w

    w = asyncio.run(run())
    assert (w.received, w.written, w.failed, w.queued) == (5, 4, 1, 0)
    seen = _read(db)
    assert seen["ids"] == sorted(r.request_id for r in good) == seen["results"]
    [stats] = [r["stats"] for r in seen["runs"]]
    assert (stats["received"], stats["written"], stats["failed"]) == (5, 4, 1)
    with Store(db, read_only=True) as st:
        assert st.get(odd.request_id).reasoning == "broken \ufffd text"


def test_a_store_held_at_shutdown_is_tried_for_a_bounded_time_then_reported(tmp_path: Path) -> None:
    db = tmp_path / "shutdown.duckdb"
    recs = [GuardRecord(reasoning=f"Step {i}.", flagged=False) for i in range(2)]

    async def run() -> RecordWriter:
        w = _writer(db, flush_s=0.05, give_up_s=0.6)
        await w.start()
        with held(db):
            for r in recs:
                w.submit(r)
            await asyncio.sleep(0.3)
            assert w.busy_retries > 0 and w.queued == 2
            t0 = time.monotonic()
            await w.aclose()
            assert time.monotonic() - t0 < 5  # bounded by give_up_s (plus a last try)
            # With the store held, starting another writer waits give_up_s and then says why.
            with pytest.raises(OSError, match="held by another process"):
                await _writer(db, give_up_s=0.2).start()
        return w

    w = asyncio.run(run())
    assert (w.received, w.written, w.failed, w.not_written, w.queued) == (2, 0, 2, 2, 0)
    assert any(e.startswith("2 record(s) not written") for e in w.errors)
    assert any(e.startswith("the run's end was not recorded") for e in w.errors)
    seen = _read(db)
    assert seen["ids"] == [] and [r["status"] for r in seen["runs"]] == ["running"]


def test_a_store_that_cannot_be_opened_fails_the_records_and_says_why(tmp_path: Path) -> None:
    db = tmp_path / "damaged.duckdb"
    recs = [GuardRecord(reasoning=f"Step {i}.", flagged=False) for i in range(2)]

    async def run() -> RecordWriter:
        w = _writer(db, flush_s=60.0)
        await w.start()
        db.write_bytes(b"not a database" * 1000)  # damaged between two flushes: not a lock, so no retry
        for r in recs:
            w.submit(r)
        await w.aclose()  # one flush of both
        return w

    w = asyncio.run(run())
    assert (w.received, w.written, w.failed, w.not_written, w.busy_retries) == (2, 0, 2, 0, 0)
    # One line for the shared reason, naming the records.
    assert w.errors[0].startswith(f"2 records ({recs[0].request_id}, {recs[1].request_id}): cannot open the store: ")
    assert "not a valid DuckDB database" in w.errors[0]
    assert len(w.errors) == 2 and w.errors[1].startswith("the run's end was not recorded")
