"""Export stored traces as JSONL or Parquet, one record per trace.

Parquet goes to one file, or (``partition_by``) to a Hive-partitioned dataset: a folder of
``model=.../strategy=.../data_N.parquet`` files written by DuckDB's ``COPY ... (PARTITION_BY ...)``. Every file of
a dataset has the single-file schema, partition columns included, so each file reads on its own (``cotscope
ingest``) and the folder reads as one table (``Store.attach_traces``, DuckDB, pyarrow, Spark).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from cotscope.traces._rows import row_spans

if TYPE_CHECKING:
    from cotscope.store._store import Store

EXPORT_FORMATS = ("jsonl", "parquet")

#: Columns a Parquet dataset may be partitioned by: few distinct values each, so few folders.
PARTITION_COLUMNS = ("model", "strategy")

#: Rows DuckDB buffers across partitions before writing them out, in chunks of the export: memory stays flat
#: (its default, 524,288 rows, is gigabytes of reasoning text).
_FLUSH_CHUNKS = 4

#: DuckDB's memory for the partitioned COPY (it spills beyond it).
_COPY_MEMORY = "512MB"


def export_record(row: dict[str, Any]) -> dict[str, Any]:
    """The export form of a stored trace row."""
    reasoning = row["reasoning"] or ""
    return {
        "id": row["id"],
        "prompt": row["prompt"] or [],
        "reasoning": reasoning,
        "answer": row["answer"] or "",
        "reasoning_closed": bool(row["reasoning_closed"]),
        "steps": [
            {"index": i, "start": s, "end": e, "kind": k, "text": reasoning[s:e]}
            for i, (s, e, k) in enumerate(row_spans(row))
        ],
        "actions": row["actions"] or [],
        "model": row["model"],
        "strategy": row["strategy"],
        "group_id": row["group_id"],
        "sample_index": row["sample_index"],
        "source": {"file": row["source_file"], "line": row["source_line"], "format": row["source_format"]},
        "metadata": row["metadata"] or {},
        "reasoning_provenance": row.get("reasoning_provenance") or [],
    }


def _results_by_trace(store: Store, ids: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = defaultdict(dict)
    for r in store.results(trace_ids=ids):
        key = r["evaluator"] if r["part"] in (None, "", "both") else f"{r['evaluator']}:{r['part']}"
        out[r["trace_id"]][key] = {
            "label": r["label"],
            "score": r["score"],
            "parse_error": r["parse_error"],
            "evidence": r["evidence"] or [],
            "part": r["part"],
            "reason": r["reason"],
            "kind": r["kind"],
            "config_hash": r["config_hash"],
        }
    return out


def export_traces(
    store: Store,
    out: str | Path | None,
    format: str = "jsonl",
    *,
    with_results: bool = False,
    chunk: int = 5000,
    partition_by: Sequence[str] | None = None,
    **filters: Any,
) -> int:
    """Write every stored trace (matching ``filters``) to ``out`` (stdout when ``None``).

    Args:
        store: the store (or its attached dataset) to read.
        out: the output file; with ``partition_by``, the dataset folder (new, or empty).
        format: ``jsonl`` or ``parquet``.
        with_results: add each trace's judge and monitor results.
        chunk: traces converted (and, in Parquet, written as one row group) at a time.
        partition_by: write a Hive-partitioned Parquet dataset split by these columns (of
            :data:`PARTITION_COLUMNS`), streaming: memory stays flat whatever the number of traces.
        **filters: trace filters (``model=``, ``strategy=``, ...).

    Returns:
        The number of traces written.

    Raises:
        ValueError: an unknown format or partition column, partitions without Parquet, no ``out`` for Parquet,
            or a dataset folder that is a file or not empty.
    """
    if format not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {format!r}: expected one of {', '.join(EXPORT_FORMATS)}")
    if format == "parquet" and out is None:
        raise ValueError("parquet export needs --out FILE")
    if partition_by:
        if format != "parquet" or out is None:
            raise ValueError("a partitioned export writes Parquet: give --format parquet and --out DIR")
        return _export_partitioned(store, Path(out), list(partition_by), with_results, chunk, filters)
    n = 0
    buf: list[dict[str, Any]] = []
    sink: IO[bytes]
    writer = None

    def flush() -> None:
        nonlocal writer
        if not buf:
            return
        if with_results:
            res = _results_by_trace(store, [r["id"] for r in buf])
            for r in buf:
                r["results"] = res.get(r["id"], {})
        if format == "jsonl":
            sink.write(b"".join(orjson.dumps(r) + b"\n" for r in buf))
        else:
            import pyarrow.parquet as pq

            table = _parquet_table(buf, with_results)
            if writer is None:
                writer = pq.ParquetWriter(str(out), table.schema, compression="zstd")
            writer.write_table(table)
        buf.clear()

    if format == "jsonl":
        sink = sys.stdout.buffer if out is None else open(out, "wb")  # noqa: SIM115
    try:
        for row in store.iter_rows(**filters):
            buf.append(export_record(row))
            n += 1
            if len(buf) >= chunk:
                flush()
        flush()
        if format == "parquet" and writer is None:
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist([], schema=_parquet_schema(with_results)), str(out))
    finally:
        if writer is not None:
            writer.close()
        if format == "jsonl" and out is not None:
            sink.close()
    return n


def _parquet_table(records: list[dict[str, Any]], with_results: bool) -> Any:
    """Export records (with results when asked) as one Arrow table of :func:`_parquet_schema`."""
    import pyarrow as pa

    for r in records:
        # Free-form JSON stays JSON text: Parquet needs one schema for every row.
        r["metadata"] = orjson.dumps(r["metadata"]).decode()
        r["actions"] = orjson.dumps(r["actions"]).decode()
        r["prompt"] = [{"role": m.get("role"), "content": m.get("content")} for m in r["prompt"]]
        if with_results:
            r["results"] = orjson.dumps(r["results"]).decode()
    return pa.Table.from_pylist(records, schema=_parquet_schema(with_results))


def _export_partitioned(store: Store, out: Path, partition_by: list[str], with_results: bool, chunk: int,
                        filters: dict[str, Any]) -> int:
    """Stream the export records into DuckDB's partitioned ``COPY``; returns the number written."""
    import duckdb
    import pyarrow as pa

    bad = [c for c in partition_by if c not in PARTITION_COLUMNS]
    if bad or len(set(partition_by)) != len(partition_by):
        raise ValueError(f"cannot partition by {', '.join(partition_by)}: expected distinct columns of "
                         f"{', '.join(PARTITION_COLUMNS)}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out}: a partitioned export writes a new folder, and this one "
                         f"{'is a file' if not out.is_dir() else 'is not empty'}")
    schema = _parquet_schema(with_results)
    written = 0

    def batches() -> Iterator[Any]:
        nonlocal written
        buf: list[dict[str, Any]] = []
        for row in store.iter_rows(**filters):
            buf.append(export_record(row))
            if len(buf) >= chunk:
                yield from _records_batches(store, buf, with_results)
                written += len(buf)
                buf = []
        if buf:
            yield from _records_batches(store, buf, with_results)
            written += len(buf)

    out.mkdir(parents=True, exist_ok=True)
    # A connection of its own: the store's is busy streaming the rows this COPY consumes, and DuckDB pulls the
    # Arrow stream from its own threads.
    # One thread: the rows come from one Python stream, and every writer thread would hold partition buffers of its
    # own (measured on 1M traces: 968 MB peak for the whole export with one thread and this cap, 1,249 MB without).
    con = duckdb.connect(config={"partitioned_write_flush_threshold": max(1, chunk) * _FLUSH_CHUNKS, "threads": 1,
                                 "memory_limit": _COPY_MEMORY})
    try:
        con.register("_export", pa.RecordBatchReader.from_batches(schema, batches()))
        cols = ", ".join(f'"{c}"' for c in schema.names)
        target = str(out).replace("'", "''")
        # Partition columns stay in the files too, so each file is a complete export on its own.
        con.execute(f"COPY (SELECT {cols} FROM _export) TO '{target}' (FORMAT parquet, COMPRESSION zstd, "
                    f"PARTITION_BY ({', '.join(partition_by)}), WRITE_PARTITION_COLUMNS true, "
                    f"OVERWRITE_OR_IGNORE true, ROW_GROUP_SIZE {max(1, chunk)})")
    finally:
        con.close()
    return written


