"""The DuckDB schema of a cotscope store, and the migration of older stores.

Version history:

- 1: ``meta``, ``traces``, ``runs``, ``results``.
- 2: adds ``evaluators``: the label meaning and configuration of every (evaluator, config hash), so any
  command reads what a stored label means, whichever command wrote it. v1 stores are migrated when opened
  for writing (the table is backfilled from the recorded runs); a read-only open derives the same rows from
  the runs without writing.
- 3: ``traces`` has no primary key. Deduplicating through the unique index cost an ART index probe and insert
  per row and an index to rewrite at checkpoints; the store now skips known ids itself with one vectorised
  anti-join per transaction (:mod:`cotscope.store._write`). Ids stay unique: every write goes through that
  path, each write is one transaction, and DuckDB lets one process write a file at a time. v1/v2 stores are
  migrated when opened for writing (``traces`` is copied, rows in their stored order, into a table without the
  key); a read-only open reads them as they are, since no reader uses the index.
- 4: adds ``labels``: human labels of traces (name, value, note, author, time), written by ``cotscope view``;
  older stores gain the empty table when opened for writing, and a read-only open of one reads no labels.
  Also adds ``traces.reasoning_provenance`` (JSON spans ``{kind, start, end, payload?}`` over the reasoning, see
  :mod:`cotscope.traces._provenance`): older stores gain the column (NULL: unknown) when opened for writing
  (``ALTER TABLE ... ADD COLUMN``, no copy); a read-only open of one reads it as NULL.
"""

from __future__ import annotations

from typing import Any

import duckdb
import orjson

SCHEMA_VERSION = 4

#: The traces table. No key: ids are kept unique by the write path (see the version history).
TRACES_DDL = """
CREATE TABLE IF NOT EXISTS {name} (
    id VARCHAR NOT NULL,
    prompt JSON,
    reasoning VARCHAR,
    answer VARCHAR,
    reasoning_closed BOOLEAN,
    steps JSON,
    actions JSON,
    model VARCHAR,
    strategy VARCHAR,
    group_id VARCHAR,
    sample_index INTEGER,
    source_file VARCHAR,
    source_line BIGINT,
    source_format VARCHAR,
    metadata JSON,
    reasoning_provenance JSON,
    run_id VARCHAR,
    created_at TIMESTAMP DEFAULT current_timestamp
);
"""

#: Every table of a current store.
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
{traces}CREATE TABLE IF NOT EXISTS runs (
    id VARCHAR PRIMARY KEY,
    kind VARCHAR,
    name VARCHAR,
    config JSON,
    config_hash VARCHAR,
    status VARCHAR,
    stats JSON,
    started_at TIMESTAMP DEFAULT current_timestamp,
    finished_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS results (
    trace_id VARCHAR,
    evaluator VARCHAR,
    config_hash VARCHAR,
    part VARCHAR,
    kind VARCHAR,
    label BOOLEAN,
    score DOUBLE,
    parse_error VARCHAR,
    raw VARCHAR,
    reason VARCHAR,
    evidence JSON,
    details JSON,
    run_id VARCHAR,
    created_at TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (trace_id, evaluator, config_hash, part)
);
CREATE TABLE IF NOT EXISTS evaluators (
    evaluator VARCHAR,
    config_hash VARCHAR,
    kind VARCHAR,
    label_meaning VARCHAR,
    config JSON,
    created_at TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (evaluator, config_hash)
);
CREATE TABLE IF NOT EXISTS labels (
    id VARCHAR PRIMARY KEY,
    trace_id VARCHAR NOT NULL,
    name VARCHAR NOT NULL,
    value VARCHAR NOT NULL,
    note VARCHAR,
    author VARCHAR,
    created_at TIMESTAMP DEFAULT current_timestamp
);
""".replace("{traces}", TRACES_DDL.format(name="traces"))

#: The columns of an evaluator row, in table order (without ``created_at``).
EVALUATOR_COLS = ("evaluator", "config_hash", "kind", "label_meaning", "config")

#: What a monitor's label means when its run did not record it: a monitor's label is its flag.
MONITOR_LABEL_MEANING = "flagged"


def has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether the store has table ``name`` (an older or empty file may lack it)."""
    row = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'main' AND table_name = ?", [name]
    ).fetchone()
    return bool(row and row[0])


def stored_version(con: duckdb.DuckDBPyConnection) -> int | None:
    """The schema version recorded in the file, or ``None`` for a new (empty) file."""
    if not has_table(con, "meta"):
        return None
    row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 1


