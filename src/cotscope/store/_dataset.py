"""Parquet trace datasets read in place: where they are, and the SQL that maps them onto the traces table.

A dataset is what ``cotscope export --format parquet`` writes (one file, or a Hive-partitioned folder such as
``model=A/strategy=normal/data_0.parquet``), or any Parquet files with the same columns. It is read through
DuckDB's ``read_parquet``, so it may be a local folder, a file, a glob, a ``file://`` URL or an object-store
URL (``s3://``, ``gs://``, ``r2://``, ``az://``, ``https://``, ``hf://``) that DuckDB's ``httpfs`` extension
reads. :meth:`cotscope.store.Store.attach_traces` turns it into a relation with the columns of the traces
table, so every read of the store (listing, judging, metrics, export) sees the dataset's traces.

The mapping is the inverse of the Parquet export: ``prompt`` (a list of ``{role, content}``) and ``steps``
(a list of ``{start, end, kind, ...}``) become the JSON the table stores, ``actions`` and ``metadata`` (JSON
text in the export) are read as JSON, ``source`` (a struct) becomes ``source_file``/``source_line``/
``source_format``. Ids are the dataset's own (the export writes every trace's id), so results stored for an
attached trace carry the id it has when ingested. Columns a dataset lacks read as NULL, except ``id`` and
``answer``, without which a row is not a trace cotscope can read in place (ingest such a file instead: the
readers derive ids and split raw responses).
"""

from __future__ import annotations

import glob as _glob
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import duckdb

from cotscope.traces import TraceFileError

__all__ = ["REMOTE_SCHEMES", "dataset_patterns", "trace_relation"]

#: URL schemes DuckDB reads through its ``httpfs`` extension.
REMOTE_SCHEMES = ("s3", "s3a", "s3n", "gs", "gcs", "r2", "az", "azure", "abfss", "http", "https", "hf")

_GLOB_CHARS = ("*", "?", "[")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+")  # two characters at least: C:// is a drive, not a scheme


def _scheme(source: str) -> str:
    """The URL scheme of ``source`` in lower case, or ``""`` for a local path (a Windows drive is not a scheme)."""
    head, sep, _ = source.partition("://")
    return head.lower() if sep and _SCHEME.fullmatch(head) else ""


def _has_glob(text: str) -> bool:
    return any(c in text for c in _GLOB_CHARS)


def dataset_patterns(source: str | Path | Sequence[str | Path]) -> list[str]:
    """The ``read_parquet`` patterns of one or more datasets, checked where that costs no network.

    A local folder becomes ``folder/**/*.parquet`` (every file of a Hive-partitioned export); a local file or
    glob is kept and must match something; a ``file://`` URL is read as the local path it names. A remote URL
    is kept as it is, with ``/**/*.parquet`` added when it names neither a ``.parquet`` file nor a glob
    (an object-store prefix is a folder; ``http(s)://`` cannot be listed, so it must name files).

    Raises:
        TraceFileError: a local path that does not exist, a folder or glob without Parquet files, or an empty
            list; the message names the source.
    """
    items = [source] if isinstance(source, str | Path) else list(source)
    if not items:
        raise TraceFileError("no trace dataset given")
    out: list[str] = []
    for item in items:
        text = str(item)
        scheme = _scheme(text)
        if scheme == "file":
            parsed = urlparse(text)
            text, scheme = unquote(parsed.netloc + parsed.path), ""
        if scheme:
            if not text.lower().endswith(".parquet") and not _has_glob(text) and scheme not in ("http", "https"):
                text = text.rstrip("/") + "/**/*.parquet"
            out.append(text)
            continue
        p = Path(text).expanduser()
        if p.is_dir():
            pattern = str(p / "**" / "*.parquet")
            if not _glob.glob(pattern, recursive=True):
                raise TraceFileError(f"{item}: trace dataset folder holds no .parquet files")
            out.append(pattern)
        elif p.is_file():
            out.append(str(p))
        elif _has_glob(text):
            if not _glob.glob(str(p), recursive=True):
                raise TraceFileError(f"{item}: no files match this trace dataset pattern")
            out.append(str(p))
        else:
            raise TraceFileError(f"{item}: no such trace dataset (a Parquet file, a folder of them, a glob or a URL)")
    return out


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _read_sql(patterns: Sequence[str], union_by_name: bool) -> str:
    # hive_types_autocast is off so that a partition such as strategy=123 stays the text it was written as.
    files = "[" + ", ".join(_sql_str(p) for p in patterns) + "]"
    return (f"read_parquet({files}, hive_partitioning = true, hive_types_autocast = false, "
            f"union_by_name = {'true' if union_by_name else 'false'})")


