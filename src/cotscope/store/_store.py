"""The DuckDB store: traces, runs and results in one file, keyed so that every step is resumable."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import orjson

from cotscope.store._prefetch import prefetch
from cotscope.store._schema import SCHEMA, SCHEMA_VERSION
from cotscope.traces import Trace
from cotscope.traces._read import ReadStats, iter_row_batches
from cotscope.traces._rows import ROW_FIELDS, Row, row_to_trace, trace_to_row

_JSON_COLS = ("prompt", "steps", "actions", "metadata")
_TRACE_COLS = (*ROW_FIELDS, "run_id")


def _arrow_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("id", pa.string()),
            ("prompt", pa.string()),
            ("reasoning", pa.string()),
            ("answer", pa.string()),
            ("reasoning_closed", pa.bool_()),
            ("steps", pa.string()),
            ("actions", pa.string()),
            ("model", pa.string()),
            ("strategy", pa.string()),
            ("group_id", pa.string()),
            ("sample_index", pa.int32()),
            ("source_file", pa.string()),
            ("source_line", pa.int64()),
            ("source_format", pa.string()),
            ("metadata", pa.string()),
            ("run_id", pa.string()),
        ]
    )


def config_hash(config: Any) -> str:
    """A short stable hash of a JSON-serialisable configuration."""
    return hashlib.blake2b(orjson.dumps(config, option=orjson.OPT_SORT_KEYS), digest_size=8).hexdigest()


@dataclass
class IngestReport:
    """What one ingest did. ``records == accepted + rejected`` and ``traces == new + duplicates``."""

    files: list[str] = field(default_factory=list)
    records: int = 0
    accepted: int = 0
    rejected: int = 0
    traces: int = 0
    new: int = 0
    duplicates: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    errors_dropped: int = 0
    bytes: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The report as the JSON object printed by ``cotscope ingest --json``."""
        return {
            "traces": self.traces,
            "rejected": self.rejected,
            "errors": self.errors,
            "records": self.records,
            "accepted": self.accepted,
            "new": self.new,
            "duplicates": self.duplicates,
            "errors_dropped": self.errors_dropped,
            "files": self.files,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 4),
        }


