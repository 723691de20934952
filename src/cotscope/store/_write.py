"""The write path of traces: each write is one transaction, and ids already stored are skipped without an index.

The ``traces`` table has no key (schema v3, see :mod:`cotscope.store._schema`). Rows are deduplicated in two
vectorised steps instead of one index probe and insert per row:

1. within what one transaction writes, in Python while the Arrow columns are built: the first row of each id
   wins, as ``INSERT OR IGNORE`` into a keyed table kept it;
2. against the store, in DuckDB: one anti-join of those ids with ``traces.id``, inside the ``INSERT`` itself,
   so checking and appending are a single statement and thus a single transaction.

:meth:`Store.add_rows <cotscope.store.Store.add_rows>` writes its rows in one transaction; ingest writes whole
reader batches, several per transaction (:class:`BatchWriter`). Ids stay unique because nothing else inserts
traces, statements that write one store file are serialised here (a lock per file, shared by every
:class:`~cotscope.store.Store` of the process), and DuckDB lets only one process open a file for writing.
A process killed mid-write leaves each transaction wholly stored or not at all: DuckDB replays only
committed transactions from its write-ahead log.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import orjson

from cotscope.traces._rows import ROW_FIELDS, Row

#: Row fields stored as JSON text.
JSON_COLS = frozenset(("prompt", "steps", "actions", "metadata", "reasoning_provenance"))
#: The columns a batch writes, in table order.
TRACE_COLS = (*ROW_FIELDS, "run_id")

_NAMES = ", ".join(TRACE_COLS)
# ANTI JOIN keeps only the batch's columns; the batch is the probe side, so rows keep their order.
_INSERT_NEW = f"INSERT INTO traces ({_NAMES}) SELECT {_NAMES} FROM _batch ANTI JOIN traces USING (id)"

_locks_guard = threading.Lock()
_locks: dict[str, threading.Lock] = {}


def write_lock(path: str) -> threading.Lock:
    """The lock serialising trace writes to one store file within this process (one per file)."""
    key = path if path == ":memory:" else str(Path(path).resolve())
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


def arrow_schema() -> Any:
    """The Arrow schema of a batch of trace rows (the ``traces`` columns less ``created_at``)."""
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
            ("reasoning_provenance", pa.string()),
            ("run_id", pa.string()),
        ]
    )


def first_of_each_id(rows: Sequence[Row]) -> Sequence[Row]:
    """The rows whose id has not occurred earlier in ``rows`` (all of them, unchanged, when ids are distinct)."""
    ids = [r["id"] for r in rows]
    if len(set(ids)) == len(ids):
        return rows
    seen: set[str] = set()
    out = []
    for r, tid in zip(rows, ids, strict=True):
        if tid not in seen:
            seen.add(tid)
            out.append(r)
    return out


def rows_to_arrow(rows: Sequence[Row], run_id: str | None) -> Any:
    """One Arrow table of trace rows, built column by column (JSON columns as text)."""
    import pyarrow as pa

    dumps = orjson.dumps
    cols: dict[str, list[Any]] = {}
    for c in ROW_FIELDS:
        if c in JSON_COLS:
            # Most records carry no actions and no extra metadata: the empty values need no encoder call.
            # Arrow takes orjson's UTF-8 bytes as strings as they are, without a decode to str.
            cols[c] = [
                None if v is None else b"[]" if v == [] else b"{}" if v == {} else dumps(v)
                for v in (r[c] for r in rows)
            ]
        else:
            cols[c] = [r[c] for r in rows]
    cols["run_id"] = [run_id] * len(rows)
    return pa.table(cols, schema=arrow_schema())


def insert_table(con: duckdb.DuckDBPyConnection, table: Any) -> int:
    """The one statement that stores the rows of ``table`` (ids distinct) whose ids are not stored yet, in the
    transaction ``con`` is in (the caller holds :func:`write_lock`)."""
    con.register("_batch", table)
    try:
        res = con.execute(_INSERT_NEW).fetchone()
    finally:
        con.unregister("_batch")
    return int(res[0]) if res else 0


def _insert(con: duckdb.DuckDBPyConnection, path: str, table: Any) -> int:
    """Store the rows of ``table`` (ids distinct) whose ids are not stored yet, in one statement."""
    # Its own cursor: DuckDB refuses to register a table on a connection whose last result is unread (after
    # Store.count(), say), and the batch stays registered nowhere else.
    with write_lock(path):
        cur = con.cursor()
        try:
            return insert_table(cur, table)
        finally:
            cur.close()


def insert_new_rows(con: duckdb.DuckDBPyConnection, path: str, rows: Sequence[Row], run_id: str | None) -> int:
    """Store the rows whose ids are neither stored yet nor earlier in ``rows``; returns how many were stored.

    One statement, so one transaction: the rows are stored wholly or not at all.
    """
    if not rows:
        return 0
    return _insert(con, path, rows_to_arrow(first_of_each_id(rows), run_id))


#: Bytes of Arrow data that close a transaction of :class:`BatchWriter`; 0: every batch is its own transaction.
#: Larger transactions made the store stage alone faster (100,000 traces: 5,000-row transactions 23-30 MB/s,
#: 50,000-row ones 46 MB/s) but gave no measurable gain end to end on a loaded 2-core machine, and a killed
#: ingest loses a whole transaction, so ingest keeps one transaction per 5,000-row batch, as before.
TRANSACTION_BYTES = 0


class BatchWriter:
    """Stores the batches of an ingest: one transaction per batch, or several batches per transaction up to
    about ``max_bytes`` of Arrow data.

    Every commit costs DuckDB a write-ahead-log flush, and a commit that crosses its checkpoint threshold
    rewrites the table's open row group, so larger transactions write less (see :data:`TRANSACTION_BYTES`).
    Memory stays bounded by ``max_bytes``. A transaction is all-or-nothing: a killed ingest leaves whole
    transactions and no repeated id, and ingesting the file again stores the rest.

    :meth:`encode` (pure Python, may run in the reading thread) turns a batch into Arrow; :meth:`add` (cheap,
    the storing thread) queues it and stores the queue when full; :meth:`flush` stores the rest.

    Args:
        con: the store's connection.
        path: the store's file (for the write lock).
        run_id: the run recorded with every row.
        max_bytes: the Arrow bytes that close a transaction (default :data:`TRANSACTION_BYTES`).
    """

    def __init__(
        self, con: duckdb.DuckDBPyConnection, path: str, run_id: str | None, max_bytes: int | None = None
    ) -> None:
        self.con = con
        self.path = path
        self.run_id = run_id
        self.max_bytes = TRANSACTION_BYTES if max_bytes is None else max_bytes
        self._tables: list[Any] = []
        self._bytes = 0
        self._seen: set[str] = set()  # ids queued for this transaction: the first of an id wins

    def encode(self, rows: Sequence[Row]) -> Any:
        """A batch as an Arrow table, repeats of an id within it dropped (the first wins)."""
        return rows_to_arrow(first_of_each_id(rows), self.run_id)

    def add(self, table: Any) -> int:
        """Queue an encoded batch; returns how many new traces were stored (non-zero when a transaction closed)."""
        if table.num_rows:
            ids = table.column("id").to_pylist()
            if not self._seen.isdisjoint(ids):  # an id repeated from an earlier batch of this transaction
                import pyarrow as pa

                table = table.filter(pa.array([tid not in self._seen for tid in ids], pa.bool_()))
            self._seen.update(ids)
            self._tables.append(table)
            self._bytes += table.nbytes
        return self.flush() if self._bytes >= self.max_bytes else 0

    def flush(self) -> int:
        """Store what is queued, in one transaction; returns how many new traces were stored."""
        if not self._tables:
            return 0
        import pyarrow as pa

        tables, self._tables, self._bytes = self._tables, [], 0
        self._seen = set()
        return _insert(self.con, self.path, pa.concat_tables(tables))