def _load_httpfs(con: duckdb.DuckDBPyConnection, patterns: Sequence[str], shown: str) -> None:
    """Load DuckDB's ``httpfs`` for remote patterns, or say clearly that it is missing.

    It is loaded explicitly, never installed here: DuckDB's own auto-install would download it at query time,
    which on an offline machine fails late with a message about the extension rather than the dataset.
    """
    remote = [p for p in patterns if _scheme(p) in REMOTE_SCHEMES]
    if not remote:
        return
    try:
        con.execute("LOAD httpfs")
    except duckdb.Error as e:
        raise TraceFileError(
            f"{shown}: reading {_scheme(remote[0])}:// datasets needs DuckDB's httpfs extension, which is not "
            f"installed (run `INSTALL httpfs` in DuckDB once, on a machine with network access): "
            f"{str(e).splitlines()[0]}") from None


def _type_id(t: Any) -> str:
    return str(getattr(t, "id", "")).lower()


def _children(t: Any) -> dict[str, Any]:
    try:
        return {str(name): child for name, child in t.children}
    except (duckdb.Error, AttributeError, TypeError, ValueError):  # not a nested type (or no type at all)
        return {}


def _json_expr(name: str, t: Any) -> str:
    """A column as JSON: nested values through ``to_json``, JSON text as it is."""
    col = f'"{name}"'
    if _type_id(t) in ("varchar", "json"):
        return f"CAST({col} AS JSON)"
    return f"to_json({col})"


def _columns(con: duckdb.DuckDBPyConnection, read: str) -> dict[str, Any]:
    rel = con.sql(f"SELECT * FROM {read}")
    return {str(n).lower(): t for n, t in zip(rel.columns, rel.types, strict=True)}


def _provenance_expr(t: Any) -> str:
    """``reasoning_provenance`` as the JSON the table stores; a dataset without it (written before provenance
    existed) reads as NULL: unknown."""
    if t is None:
        return "NULL::JSON"
    if _type_id(t) in ("varchar", "json"):
        return 'CAST("reasoning_provenance" AS JSON)'
    # The export's list of structs: to_json writes a null payload as null, which the readers treat as none.
    return 'to_json("reasoning_provenance")'


