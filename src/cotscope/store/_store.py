"""The DuckDB store: traces, runs and results in one file, keyed so that every step is resumable."""

from __future__ import annotations

import contextlib
import hashlib
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import duckdb
import orjson

from cotscope.errors import ConfigError
from cotscope.store._labels import (
    LABEL_COLS,
    Label,
    LabelExport,
    export_labelled,
    insert_labels,
    label_bool,
    read_labels,
)
from cotscope.store._prefetch import prefetch
from cotscope.store._schema import (
    EVALUATOR_COLS,
    has_table,
    insert_evaluators,
    legacy_evaluators,
    open_schema,
)
from cotscope.store._settings import duckdb_config
from cotscope.store._where import ResultFilter, label_words, parse_where, wanted_label
from cotscope.store._write import (
    BatchWriter,
    first_of_each_id,
    insert_new_rows,
    insert_table,
    rows_to_arrow,
    write_lock,
)
from cotscope.traces import Trace
from cotscope.traces._read import ReadStats, iter_row_batches
from cotscope.traces._rows import ROW_FIELDS, Row, row_to_trace, trace_to_row

if TYPE_CHECKING:
    import pandas as pd

_JSON_COLS = ("prompt", "steps", "actions", "metadata", "reasoning_provenance")

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
    #: Source fields the readers did not keep: ``{file, format, field, reason, records}`` (``records``: how many
    #: accepted records of that file lost the field), so nothing is dropped silently.
    lost: list[dict[str, Any]] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0
    #: Results kept from the scores of cotscope's Inspect scorers in ``.eval`` logs (:func:`inspect_score_results`).
    results: int = 0

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
            "lost": self.lost,
            "files": self.files,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 4),
            "results": self.results,
        }


#: Seconds a store keeps trying to open a file another process holds (see :class:`Store`).
LOCK_WAIT_S = 5.0


#: DuckDB's words when another process holds a file's lock.
_LOCK_HELD = ("could not set lock", "conflicting lock")


def store_locked(error: BaseException) -> bool:
    """Whether ``error`` (DuckDB's, or the ``OSError`` a :class:`Store` raises for it) says another process holds
    the file's lock, as opposed to a damaged, foreign or missing file (whose path may well contain "lock")."""
    text = str(error).lower()
    return any(w in text for w in _LOCK_HELD)


