"""Export stored traces as JSONL or Parquet, one record per trace."""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from cotscope.traces._rows import row_spans

if TYPE_CHECKING:
    from cotscope.store._store import Store

EXPORT_FORMATS = ("jsonl", "parquet")


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
    **filters: Any,
) -> int:
    """Write every stored trace (matching ``filters``) to ``out`` (stdout when ``None``).

    Returns:
        The number of traces written.
    """
    if format not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {format!r}: expected one of {', '.join(EXPORT_FORMATS)}")
    if format == "parquet" and out is None:
        raise ValueError("parquet export needs --out FILE")
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
            import pyarrow as pa
            import pyarrow.parquet as pq

            for r in buf:
                r["metadata"] = orjson.dumps(r["metadata"]).decode()
                r["actions"] = orjson.dumps(r["actions"]).decode()
                r["prompt"] = [{"role": m.get("role"), "content": m.get("content")} for m in r["prompt"]]
                if with_results:
                    r["results"] = orjson.dumps(r["results"]).decode()
            table = pa.Table.from_pylist(buf, schema=_parquet_schema(with_results))
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
    ]
    if with_results:
        fields.append(("results", pa.string()))
    return pa.schema(fields)