def _select(cols: dict[str, Any]) -> str:
    """The SELECT list mapping a dataset's columns onto the traces table's (see the module docstring)."""

    def text(name: str) -> str:
        return f'CAST("{name}" AS VARCHAR)' if name in cols else "NULL::VARCHAR"

    out = {"id": text("id")}
    if "prompt" not in cols:
        out["prompt"] = "'[]'::JSON"
    elif _type_id(cols["prompt"]) in ("varchar", "json"):
        # A plain-text prompt is one user message, as the record readers read it.
        out["prompt"] = ("CASE WHEN json_valid(\"prompt\") AND starts_with(ltrim(\"prompt\"), '[') THEN "
                         "CAST(\"prompt\" AS JSON) WHEN \"prompt\" IS NULL THEN '[]'::JSON ELSE "
                         "json_array(json_object('role', 'user', 'content', \"prompt\")) END")
    else:
        out["prompt"] = _json_expr("prompt", cols["prompt"])
    out["reasoning"] = f"coalesce({text('reasoning')}, '')"
    out["answer"] = f"coalesce({text('answer')}, '')"
    out["reasoning_closed"] = ('coalesce(CAST("reasoning_closed" AS BOOLEAN), true)' if "reasoning_closed" in cols
                               else "true")
    steps = cols.get("steps")
    step_fields = _children(_children(steps).get("child")) if steps is not None and _type_id(steps) == "list" else {}
    if "start" in step_fields and "end" in step_fields:
        kind = "coalesce(s.kind, 'paragraph')" if "kind" in step_fields else "'paragraph'"
        # The table stores steps as [start, end, kind] triples; the export writes them as structs with text.
        out["steps"] = f'to_json(list_transform("steps", lambda s: json_array(s."start", s."end", {kind})))'
    else:
        out["steps"] = "NULL::JSON"  # derived from the reasoning on read, as for an ingested trace
    for name in ("actions", "metadata"):
        if name not in cols:
            out[name] = "'[]'::JSON" if name == "actions" else "'{}'::JSON"
        elif _type_id(cols[name]) in ("varchar", "json") and name == "metadata":
            # The export writes an object as JSON text; other text is kept the way the readers keep it.
            out[name] = ('CASE WHEN json_valid("metadata") AND json_type(CAST("metadata" AS JSON)) = \'OBJECT\' '
                         'THEN CAST("metadata" AS JSON) WHEN "metadata" IS NULL THEN \'{}\'::JSON '
                         'ELSE json_object(\'metadata\', "metadata") END')
        else:
            out[name] = f"coalesce({_json_expr(name, cols[name])}, '{'[]' if name == 'actions' else '{}'}'::JSON)"
    for name in ("model", "strategy", "group_id"):
        out[name] = text(name)
    out["sample_index"] = 'coalesce(CAST("sample_index" AS INTEGER), 0)' if "sample_index" in cols else "0"
    src = _children(cols["source"]) if "source" in cols and _type_id(cols["source"]) == "struct" else {}
    for field, typ in (("file", "VARCHAR"), ("line", "BIGINT"), ("format", "VARCHAR")):
        if field in src:
            out[f"source_{field}"] = f'CAST("source"."{field}" AS {typ})'
        elif f"source_{field}" in cols:
            out[f"source_{field}"] = f'CAST("source_{field}" AS {typ})'
        else:
            out[f"source_{field}"] = f"NULL::{typ}"
    out["reasoning_provenance"] = _provenance_expr(cols.get("reasoning_provenance"))
    out["run_id"] = "NULL::VARCHAR"
    out["created_at"] = "NULL::TIMESTAMP"
    return ", ".join(f"{expr} AS {name}" for name, expr in out.items())


def trace_relation(
    con: duckdb.DuckDBPyConnection, source: str | Path | Sequence[str | Path], *, union_by_name: bool = True
) -> tuple[str, list[str]]:
    """The SQL relation (a parenthesised subquery) of a dataset's traces, and its ``read_parquet`` patterns.

    A subquery rather than a view: DuckDB's temporary views belong to one connection and the store reads
    through cursors (connections of their own), while a persistent view would write the dataset's location
    into the store file, which a read-only store cannot do and which would outlive the attachment.

    Args:
        con: the store's connection (the dataset's schema is read through it, which also checks access).
        source: a folder, file, glob or URL, or several.
        union_by_name: read files whose columns differ (by name); costs a footer read per file per query.

    Raises:
        TraceFileError: the dataset is missing or unreadable, needs ``httpfs``, or lacks ``id`` or ``answer``;
            the message names the dataset.
    """
    patterns = dataset_patterns(source)
    shown = ", ".join(str(s) for s in ([source] if isinstance(source, str | Path) else source))
    _load_httpfs(con, patterns, shown)
    read = _read_sql(patterns, union_by_name)
    try:
        cols = _columns(con, read)
    except duckdb.Error as e:
        raise TraceFileError(f"{shown}: cannot read trace dataset: {str(e).splitlines()[0]}") from None
    missing = [c for c in ("id", "answer") if c not in cols]
    if missing:
        raise TraceFileError(
            f"{shown}: trace dataset has no {' or '.join(repr(c) for c in missing)} column (columns: "
            f"{', '.join(sorted(cols))}); read in place needs cotscope's export schema: ingest the files instead")
    return f"(SELECT {_select(cols)} FROM {read} WHERE \"id\" IS NOT NULL)", patterns