class Store:
    """One DuckDB file holding traces, runs and results.

    Traces are keyed by their id, so storing the same trace twice adds nothing. Results are keyed by
    ``(trace_id, evaluator, config_hash, part)`` so a rerun skips what exists.

    Args:
        path: the ``.duckdb`` file (created when missing), or ``":memory:"``.
        read_only: open without write access (several readers may share the file).
        memory_limit: the most memory DuckDB may use, as DuckDB reads a size (``"2GB"``, ``"512MiB"``,
            ``"50%"``) or in bytes; default ``$COTSCOPE_DUCKDB_MEMORY``, else ``min(2 GiB, 25% of memory)``.
        threads: DuckDB's worker threads; default ``$COTSCOPE_DUCKDB_THREADS``, else the cores this process
            may run on. See :mod:`cotscope.store._settings`.
        lock_wait_s: how long to keep trying while another process holds the file (DuckDB lets one process
            write a file and, meanwhile, no other open it at all). Writers that hold a store briefly, such as
            ``cotscope guard``'s recorder (a fraction of a second per flush) or the viewer storing a label,
            then delay a command instead of failing it. 0: fail at once.

    Raises:
        ConfigError: a memory limit or thread count that is not valid.
        OSError: the file cannot be opened as a store (still held by another process after ``lock_wait_s``).
    """

    def __init__(
        self,
        path: str | Path,
        read_only: bool = False,
        *,
        memory_limit: str | int | None = None,
        threads: int | None = None,
        lock_wait_s: float = LOCK_WAIT_S,
    ) -> None:
        self.path = str(path)
        if read_only and self.path != ":memory:" and not Path(self.path).exists():
            raise FileNotFoundError(f"{self.path}: no such store")
        config = duckdb_config(memory_limit, threads)
        deadline = time.monotonic() + max(0.0, lock_wait_s)
        delay = 0.05
        while True:
            try:
                self.con = duckdb.connect(self.path, read_only=read_only, config=config)
                break
            except duckdb.Error as e:
                if not store_locked(e) or time.monotonic() >= deadline:
                    raise OSError(f"{self.path}: cannot open store: {e}") from None
            time.sleep(max(0.0, min(delay, deadline - time.monotonic())))
            delay = min(delay * 2, 0.5)
        if not read_only:
            try:
                open_schema(self.con)
            except BaseException:
                self.con.close()
                raise
        else:
            self._file_rel = _file_trace_relation(self.con)
            self._trace_rel = self._file_rel

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
        """Store trace rows, skipping ids already present (and repeats within ``rows``: the first wins).

        Returns how many were new. The rows are stored in one transaction: all of them or none.
        """
        return insert_new_rows(self.con, self.path, rows, run_id)

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
        keep_scores: bool = True,
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
            prefetch_batches: read and encode the next batches in a thread while DuckDB stores these (DuckDB
                releases the GIL while it inserts, so reading and storing overlap).
            keep_scores: store the scores that cotscope's Inspect scorers wrote into an Inspect log as results of
                the ingested traces, under the scorer's evaluator key (:func:`inspect_score_results`), so that
                ``metrics``, ``report`` and the viewer read them; ``False`` stores the traces alone.

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
            scores: list[dict[str, Any]] = []
            if keep_scores:
                batches = _collect_scores(batches, scores)
            writer = BatchWriter(self.con, self.path, run_id)
            # Reading and Arrow encoding (Python) run in the prefetch thread; storing (DuckDB, without the
            # GIL) here. Three encoded batches ahead let reading go on while a transaction is written.
            tables = map(writer.encode, batches)
            try:
                for table in prefetch(tables, depth=3) if prefetch_batches else tables:
                    report.new += writer.add(table)
                    if on_batch is not None:
                        on_batch(stats.records)
            finally:
                # What was read before an unreadable part of the file is stored, as each batch was before.
                report.new += writer.flush()
                report.results += self._add_score_results(scores, run_id)
            report.records += stats.records
            report.accepted += stats.accepted
            report.rejected += stats.rejected
            report.traces += stats.traces
            report.errors.extend(e.to_dict() for e in stats.errors)
            report.errors_dropped += stats.errors_dropped
            report.lost.extend({"file": str(p), **d} for d in stats.lost_records())
        report.duplicates = report.traces - report.new
        report.seconds = time.perf_counter() - t0
        self.finish_run(run_id, "done", report.to_dict() | {"errors": len(report.errors)})
        return report

    def count(self, **filters: Any) -> int:
        """Number of stored traces matching ``model=``, ``strategy=``, ``source_format=`` filters."""
        where, params = _where(filters)
        row = self.con.execute(f"SELECT count(*) FROM {self._trace_rel} {where}", params).fetchone()
        return int(row[0]) if row else 0

    def trace_ids(self, **filters: Any) -> set[str]:
        """Ids of stored traces matching the filters."""
        where, params = _where(filters)
        return {r[0] for r in self.con.execute(f"SELECT id FROM {self._trace_rel} {where}", params).fetchall()}

    def existing_samples(self, **filters: Any) -> set[tuple[str, int]]:
        """``(group_id, sample_index)`` pairs already stored: what a resumed generation skips.

        A group id is known before generating (it derives from prompt, model and strategy), so a
        killed generation run resumes by generating only the pairs missing here.
        """
        where, params = _where(filters)
        return {
            (g, int(i))
            for g, i in self.con.execute(f"SELECT group_id, sample_index FROM {self._trace_rel} {where}",
                                         params).fetchall()
        }

    def ids_by_group(self, **filters: Any) -> dict[str, list[str]]:
        """Trace ids per group id, in sample order (without reading the traces themselves).

        Used to pick the traces of a benchmark's groups for judging, where only ids are needed.
        """
        where, params = _where(filters)
        out: dict[str, list[str]] = {}
        for g, tid in self.con.execute(
                f"SELECT group_id, id FROM {self._trace_rel} {where} ORDER BY group_id, sample_index, id",
                params).fetchall():
            out.setdefault(g, []).append(tid)
        return out

    def iter_rows(
        self, *, limit: int | None = None, ids: Iterable[str] | None = None, chunk: int = 2000, **filters: Any
    ) -> Iterator[Row]:
        """Stream stored trace rows in store order (insertion order; an attached dataset's file order)."""
        where, params = _where(filters)
        sql = f"SELECT {', '.join(ROW_FIELDS)} FROM {self._trace_rel} {where}"
        if ids is not None:
            id_list = list(ids)
            sql += (" AND " if where else " WHERE ") + "id IN (SELECT unnest(?::VARCHAR[]))"
            params.append(id_list)
        sql += self._trace_order()
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self._stream_rows(sql, params, chunk)

    def _stream_rows(self, sql: str, params: list[Any], chunk: int) -> Iterator[Row]:
        """The rows of a query selecting :data:`ROW_FIELDS`, fetched ``chunk`` at a time on a cursor of their own."""
        cur = self.con.cursor()
        try:
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
        finally:
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
        # One scan (the table has no index since v3): the matching rows themselves, at most three of them.
        rows = list(self._stream_rows(
            f"SELECT {', '.join(ROW_FIELDS)} FROM {self._trace_rel} WHERE starts_with(id, ?) LIMIT 3",
            [trace_id], 3))
        exact = [r for r in rows if r["id"] == trace_id]
        if exact:
            rows = exact[:1]
        if not rows:
            return None
        if len(rows) > 1:
            raise KeyError(f"id prefix {trace_id!r} matches several traces: {', '.join(r['id'] for r in rows)}")
        return row_to_trace(rows[0])

    # -- traces read in place (Parquet datasets) ---------------------------------------------------
    #: The relation every read of traces goes through: the table, or an attached dataset's subquery.
    _trace_rel: str = "traces"
    #: The relation of the traces stored in the file (an older store opened read-only lacks newer columns).
    _file_rel: str = "traces"
    _attached: tuple[str, ...] | None = None

    def attach_traces(self, source: str | Path | Sequence[str | Path], *, union_by_name: bool = True) -> None:
        """Read this store's traces from a Parquet dataset in place, for as long as the store is open.

        The dataset is what ``cotscope export --format parquet`` writes (one file, or a folder partitioned by
        ``model=``/``strategy=``), or any Parquet files with its columns: a local folder, a file, a glob, a
        ``file://`` URL, or an object-store URL DuckDB reads through its ``httpfs`` extension (``s3://``,
        ``gs://``, ``r2://``, ``az://``, ``https://``, ``hf://``; credentials as DuckDB secrets). Several
        sources read as one dataset.

        From then on every read of traces (:meth:`count`, :meth:`iter_rows`, :meth:`traces`, :meth:`get`,
        :meth:`trace_ids`, :meth:`trace_ids_where`, :meth:`traces_df`, :meth:`pending_traces`, ...) sees the
        dataset's traces *instead of* those stored in the file; nothing is copied. Results, runs and evaluators
        are still read from and written to the file, keyed by the dataset's trace ids, which are the ids the
        traces get when ingested, so results stay valid if the dataset is ingested later. Store order is the
        dataset's file order. Traces added while a dataset is attached go into the file, read again after
        :meth:`detach_traces`. Attaching another dataset replaces this one.

        Args:
            source: a folder, file, glob or URL, or several of them.
            union_by_name: read files whose columns differ, matched by name (reads every file's footer at each
                query; turn off for a large remote dataset written by one export).

        Raises:
            TraceFileError: the dataset is missing, holds no Parquet files, cannot be read (an object-store URL
                without DuckDB's ``httpfs``, without access), or lacks an ``id`` or ``answer`` column; the
                message names it.
        """
        from cotscope.store._dataset import trace_relation

        rel, patterns = trace_relation(self.con, source, union_by_name=union_by_name)
        self._trace_rel = rel
        self._attached = tuple(patterns)

    def detach_traces(self) -> None:
        """Read traces from the store file again (undoes :meth:`attach_traces`)."""
        self._trace_rel = self._file_rel
        self._attached = None

    @property
    def attached_traces(self) -> tuple[str, ...] | None:
        """The ``read_parquet`` patterns of the attached dataset, or ``None`` when traces come from the file."""
        return self._attached

    @property
    def trace_relation(self) -> str:
        """SQL naming the relation this store reads traces from (``traces``, or an attached dataset's subquery).

        For queries written against the store (``SELECT ... FROM {store.trace_relation} t``): its columns are
        those of the traces table whichever it is.
        """
        return self._trace_rel

    def _trace_order(self) -> str:
        """The ORDER BY of store order: insertion order for the table; none for a dataset, whose scan order is
        its file order already (sorting 100M rows to restate it would cost a full read of every column)."""
        return "" if self._attached is not None else " ORDER BY created_at, source_file, source_line, id"

    def _pending_sql(self, select: str, evaluator: str, config_hash: str, part: str,
                     filters: dict[str, Any]) -> tuple[str, list[Any]]:
        where, params = _where(filters)
        # One anti-join in DuckDB: the done ids of this key never reach Python, however many there are.
        sql = (f"SELECT {select} FROM {self._trace_rel} t ANTI JOIN (SELECT trace_id FROM results WHERE"
               f" evaluator = ? AND config_hash = ? AND part = ?) r ON r.trace_id = t.id {where}")
        return sql, [evaluator, config_hash, part, *params]

    def count_pending(self, evaluator: str, config_hash: str, part: str, **filters: Any) -> int:
        """How many traces (matching ``filters``) have no result for ``(evaluator, config_hash, part)`` yet."""
        sql, params = self._pending_sql("count(*)", evaluator, config_hash, part, filters)
        row = self.con.execute(sql, params).fetchone()
        return int(row[0]) if row else 0

    def pending_rows(self, evaluator: str, config_hash: str, part: str, *, limit: int | None = None,
                     chunk: int = 2000, **filters: Any) -> Iterator[Row]:
        """Stream, in store order, the rows of traces with no result for ``(evaluator, config_hash, part)``.

        What an evaluation scores, streamed ``chunk`` rows at a time: memory stays flat whatever the number of
        traces. The set is fixed when the stream starts; results stored meanwhile do not change it.
        """
        sql, params = self._pending_sql(", ".join(f"t.{c}" for c in ROW_FIELDS), evaluator, config_hash, part,
                                        filters)
        sql += self._trace_order()  # unambiguous: the other side of the join has only trace_id
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self._stream_rows(sql, params, chunk)

    def pending_traces(self, evaluator: str, config_hash: str, part: str, *, limit: int | None = None,
                       **filters: Any) -> Iterator[Trace]:
        """:meth:`pending_rows` as traces."""
        for row in self.pending_rows(evaluator, config_hash, part, limit=limit, **filters):
            yield row_to_trace(row)

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
    def add_traces_and_results(self, traces: Sequence[Trace], results: Sequence[dict[str, Any]],
                               run_id: str | None = None) -> tuple[int, int]:
        """Store traces (ids already stored are skipped) and their results (existing keys are kept) in one
        transaction: both or neither. Returns ``(new traces, new results)``.

        :meth:`add_traces` and :meth:`add_results` commit apart; a writer whose traces must never be stored
        without their verdicts (the guard's recorder) uses this.
        """
        table = rows_to_arrow(first_of_each_id([trace_to_row(t) for t in traces]), run_id)
        with write_lock(self.path):
            self.con.execute("BEGIN TRANSACTION")
            try:
                new = insert_table(self.con, table)
                added = self.add_results(results)
                self.con.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(duckdb.Error):
                    self.con.execute("ROLLBACK")
                raise
        return new, added

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

    def _add_score_results(self, scores: list[dict[str, Any]], run_id: str) -> int:
        """Store results kept from an ingested log's scores, recording each evaluator key; returns how many were new."""
        if not scores:
            return 0
        seen: set[tuple[str, str]] = set()
        for r in scores:
            key = (r["evaluator"], r["config_hash"])
            if key not in seen:
                seen.add(key)
                self.add_evaluator(key[0], key[1], kind=r["kind"], label_meaning=r.get("label_meaning"),
                                   config=r.get("config"))
        drop = ("label_meaning", "config")
        return self.add_results([{k: v for k, v in r.items() if k not in drop} | {"run_id": run_id} for r in scores])

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
        where, params = _results_where(evaluator, trace_ids, "results")
        cur = self.con.execute(
            "SELECT trace_id, evaluator, config_hash, part, kind, label, score, parse_error, raw, reason,"
            f" evidence, details, run_id FROM results {where} ORDER BY created_at", params)
        cols = [d[0] for d in cur.description]
        out = []
        for tup in cur.fetchall():
            d = dict(zip(cols, tup, strict=True))
            for c in ("evidence", "details"):
                d[c] = orjson.loads(d[c]) if d[c] is not None else None
            out.append(d)
        return out


    # -- human labels (see cotscope.store._labels) --------------------------------------------------
    def add_labels(self, labels: Sequence[Label]) -> list[Label]:
        """Append human labels of stored traces in one transaction; returns them with ``id`` and ``created_at``.

        Raises:
            KeyError: a label names a trace that is not in the store (the message names it); nothing is stored.
        """
        ids = sorted({lab.trace_id for lab in labels})
        if ids:
            known = {r[0] for r in self.con.execute(
                f"SELECT id FROM {self._trace_rel} WHERE id IN (SELECT unnest(?::VARCHAR[]))", [ids]).fetchall()}
            unknown = [i for i in ids if i not in known]
            if unknown:
                raise KeyError(f"no trace {unknown[0]!r} in {self.path}")
        return insert_labels(self.con, labels)

    def labels(self, *, trace_ids: Iterable[str] | None = None, name: str | None = None, author: str | None = None,
               latest: bool = False) -> list[Label]:
        """Stored human labels, oldest first; ``latest`` keeps the newest of each ``(trace, name, author)``."""
        return read_labels(self.con, trace_ids=trace_ids, name=name, author=author, latest=latest)

    def labels_df(self, *, name: str | None = None, latest: bool = False) -> pd.DataFrame:
        """Human labels as a DataFrame: ``id``, ``trace_id``, ``name``, ``value``, ``note``, ``author``,
        ``created_at``, and ``label`` (the value as a nullable boolean, see :func:`label_bool`)."""
        import pandas as pd

        rows = [lab.model_dump() for lab in self.labels(name=name, latest=latest)]
        df = pd.DataFrame(rows, columns=list(LABEL_COLS))
        df["label"] = pd.array([label_bool(v) for v in df["value"]], dtype="boolean")
        return df

    def export_labels(self, out: str | Path | IO[bytes], *, name: str, author: str | None = None) -> LabelExport:
        """Write the traces labelled ``name`` as a labelled JSONL file that ``cotscope validate`` and the
        agreement benchmarks read (see :func:`cotscope.store._labels.export_labelled`)."""
        return export_labelled(self, out, name=name, author=author)

    # -- evaluators --------------------------------------------------------------------------------
    def add_evaluator(
        self, evaluator: str, config_hash: str, *, kind: str, label_meaning: str | None, config: Any
    ) -> None:
        """Record what the labels of ``(evaluator, config_hash)`` mean; an existing row is kept.

        Every command that stores results calls this once per evaluator key, so any later command
        (metrics, ``traces --where``, the DataFrames) reads the label meaning, whoever wrote the results.

        Args:
            evaluator: the judge or monitor name stored in ``results.evaluator``.
            config_hash: the configuration hash stored in ``results.config_hash``.
            kind: ``judge`` or ``monitor``.
            label_meaning: what a true label means (``unsafe``, ``refused``, ``flagged``, ...), or ``None``.
            config: the JSON-serialisable configuration that was hashed.
        """
        insert_evaluators(self.con, [{"evaluator": evaluator, "config_hash": config_hash, "kind": kind,
                                      "label_meaning": label_meaning, "config": config}])

    def evaluators(self) -> list[dict[str, Any]]:
        """Every recorded evaluator key: ``evaluator``, ``config_hash``, ``kind``, ``label_meaning``, ``config``.

        A version-1 store opened read-only has no ``evaluators`` table; its rows are derived from its runs
        exactly as the migration would write them.
        """
        if not self._has_evaluators():
            return legacy_evaluators(self.con)
        cur = self.con.execute(f"SELECT {', '.join(EVALUATOR_COLS)} FROM evaluators ORDER BY created_at, evaluator")
        out = []
        for tup in cur.fetchall():
            d = dict(zip(EVALUATOR_COLS, tup, strict=True))
            d["config"] = orjson.loads(d["config"]) if d["config"] is not None else None
            out.append(d)
        return out

    def label_meanings(self) -> dict[tuple[str, str], str]:
        """``(evaluator, config_hash) -> label meaning`` for every evaluator key whose meaning is known."""
        return {(e["evaluator"], e["config_hash"]): str(e["label_meaning"])
                for e in self.evaluators() if e["label_meaning"]}

    def _has_evaluators(self) -> bool:
        return has_table(self.con, "evaluators")

    # -- filters on results ------------------------------------------------------------------------
    def trace_ids_where(
        self, where: Sequence[str | ResultFilter], *, limit: int | None = None, **filters: Any
    ) -> list[str]:
        """Ids of the traces (in store order) whose stored results meet every condition of ``where``.

        Args:
            where: expressions such as ``local-refusal:answer=refused``, ``llama-guard=unsafe``,
                ``refusal-strings=not-refused``, ``judge=false``, ``parse_error``, ``judge:parse_error``
                (see :mod:`cotscope.store._where`), or parsed :class:`ResultFilter` objects.
            limit: at most this many ids.
            **filters: trace filters as :meth:`traces` (``model=``, ``strategy=``, ...).

        Raises:
            ConfigError: an expression is malformed, names an evaluator (or part) with no stored results,
                or asks for a label word that is not the evaluator's label meaning or its negation; the
                message names the expression.
        """
        sql_where, params = _where(filters)
        clauses = [sql_where.removeprefix("WHERE ")] if sql_where else []
        parsed = [w if isinstance(w, ResultFilter) else parse_where(w) for w in where]
        if parsed:
            meanings = self.label_meanings()
            parts: dict[str, dict[str, set[str]]] = {}
            for ev, chash, part in self.con.execute(
                    "SELECT DISTINCT evaluator, config_hash, part FROM results").fetchall():
                parts.setdefault(ev, {}).setdefault(part, set()).add(chash)
            for f in parsed:
                cond, cparams = _result_condition(f, parts, meanings)
                clauses.append(f"id IN (SELECT trace_id FROM results WHERE {cond})")
                params.extend(cparams)
        sql = f"SELECT id FROM {self._trace_rel}" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        sql += self._trace_order()
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [r[0] for r in self.con.execute(sql, params).fetchall()]

    # -- DataFrames --------------------------------------------------------------------------------
    def traces_df(self, **filters: Any) -> pd.DataFrame:
        """One row per stored trace, as a pandas DataFrame built through Arrow.

        Columns: ``id``, ``model``, ``strategy``, ``group_id``, ``sample_index``, ``source_format``,
        ``source_file``, ``prompt`` (the text of the last user message, or every message joined when there
        is no user turn, an agent episode's task: as :attr:`Trace.prompt_text`), ``reasoning``, ``answer``,
        ``reasoning_closed``, ``metadata`` (a dict) and ``run_id``.

        Args:
            **filters: as :meth:`traces` (``model=``, ``strategy=``, ``group_id=``, ``source_format=``, ...).
        """
        where, params = _where(filters)
        # The prompt text is extracted by DuckDB so no Python loop walks the messages of every trace.
        sql = f"""
            WITH t AS (
                SELECT *, from_json(prompt, '[{{"role": "VARCHAR", "content": "VARCHAR"}}]') AS msgs
                FROM {self._trace_rel} {where}
            )
            SELECT id, model, strategy, group_id, sample_index, source_format, source_file,
                   coalesce(
                       json_extract_string(metadata, '$.agent.instruction'),
                       [m.content FOR m IN msgs IF m.role = 'user'][-1],
                       array_to_string([coalesce(m.content, '') FOR m IN msgs], chr(10) || chr(10)),
                       ''
                   ) AS prompt,
                   coalesce(reasoning, '') AS reasoning, coalesce(answer, '') AS answer,
                   coalesce(reasoning_closed, true) AS reasoning_closed, metadata, run_id
            FROM t{self._trace_order()}
        """
        df = _to_pandas(self.con, sql, params)
        df["sample_index"] = df["sample_index"].astype("Int64")
        # JSON cannot cross Arrow as a dict column without a fixed schema; one C-level parse per row is the
        # least a dict-valued column costs.
        loads = orjson.loads
        df["metadata"] = df["metadata"].map(lambda v: loads(v) if v is not None else {})
        return df

    def results_df(self, evaluator: str | None = None, trace_ids: Iterable[str] | None = None) -> pd.DataFrame:
        """One row per stored result, as a pandas DataFrame built through Arrow.

        Columns: ``trace_id``, ``evaluator``, ``config_hash``, ``part``, ``kind``, ``label_meaning`` (from
        the evaluators table; missing when never recorded), ``label`` (nullable boolean), ``score``,
        ``parse_error``, ``reason`` and ``run_id``.

        Args:
            evaluator: only the results of this evaluator.
            trace_ids: only the results of these traces.
        """
        where, params = _results_where(evaluator, trace_ids, "r")
        sql = ("SELECT r.trace_id, r.evaluator, r.config_hash, r.part, r.kind, e.label_meaning, r.label, r.score,"
               " r.parse_error, r.reason, r.run_id FROM results r LEFT JOIN {ev} e"
               f" ON e.evaluator = r.evaluator AND e.config_hash = r.config_hash {where}")
        ev, tables = self._evaluators_source()
        df = _to_pandas(self.con, sql.format(ev=ev) + " ORDER BY r.created_at, r.trace_id", params, tables)
        df["label"] = df["label"].astype("boolean")
        return df

    def _evaluators_source(self) -> tuple[str, dict[str, Any]]:
        """The relation holding the evaluator rows for a join, and any Arrow table it needs registered.

        A read-only version-1 store has no table, so its rows, derived from its runs, go in as Arrow.
        """
        if self._has_evaluators():
            return "evaluators", {}
        import pyarrow as pa

        cols = ("evaluator", "config_hash", "label_meaning")
        rows = legacy_evaluators(self.con)
        table = pa.table({c: [r[c] for r in rows] for c in cols}, schema=pa.schema([(c, pa.string()) for c in cols]))
        return "_evaluators_v1", {"_evaluators_v1": table}