def legacy_evaluators(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Evaluator rows derived from the runs of a store that predates the ``evaluators`` table.

    ``judge`` and ``monitor`` runs record ``{"config": {..., "label_meaning"}, "config_hash": ...}``;
    ``benchmark`` runs record their plan, whose ``judges`` entries carry ``label_meaning`` and
    ``keys: {category: [evaluator, config_hash]}``. Runs are read oldest first and the first row of a key
    wins, as ``INSERT OR IGNORE`` would have kept it. The runs table holds one row per command, so reading
    it in Python costs nothing next to the traces.
    """
    if not has_table(con, "runs"):
        return []
    out: dict[tuple[str, str], dict[str, Any]] = {}
    rows = con.execute(
        "SELECT kind, name, config FROM runs WHERE kind IN ('judge', 'monitor', 'benchmark') ORDER BY started_at"
    ).fetchall()
    for kind, name, raw in rows:
        try:
            cfg = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            continue  # a run whose configuration cannot be read says nothing about its labels
        if not isinstance(cfg, dict):
            continue
        if kind in ("judge", "monitor"):
            inner = cfg.get("config")
            chash = cfg.get("config_hash")
            if not isinstance(inner, dict) or not chash:
                continue
            meaning = inner.get("label_meaning") or (MONITOR_LABEL_MEANING if kind == "monitor" else None)
            out.setdefault((str(name), str(chash)), {"evaluator": str(name), "config_hash": str(chash),
                                                     "kind": kind, "label_meaning": meaning, "config": inner})
            continue
        for pj in cfg.get("judges") or []:
            if not isinstance(pj, dict) or pj.get("skipped"):
                continue
            raw_spec = pj.get("spec")
            spec: dict[str, Any] = raw_spec if isinstance(raw_spec, dict) else {}
            # The benchmark runner stores results of a monitor-role judge with kind "monitor".
            jkind = "monitor" if spec.get("role") == "monitor" else "judge"
            for cat, key in (pj.get("keys") or {}).items():
                if not isinstance(key, list | tuple) or len(key) != 2:
                    continue
                ev, chash = str(key[0]), str(key[1])
                out.setdefault((ev, chash), {
                    "evaluator": ev, "config_hash": chash, "kind": jkind, "label_meaning": pj.get("label_meaning"),
                    "config": {"benchmark": name, "judge": pj.get("name"), "category": cat, "spec": spec}})
    return list(out.values())


def open_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the tables of a new store, or migrate an older one to :data:`SCHEMA_VERSION`, in one transaction.

    Raises:
        OSError: the store was written by a newer cotscope.
    """
    version = stored_version(con)
    if version is not None and version > SCHEMA_VERSION:
        raise OSError(f"store schema version {version} is newer than this cotscope's ({SCHEMA_VERSION})")
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(SCHEMA)
        if version is not None and version < 2:
            insert_evaluators(con, legacy_evaluators(con))
        if version is not None and version < 3:
            _unkey_traces(con)
        if version is not None and version < 4:
            # After the v3 copy (a keyed table cannot be altered); a v1/v2 copy already has the column.
            con.execute("ALTER TABLE traces ADD COLUMN IF NOT EXISTS reasoning_provenance JSON")
        con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _has_primary_key(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    row = con.execute(
        "SELECT count(*) FROM duckdb_constraints() WHERE schema_name = 'main' AND table_name = ?"
        " AND constraint_type = 'PRIMARY KEY'", [table]).fetchone()
    return bool(row and row[0])


def _unkey_traces(con: duckdb.DuckDBPyConnection) -> None:
    """Rebuild ``traces`` without its primary key (v1/v2 -> v3), every row kept in its stored order.

    DuckDB cannot drop a primary key in place, so the rows are copied (by column name) into a new table
    that then takes the old one's name. Runs inside :func:`open_schema`'s transaction: a store killed
    while migrating is left as it was.
    """
    if not _has_primary_key(con, "traces"):
        return
    con.execute(TRACES_DDL.format(name="traces_v3"))
    con.execute("INSERT INTO traces_v3 BY NAME SELECT * FROM traces")
    con.execute("DROP TABLE traces")
    con.execute("ALTER TABLE traces_v3 RENAME TO traces")


def insert_evaluators(con: duckdb.DuckDBPyConnection, rows: list[dict[str, Any]]) -> int:
    """Insert evaluator rows, keeping any existing row of the same key; returns how many were new."""
    n = 0
    for r in rows:
        res = con.execute(
            f"INSERT OR IGNORE INTO evaluators ({', '.join(EVALUATOR_COLS)}) VALUES (?, ?, ?, ?, ?)",
            [r["evaluator"], r["config_hash"], r["kind"], r["label_meaning"], orjson.dumps(r["config"]).decode()],
        ).fetchone()
        n += int(res[0]) if res else 0
    return n