def _records_batches(store: Store, records: list[dict[str, Any]], with_results: bool) -> list[Any]:
    if with_results:
        res = _results_by_trace(store, [r["id"] for r in records])
        for r in records:
            r["results"] = res.get(r["id"], {})
    return list(_parquet_table(records, with_results).to_batches())


def _parquet_schema(with_results: bool) -> Any:
    import pyarrow as pa

    fields = [
        ("id", pa.string()),
        ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("reasoning", pa.string()),
        ("answer", pa.string()),
        ("reasoning_closed", pa.bool_()),
        ("steps", pa.list_(pa.struct([("index", pa.int32()), ("start", pa.int32()), ("end", pa.int32()),
                                      ("kind", pa.string()), ("text", pa.string())]))),
        ("actions", pa.string()),
        ("model", pa.string()),
        ("strategy", pa.string()),
        ("group_id", pa.string()),
        ("sample_index", pa.int32()),
        ("source", pa.struct([("file", pa.string()), ("line", pa.int64()), ("format", pa.string())])),
        ("metadata", pa.string()),
        # Spans as structs (offsets need no JSON); payload (opaque, possibly long) as text, null when none.
        ("reasoning_provenance", pa.list_(pa.struct([("kind", pa.string()), ("start", pa.int32()),
                                                     ("end", pa.int32()), ("payload", pa.string())]))),
    ]
    if with_results:
        fields.append(("results", pa.string()))
    return pa.schema(fields)