def _file_trace_relation(con: duckdb.DuckDBPyConnection) -> str:
    """``traces``, or for a store written before schema v4 opened read-only (so not migrated), a subquery giving
    it the ``reasoning_provenance`` column as NULL (unknown)."""
    if not has_table(con, "traces"):
        return "traces"
    row = con.execute(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'main' AND table_name = 'traces'"
        " AND column_name = 'reasoning_provenance'").fetchone()
    if row and row[0]:
        return "traces"
    return "(SELECT *, NULL::JSON AS reasoning_provenance FROM traces)"


#: The key of an Inspect ``Score.metadata`` under which cotscope's Inspect scorers write their results
#: (``cotscope.integrations.inspect``): a list of :data:`SCORE_RESULT_FIELDS` objects, one per part judged.
INSPECT_SCORE_KEY = "cotscope"
#: The fields of one result in a score's metadata: the store key, the evaluator's record and the verdict.
SCORE_RESULT_FIELDS = ("evaluator", "config_hash", "part", "kind", "label_meaning", "config", "label", "score",
                       "parse_error", "raw", "reason", "evidence", "details")


def inspect_score_results(row: Row) -> list[dict[str, Any]]:
    """The results that cotscope's Inspect scorers recorded in an ingested Inspect sample (its ``scores``, kept
    in the row's metadata by the reader), as :meth:`Store.add_results` rows of the row's trace plus each
    evaluator's ``label_meaning`` and ``config``. Scores of other scorers, and entries that lack the store key
    (evaluator, config hash, part, kind), are left out: a label without its key cannot be told apart from another
    configuration's."""
    scores = (row.get("metadata") or {}).get("scores")
    if not isinstance(scores, dict):
        return []
    out = []
    for score in scores.values():
        meta = score.get("metadata") if isinstance(score, dict) else None
        entries = meta.get(INSPECT_SCORE_KEY) if isinstance(meta, dict) else None
        for e in entries if isinstance(entries, list) else []:
            if not (isinstance(e, dict) and all(isinstance(e.get(k), str) and e[k]
                                                for k in ("evaluator", "config_hash", "part", "kind"))):
                continue
            label = e.get("label")
            value = e.get("score")
            out.append({k: e.get(k) for k in SCORE_RESULT_FIELDS} | {
                "trace_id": row["id"],
                "label": label if isinstance(label, bool) else None,
                "score": float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None,
            })
    return out