class Store:
    """One DuckDB file holding traces, runs and results.

    Traces are keyed by their id, so storing the same trace twice adds nothing. Results are keyed by
    ``(trace_id, evaluator, config_hash, part)`` so a rerun skips what exists.

    Args:
        path: the ``.duckdb`` file (created when missing), or ``":memory:"``.
        read_only: open without write access (several readers may share the file).
    """

    def __init__(self, path: str | Path, read_only: bool = False) -> None:
        self.path = str(path)
        if read_only and self.path != ":memory:" and not Path(self.path).exists():
            raise FileNotFoundError(f"{self.path}: no such store")
        try:
            self.con = duckdb.connect(self.path, read_only=read_only)
        except duckdb.Error as e:
            raise OSError(f"{self.path}: cannot open store: {e}") from None
        if not read_only:
            self.con.execute(SCHEMA)
            self.con.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])

    # -- lifecycle ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the database file."""
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- traces ------------------------------------------------------------------------------------
    def add_rows(self, rows: Sequence[Row], run_id: str | None = None) -> int:
        """Store trace rows, skipping ids already present; returns how many were new."""
        if not rows:
            return 0
        dumps = orjson.dumps
        cols: dict[str, list[Any]] = {c: [] for c in _TRACE_COLS}
        for r in rows:
            for c in ROW_FIELDS:
                v = r[c]
                if c in _JSON_COLS and v is not None:
                    v = dumps(v).decode()
                cols[c].append(v)
            cols["run_id"].append(run_id)
        import pyarrow as pa

        table = pa.table(cols, schema=_arrow_schema())
        names = ", ".join(_TRACE_COLS)
        self.con.register("_batch", table)
        try:
            res = self.con.execute(f"INSERT OR IGNORE INTO traces ({names}) SELECT {names} FROM _batch").fetchone()
        finally:
            self.con.unregister("_batch")
        return int(res[0]) if res else 0

    def add_traces(self, traces: Iterable[Trace], run_id: str | None = None, batch_size: int = 2000) -> int:
        """Store traces, skipping ids already present; returns how many were new."""
        new = 0
        batch: list[Row] = []
        for t in traces:
            batch.append(trace_to_row(t))
            if len(batch) >= batch_size:
                new += self.add_rows(batch, run_id)
                batch = []
        return new + self.add_rows(batch, run_id)

    def ingest(
        self,
        paths: Iterable[str | Path],
        *,
        format: str = "auto",
        model: str | None = None,
        strategy: str | None = None,
        on_file: Callable[[Path], None] | None = None,
        on_batch: Callable[[int], None] | None = None,
        prefetch_batches: bool = True,
    ) -> IngestReport:
        """Read files of any supported format into the store.

        Bad records are reported in the returned report with file and line; the rest is stored.

        Args:
            paths: files to read.
            format: ``auto`` or a format name (see :data:`cotscope.traces.FORMATS`).
            model: model name for records that do not name one.
            strategy: strategy name for records that do not name one.
            on_file: called with each file before it is read.
            on_batch: called with the records read so far from the current file after each batch.
            prefetch_batches: parse the next batch in a thread while DuckDB stores this one (DuckDB
                releases the GIL while it inserts, so reading and storing overlap).

        Raises:
            TraceFileError: a file is missing, unreadable or of an unknown format.
        """
        import time

        files = [Path(p) for p in paths]  # iterated twice: an iterator would be empty the second time
        report = IngestReport()
        t0 = time.perf_counter()
        run_id = self.start_run("ingest", "ingest", {"paths": [str(p) for p in files], "format": format})
        for p in files:
            if on_file is not None:
                on_file(p)
            stats = ReadStats()
            report.files.append(str(p))
            report.bytes += p.stat().st_size if p.exists() else 0
            batches = iter_row_batches(p, format=format, stats=stats, model=model, strategy=strategy)
            for batch in prefetch(batches, depth=2) if prefetch_batches else batches:
                report.new += self.add_rows(batch, run_id)
                if on_batch is not None:
                    on_batch(stats.records)
            report.records += stats.records
            report.accepted += stats.accepted
            report.rejected += stats.rejected
            report.traces += stats.traces
            report.errors.extend(e.to_dict() for e in stats.errors)
            report.errors_dropped += stats.errors_dropped
        report.duplicates = report.traces - report.new
        report.seconds = time.perf_counter() - t0
        self.finish_run(run_id, "done", report.to_dict() | {"errors": len(report.errors)})
        return report

    def count(self, **filters: Any) -> int:
        """Number of stored traces matching ``model=``, ``strategy=``, ``source_format=`` filters."""
        where, params = _where(filters)
        row = self.con.execute(f"SELECT count(*) FROM traces {where}", params).fetchone()
        return int(row[0]) if row else 0

    def trace_ids(self, **filters: Any) -> set[str]:
        """Ids of stored traces matching the filters."""
        where, params = _where(filters)
        return {r[0] for r in self.con.execute(f"SELECT id FROM traces {where}", params).fetchall()}

    def existing_samples(self, **filters: Any) -> set[tuple[str, int]]:
        """``(group_id, sample_index)`` pairs already stored: what a resumed generation skips.

        A group id is known before generating (it derives from prompt, model and strategy), so a
        killed generation run resumes by generating only the pairs missing here.
        """
        where, params = _where(filters)
        return {
            (g, int(i))
            for g, i in self.con.execute(f"SELECT group_id, sample_index FROM traces {where}", params).fetchall()
        }

    def iter_rows(
        self, *, limit: int | None = None, ids: Iterable[str] | None = None, chunk: int = 2000, **filters: Any
    ) -> Iterator[Row]:
        """Stream stored trace rows in insertion order."""
        where, params = _where(filters)
        sql = f"SELECT {', '.join(ROW_FIELDS)} FROM traces {where}"
        if ids is not None:
            id_list = list(ids)
            sql += (" AND " if where else " WHERE ") + "id IN (SELECT unnest(?::VARCHAR[]))"
            params.append(id_list)
        sql += " ORDER BY created_at, source_file, source_line, id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        cur = self.con.cursor()
        cur.execute(sql, params)
        loads = orjson.loads
        while True:
            chunk_rows = cur.fetchmany(chunk)
            if not chunk_rows:
                break
            for tup in chunk_rows:
                row = dict(zip(ROW_FIELDS, tup, strict=True))
                for c in _JSON_COLS:
                    row[c] = loads(row[c]) if row[c] is not None else None
                yield row
        cur.close()

    def traces(self, *, limit: int | None = None, ids: Iterable[str] | None = None, **filters: Any) -> Iterator[Trace]:
        """Stream stored traces (filters: ``model=``, ``strategy=``, ``group_id=``, ``source_format=``)."""
        for row in self.iter_rows(limit=limit, ids=ids, **filters):
            yield row_to_trace(row)

    def get(self, trace_id: str) -> Trace | None:
        """One trace by id, or by a unique id prefix; ``None`` when there is none.

        Raises:
            KeyError: the prefix matches more than one trace.
        """
        ids = [
            r[0]
            for r in self.con.execute("SELECT id FROM traces WHERE starts_with(id, ?) LIMIT 3", [trace_id]).fetchall()
        ]
        if trace_id in ids:
            ids = [trace_id]
        if not ids:
            return None
        if len(ids) > 1:
            raise KeyError(f"id prefix {trace_id!r} matches several traces: {', '.join(ids)}")
        return next(self.traces(ids=ids))

    # -- runs --------------------------------------------------------------------------------------
    def start_run(self, kind: str, name: str, config: Any) -> str:
        """Record the start of a run and return its id."""
        run_id = uuid.uuid4().hex[:16]
        self.con.execute(
            "INSERT INTO runs (id, kind, name, config, config_hash, status) VALUES (?, ?, ?, ?, ?, 'running')",
            [run_id, kind, name, orjson.dumps(config).decode(), config_hash(config)],
        )
        return run_id

    def finish_run(self, run_id: str, status: str, stats: Any = None) -> None:
        """Record the end of a run."""
        self.con.execute(
            "UPDATE runs SET status = ?, stats = ?, finished_at = current_timestamp WHERE id = ?",
            [status, orjson.dumps(stats).decode(), run_id],
        )

    def runs(self) -> list[dict[str, Any]]:
        """All runs, newest first."""
        cur = self.con.execute(
            "SELECT id, kind, name, config, status, stats, started_at, finished_at FROM runs ORDER BY started_at DESC"
        )
        cols = [d[0] for d in cur.description]
        out = []
        for tup in cur.fetchall():
            d = dict(zip(cols, tup, strict=True))
            d["config"] = orjson.loads(d["config"]) if d["config"] else None
            d["stats"] = orjson.loads(d["stats"]) if d["stats"] else None
            out.append(d)
        return out

    # -- results -----------------------------------------------------------------------------------
    def add_results(self, results: Sequence[dict[str, Any]]) -> int:
        """Store judge or monitor results, replacing none: an existing key is kept.

        Each result needs ``trace_id``, ``evaluator``, ``config_hash`` and ``part``; optional keys are
        ``kind``, ``label``, ``score``, ``parse_error``, ``raw``, ``reason``, ``evidence``, ``details``
        and ``run_id``.
        """
        if not results:
            return 0
        cols = (
            "trace_id",
            "evaluator",
            "config_hash",
            "part",
            "kind",
            "label",
            "score",
            "parse_error",
            "raw",
            "reason",
            "evidence",
            "details",
            "run_id",
        )
        data: dict[str, list[Any]] = {c: [] for c in cols}
        for r in results:
            for c in cols:
                v = r.get(c)
                if c in ("evidence", "details"):
                    v = orjson.dumps(v).decode() if v is not None else None
                data[c].append(v)
        import pyarrow as pa

        schema = pa.schema(
            [(c, pa.bool_() if c == "label" else pa.float64() if c == "score" else pa.string()) for c in cols]
        )
        self.con.register("_res", pa.table(data, schema=schema))
        try:
            names = ", ".join(cols)
            res = self.con.execute(
                f"INSERT OR IGNORE INTO results ({names}) SELECT DISTINCT ON (trace_id, evaluator, config_hash,"
                f" part) {names} FROM _res"
            ).fetchone()
        finally:
            self.con.unregister("_res")
        return int(res[0]) if res else 0

    def done_trace_ids(self, evaluator: str, config_hash: str, part: str) -> set[str]:
        """Ids of traces that already have a result for this evaluator, configuration and part."""
        return {
            r[0]
            for r in self.con.execute(
                "SELECT trace_id FROM results WHERE evaluator = ? AND config_hash = ? AND part = ?",
                [evaluator, config_hash, part],
            ).fetchall()
        }

    def results(self, evaluator: str | None = None, trace_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Stored results, optionally for one evaluator or some traces."""
        sql = (
            "SELECT trace_id, evaluator, config_hash, part, kind, label, score, parse_error, raw, reason,"
            " evidence, details, run_id FROM results WHERE 1=1"
        )
        params: list[Any] = []
        if evaluator is not None:
            sql += " AND evaluator = ?"
            params.append(evaluator)
        if trace_ids is not None:
            sql += " AND trace_id IN (SELECT unnest(?::VARCHAR[]))"
            params.append(list(trace_ids))
        cur = self.con.execute(sql + " ORDER BY created_at", params)
        cols = [d[0] for d in cur.description]
        out = []
        for tup in cur.fetchall():
            d = dict(zip(cols, tup, strict=True))
            for c in ("evidence", "details"):
                d[c] = orjson.loads(d[c]) if d[c] is not None else None
            out.append(d)
        return out


def _where(filters: dict[str, Any]) -> tuple[str, list[Any]]:
    allowed = {"model", "strategy", "group_id", "source_format", "source_file", "run_id"}
    clauses, params = [], []
    for k, v in filters.items():
        if v is None:
            continue
        if k not in allowed:
            raise TypeError(f"unknown trace filter {k!r}: expected one of {', '.join(sorted(allowed))}")
        if isinstance(v, list | tuple | set):
            clauses.append(f"{k} IN (SELECT unnest(?::VARCHAR[]))")
            params.append(list(v))
        else:
            clauses.append(f"{k} = ?")
            params.append(v)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params
