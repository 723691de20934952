"""The one reader of plain record files (JSONL, JSON, CSV; optionally ``.gz`` or ``.zst`` compressed).

Prompt files, benchmark data files and labelled files are all lists of records. They are read here, so a
bad record is treated the same everywhere: it is reported with file and line (a :class:`RecordError`) and
the rest of the file proceeds. Where a record is depends on the format:

- JSONL: its line number (blank lines are skipped);
- JSON: its index in the list, from 1;
- CSV: the line on which the row ends (the header is line 1).

Trace files go through :func:`cotscope.traces.read_traces`, which turns each record into traces; this
module only yields the raw records.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import ijson
import orjson

from cotscope.traces._errors import RecordError, TraceFileError

__all__ = ["iter_records", "read_record_file"]

#: Keys under which a JSON object holds its list of records (``{"data": [...]}``), tried in order.
_LIST_KEYS = ("data", "records", "prompts", "items", "rows", "samples")


def _open(path: Path) -> IO[bytes]:
    """The decompressed bytes of ``path`` (``.gz`` as the trace readers do, ``.zst`` streamed)."""
    if path.suffix == ".zst":
        import zstandard

        raw = open(path, "rb")  # noqa: SIM115 (owned and closed by the stream reader)
        # The decompressing reader has no readline; buffering it gives line iteration for JSONL and CSV.
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, closefd=True), 1 << 20)
    # Imported here: the trace readers import the prompt fields, which import this module.
    from cotscope.traces._read import _open_binary

    return _open_binary(path)


def _kind(path: Path) -> str:
    """``jsonl``, ``json`` or ``csv``, from the name without its compression suffix, else from the content."""
    name = path.name.lower().removesuffix(".gz").removesuffix(".zst")
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if name.endswith(".json"):
        return "json"
    with _open(path) as f:
        head = f.read(1 << 16).lstrip()
    if head[:1] == b"[":
        return "json"
    first = head.split(b"\n", 1)[0].strip()
    try:
        orjson.loads(first)
        return "jsonl"
    except orjson.JSONDecodeError:
        pass
    return "json" if head[:1] == b"{" else "jsonl"


def _records_of_object(obj: dict[str, Any]) -> list[Any]:
    """The records held by a top-level JSON object: a list under a known key, the object's only list, or itself.

    An object whose only list is ``messages`` is one chat record, not a list of records.
    """
    for k in _LIST_KEYS:
        if isinstance(obj.get(k), list):
            return list(obj[k])
    lists = [k for k, v in obj.items() if isinstance(v, list)]
    if len(lists) == 1 and lists[0] != "messages":
        return list(obj[lists[0]])
    return [obj]


def iter_jsonl_lines(path: Path, src: str, report: Callable[[RecordError], None]) -> Iterator[tuple[int, Any]]:
    """``(line number, record)`` of each non-blank JSONL line; a line that is not JSON goes to ``report``."""
    loads = orjson.loads
    with _open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = loads(line)
            except orjson.JSONDecodeError as e:
                report(RecordError(f"invalid JSON: {e}", src, lineno))
                continue
            yield lineno, rec


def _iter_json(path: Path, src: str, report: _Report) -> Iterator[tuple[int, Any]]:
    with _open(path) as f:
        head = f.read(1 << 16).lstrip()
    if not head:
        raise TraceFileError(f"{path}: file is empty")
    if head[:1] != b"[":
        # An object: read whole (such files are small) to find where its records are.
        with _open(path) as f:
            data = f.read()
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError as e:
            raise TraceFileError(f"{path}: invalid JSON: {e}") from None
        yield from enumerate(_records_of_object(obj) if isinstance(obj, dict) else [obj], 1)
        return
    # A list is streamed, so a huge file costs no memory and the items before a syntax error are kept.
    n = 0
    try:
        with _open(path) as f:
            for n, item in enumerate(ijson.items(f, "item", use_float=True), 1):
                yield n, item
    except ijson.JSONError as e:
        report(RecordError(f"invalid JSON after item {n}: {e}", src, n + 1))


def _iter_csv(path: Path, src: str, report: _Report) -> Iterator[tuple[int, Any]]:
    with _open(path) as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        try:
            for row in reader:
                if None in row:
                    extra = row[None]
                    report(RecordError(f"row has {len(row) - 1 + len(extra)} fields, header has {len(row) - 1}",
                                       src, reader.line_num))
                    continue
                yield reader.line_num, row
        except (csv.Error, UnicodeDecodeError) as e:
            # The reader cannot resynchronise after a broken quote or bad bytes: report where it stopped.
            report(RecordError(f"unreadable CSV: {e}", src, reader.line_num))


class _Report:
    """Where bad records go: a list, or (with none) the first one is raised."""

    def __init__(self, errors: list[RecordError] | None) -> None:
        self.errors = errors

    def __call__(self, err: RecordError) -> None:
        if self.errors is None:
            raise err
        self.errors.append(err)


_READERS = {"jsonl": iter_jsonl_lines, "json": _iter_json, "csv": _iter_csv}


def iter_records(path: str | Path, errors: list[RecordError] | None = None) -> Iterator[tuple[int, Any]]:
    """Stream ``(line, record)`` pairs out of a JSONL, JSON or CSV file (``.gz``/``.zst`` compressed or not).

    The format comes from the file name (``.jsonl``/``.ndjson``, ``.json``, ``.csv``), else from the first
    bytes. A JSON file is a list of records, or an object holding one (under ``data``, ``records``,
    ``prompts``, ``items``, ``rows`` or ``samples``, or its only list), or a single record. CSV rows are
    dicts of strings. ``line`` is the JSONL line, the JSON list index (from 1) or the CSV line.

    Args:
        path: the file.
        errors: where bad records (unparseable lines, CSV rows with too many fields) are collected with
            file and line while the rest is read; when ``None`` the first bad record raises.

    Raises:
        TraceFileError: the file is missing, unreadable, empty JSON, or a JSON object that does not parse.
        RecordError: a record is bad and ``errors`` is ``None``.
    """
    p = Path(path)
    if not p.is_file():
        raise TraceFileError(f"{p}: no such file" if not p.exists() else f"{p}: not a regular file")
    report = _Report(errors)
    try:
        yield from _READERS[_kind(p)](p, str(p), report)
    except TraceFileError:
        raise
    except UnicodeDecodeError as e:
        raise TraceFileError(f"{p}: not UTF-8 text: {e}") from None
    except (OSError, EOFError) as e:
        raise TraceFileError(f"{p}: cannot read: {e}") from None

def read_record_file(path: str | Path) -> tuple[list[tuple[int, Any]], list[RecordError]]:
    """Every ``(line, record)`` of a file plus its bad records, each with file and line (see :func:`iter_records`).

    Raises:
        TraceFileError: the file cannot be read at all.
    """
    errors: list[RecordError] = []
    records = list(iter_records(path, errors))
    return records, errors