def _collect_scores(batches: Iterator[list[Row]], into: list[dict[str, Any]]) -> Iterator[list[Row]]:
    """Pass row batches through, collecting the cotscope scores of Inspect rows into ``into``."""
    for batch in batches:
        for row in batch:
            if row.get("source_format") == "inspect":
                into.extend(inspect_score_results(row))
        yield batch


def _result_condition(
    f: ResultFilter, parts: dict[str, dict[str, set[str]]], meanings: dict[tuple[str, str], str]
) -> tuple[str, list[Any]]:
    """The SQL condition on ``results`` of one filter, checked against what the store holds.

    Args:
        f: the filter.
        parts: ``evaluator -> part -> config hashes`` of the stored results.
        meanings: the label meaning of each ``(evaluator, config_hash)``.
    """
    if f.evaluator is None:
        return "parse_error IS NOT NULL", []
    if f.evaluator not in parts:
        known = ", ".join(sorted(parts)) or "none"
        raise ConfigError(f"{f.expr!r}: no results of {f.evaluator!r} in this store (evaluators: {known})")
    by_part = parts[f.evaluator]
    if f.part is not None and f.part not in by_part:
        raise ConfigError(f"{f.expr!r}: {f.evaluator!r} has no results for part {f.part!r}"
                          f" (parts: {', '.join(sorted(by_part))})")
    cond = "evaluator = ?"
    params: list[Any] = [f.evaluator]
    if f.part is not None:
        cond += " AND part = ?"
        params.append(f.part)
    if f.parse_error:
        return cond + " AND parse_error IS NOT NULL", params
    # One evaluator may have been run with several configurations; each says what its labels mean.
    hashes = sorted(set().union(*(by_part[p] for p in ([f.part] if f.part else by_part))))
    per_label: dict[bool, list[str]] = {True: [], False: []}
    asked: list[str | None] = []
    for h in hashes:
        meaning = meanings.get((f.evaluator, h))
        want = wanted_label(f, meaning)
        asked.append(meaning)
        if want is not None:
            per_label[want].append(h)
    if not per_label[True] and not per_label[False]:
        words = "; ".join(sorted({label_words(m) for m in asked}))
        raise ConfigError(f"{f.expr!r}: {f.evaluator!r} labels are {words}")
    ors = []
    for lab, hs in per_label.items():
        if hs:
            ors.append(f"(label = {'true' if lab else 'false'} AND config_hash IN (SELECT unnest(?::VARCHAR[])))")
            params.append(hs)
    return f"{cond} AND ({' OR '.join(ors)})", params


def _to_pandas(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[Any], tables: dict[str, Any] | None = None
) -> pd.DataFrame:
    """The result of a query as a DataFrame, through one Arrow table (no Python rows).

    The query runs as a relation on its own cursor: a relation hands Arrow over without the extra copy of a
    DB-API result, and DuckDB refuses a relation on a connection whose last ``execute`` result is unread.
    ``tables`` are Arrow tables registered on that cursor for the query.
    """
    cur = con.cursor()
    try:
        for name, table in (tables or {}).items():
            cur.register(name, table)
        return cur.sql(sql, params=params).to_arrow_table().to_pandas()
    finally:
        cur.close()


def _results_where(evaluator: str | None, trace_ids: Iterable[str] | None, table: str) -> tuple[str, list[Any]]:
    """The ``WHERE`` clause (possibly empty) and parameters selecting results of one evaluator and/or traces."""
    clauses: list[str] = []
    params: list[Any] = []
    if evaluator is not None:
        clauses.append(f"{table}.evaluator = ?")
        params.append(evaluator)
    if trace_ids is not None:
        clauses.append(f"{table}.trace_id IN (SELECT unnest(?::VARCHAR[]))")
        params.append(list(trace_ids))
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


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
