"""File-level readers: stream trace rows out of files of every supported format."""

from __future__ import annotations

import csv
import gzip
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import ijson
import orjson

from cotscope.traces._errors import RecordError, TraceFileError
from cotscope.traces._formats import (
    RECORD_READERS,
    Ctx,
    RecordFormatError,
    conversation_rows,
    read_record,
)
from cotscope.traces._rows import Row, row_to_trace
from cotscope.traces._safechain import safechain_context, safechain_rows
from cotscope.traces._split import DEFAULT_TAGS, TagPair
from cotscope.traces._trace import Trace

#: File formats; record formats (``pair``, ``chat``, ...) may also be named to force one per line.
FILE_FORMATS = ("auto", "jsonl", "json", "csv", "safechain", "inspect", "parquet")
FORMATS = FILE_FORMATS + tuple(RECORD_READERS)
MAX_KEPT_ERRORS = 10_000


@dataclass
class ReadStats:
    """Counts of one read. ``records == accepted + rejected`` always holds.

    ``lost`` counts, per ``(format, field, reason)``, the accepted records of which the reader did not keep
    that source field (each reader knows which keys it reads; see :meth:`cotscope.traces._formats.Ctx.lose`).
    A rejected record is counted in ``rejected`` only.
    """

    records: int = 0
    accepted: int = 0
    rejected: int = 0
    traces: int = 0
    errors: list[RecordError] = field(default_factory=list)
    errors_dropped: int = 0
    lost: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def lost_records(self) -> list[dict[str, Any]]:
        """``lost`` as records ``{format, field, reason, records}``, most frequent first."""
        return [{"format": f, "field": k, "reason": r, "records": n}
                for (f, k, r), n in sorted(self.lost.items(), key=lambda kv: (-kv[1], kv[0]))]

    def reject(self, err: RecordError) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_KEPT_ERRORS:
            self.errors.append(err)
        else:
            self.errors_dropped += 1



def _open_binary(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb", buffering=1 << 20)


def _sniff_json(path: Path) -> str:
    """Tell a SafeChain output file, an Inspect log, a JSON array and a single record apart."""
    with _open_binary(path) as f:
        head = f.read(1 << 16).lstrip()
    if not head:
        raise TraceFileError(f"{path}: file is empty")
    if head[:1] == b"[":
        return "json-array"
    if head[:1] != b"{":
        raise TraceFileError(f"{path}: not JSON: starts with {head[:20]!r}")
    keys: set[str] = set()
    try:
        with _open_binary(path) as f:
            for prefix, event, value in ijson.parse(f):
                if prefix == "" and event == "map_key":
                    keys.add(value)
                    if value in ("data", "samples"):
                        break
    except ijson.JSONError as e:
        if not keys:
            raise TraceFileError(f"{path}: invalid JSON: {e}") from None
    if "data" in keys and "messages" not in keys:
        return "safechain"
    if "eval" in keys or "samples" in keys:
        return "inspect-json"
    return "json-object"


#: What a sniffed JSON file is read as (arrays and plain objects are records).
_JSON_KIND_FORMAT = {"inspect-json": "inspect", "safechain": "safechain"}


def detect_file_format(path: Path) -> str:
    """The file format of ``path`` from its name and first bytes."""
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".eval"):
        return "inspect"
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith(".jsonl") or name.endswith(".ndjson"):
        return "jsonl"
    if name.endswith(".json"):
        return _JSON_KIND_FORMAT.get(_sniff_json(path), "json")
    with _open_binary(path) as f:
        head = f.read(1 << 16).lstrip()
    if head.startswith(b"PK"):
        return "inspect"
    if head.startswith(b"PAR1"):
        return "parquet"
    first = head.split(b"\n", 1)[0].strip()
    try:
        orjson.loads(first)
        return "jsonl"
    except orjson.JSONDecodeError:
        pass
    return _JSON_KIND_FORMAT.get(_sniff_json(path), "json")


class _Batcher:
    def __init__(self, stats: ReadStats, source: str) -> None:
        self.stats = stats
        self.source = source
        self.rows: list[Row] = []

    def take(self, loc: int, fn: Any, *args: Any) -> None:
        self.stats.records += 1
        # The record's Ctx collects the fields its reader did not keep; counted here for accepted records.
        ctx = next((a for a in args if isinstance(a, Ctx)), None)
        try:
            rows = fn(*args)
        except RecordFormatError as e:
            self.stats.reject(RecordError(str(e), self.source, loc))
            if ctx is not None:
                ctx.lost = {}
            return
        except (TypeError, ValueError, KeyError, AttributeError) as e:  # malformed beyond a known check
            self.stats.reject(RecordError(f"malformed record: {type(e).__name__}: {e}", self.source, loc))
            if ctx is not None:
                ctx.lost = {}
            return
        if ctx is not None and ctx.lost:
            fmt = str(rows[0].get("source_format") if rows else "?")
            lost = self.stats.lost
            for name, reason in ctx.lost.items():
                lost[(fmt, name, reason)] = lost.get((fmt, name, reason), 0) + 1
            ctx.lost = {}
        self.stats.accepted += 1
        self.stats.traces += len(rows)
        self.rows.extend(rows)

    def reject(self, loc: int, msg: str) -> None:
        self.stats.records += 1
        self.stats.reject(RecordError(msg, self.source, loc))

    def pop_full(self, batch: int) -> list[Row]:
        """The collected rows once there are ``batch`` of them (emptying the buffer), else nothing."""
        if len(self.rows) < batch:
            return []
        rows, self.rows = self.rows, []
        return rows


def _iter_jsonl(path: Path, src: str, fmt: str, ctx: Ctx, stats: ReadStats, batch: int) -> Iterator[list[Row]]:
    from cotscope.traces._records import iter_jsonl_lines

    b = _Batcher(stats, src)
    # The one JSONL line reader (shared with prompt and label files); a bad line is rejected, the rest proceeds.
    for lineno, rec in iter_jsonl_lines(path, src, lambda e: b.reject(e.line or 0, e.error)):
        ctx.line = lineno
        b.take(lineno, read_record, rec, ctx, fmt)
        if full := b.pop_full(batch):
            yield full
    if b.rows:
        yield b.rows


def _iter_json_items(path: Path, prefix: str) -> Iterator[tuple[int, Any]]:
    with _open_binary(path) as f:
        yield from enumerate(ijson.items(f, prefix, use_float=True), 1)


def _json_stream(path: Path, prefix: str, b: _Batcher, ctx: Ctx, batch: int, what: str, fn: Any,
                 *args: Any) -> Iterator[list[Row]]:
    """Feed every item under ``prefix`` of a (possibly huge) JSON file to ``fn(item, *args)``."""
    try:
        for idx, item in _iter_json_items(path, prefix):
            ctx.line = idx
            b.take(idx, fn, item, *args)
            if full := b.pop_full(batch):
                yield full
    except ijson.JSONError as e:
        b.reject(b.stats.records + 1, f"invalid JSON after {what} {b.stats.records}: {e}")


def _iter_json(path: Path, src: str, fmt: str, ctx: Ctx, stats: ReadStats, batch: int) -> Iterator[list[Row]]:
    b = _Batcher(stats, src)
    kind = _sniff_json(path)
    prefix = "item" if kind == "json-array" else ""
    rec_fmt = "auto" if fmt in ("json", "auto") else fmt
    yield from _json_stream(path, prefix, b, ctx, batch, "record", read_record, ctx, rec_fmt)
    if b.rows:
        yield b.rows


def _iter_csv(path: Path, src: str, fmt: str, ctx: Ctx, stats: ReadStats, batch: int) -> Iterator[list[Row]]:
    b = _Batcher(stats, src)
    opener: IO[str] = (
        gzip.open(path, "rt", newline="", encoding="utf-8")  # noqa: SIM115 (closed by the with below)
        if path.suffix == ".gz"
        else open(path, newline="", encoding="utf-8")  # noqa: SIM115
    )
    with opener as f:
        reader = csv.DictReader(f)
        try:
            for rec in reader:
                line = reader.line_num
                ctx.line = line
                if None in rec:
                    b.reject(line, f"row has {len(rec) - 1 + len(rec[None])} fields, header has {len(rec) - 1}")
                    continue
                b.take(line, read_record, {k: v for k, v in rec.items() if v is not None}, ctx, "pair")
                if full := b.pop_full(batch):
                    yield full
        except (csv.Error, UnicodeDecodeError) as e:
            b.reject(reader.line_num, f"unreadable CSV: {e}")
    if b.rows:
        yield b.rows


def _iter_safechain(path: Path, src: str, fmt: str, ctx: Ctx, stats: ReadStats, batch: int) -> Iterator[list[Row]]:
    meta: dict[str, Any] = {}
    with _open_binary(path) as f:
        for m in ijson.items(f, "meta_info", use_float=True):
            meta = m if isinstance(m, dict) else {"value": m}
            break
    safechain_context(meta, ctx)
    b = _Batcher(stats, src)
    yield from _json_stream(path, "data.item", b, ctx, batch, "data item", safechain_rows, meta, ctx)
    if b.rows:
        yield b.rows


#: Keys of an Inspect sample the reader reads; the rest (``events``, ``model_usage``, timings, ...) is reported
#: as not kept.
_INSPECT_SAMPLE_KEYS = frozenset(("id", "epoch", "input", "messages", "output", "scores", "metadata", "target",
                                  "error", "store", "choices"))


def _inspect_sample(sample: Any, header: dict[str, Any], ctx: Ctx) -> list[Row]:
    if not isinstance(sample, dict):
        raise RecordFormatError(f"sample must be an object, got {type(sample).__name__}")
    eval_info = header.get("eval") or {}
    messages = sample.get("messages")
    inp = sample.get("input")
    output = sample.get("output") or {}
    final = None
    if isinstance(output, dict):
        choices = output.get("choices") or []
        if choices and isinstance(choices[0], dict) and isinstance(choices[0].get("message"), dict):
            final = dict(choices[0]["message"])
            final.setdefault("role", "assistant")
            if choices[0].get("stop_reason") == "max_tokens":
                final["finish_reason"] = "length"
    if not isinstance(messages, list) or not messages:
        if isinstance(inp, str):
            messages = [{"role": "user", "content": inp}]
        elif isinstance(inp, list):
            messages = inp
        else:
            raise RecordFormatError("sample has neither 'messages' nor 'input'")
    if final is None and not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
        err = sample.get("error")
        if isinstance(err, dict) and err.get("message"):
            raise RecordFormatError(f"sample {sample.get('id')!r} failed in Inspect: {str(err['message'])[:300]}")
        raise RecordFormatError(f"sample {sample.get('id')!r} has no assistant output")
    model = (output.get("model") if isinstance(output, dict) else None) or eval_info.get("model")
    sid = sample.get("id")
    epoch = sample.get("epoch") or 1
    meta: dict[str, Any] = {"inspect_sample_id": sid, "epoch": epoch, "task": eval_info.get("task")}
    ctx.lose_keys(sample, _INSPECT_SAMPLE_KEYS, "inspect")
    if sample.get("scores"):
        meta["scores"] = sample["scores"]
    if isinstance(sample.get("metadata"), dict) and sample["metadata"]:
        meta["sample_metadata"] = sample["metadata"]
    if sample.get("target") not in (None, "", []):
        meta["target"] = sample["target"]
    rows = conversation_rows(
        messages, ctx, "inspect", final=final, model=model, strategy=inspect_strategy(sample),
        group_id=f"{eval_info.get('task_id') or eval_info.get('task') or 'inspect'}:{sid}",
        sample_index=int(epoch) - 1 if isinstance(epoch, int) else 0, metadata=meta,
    )
    store = sample.get("store")
    if isinstance(store, dict) and isinstance(store.get(INSPECT_AGENT_KEY), dict):
        for row in rows:
            row["actions"] = agent_actions(row.get("actions") or [], messages)
    return rows


#: The key of an Inspect sample's ``store`` where cotscope's Inspect solvers record the decoding strategy
#: (``cotscope.integrations.inspect``); a sample without it has no strategy, as before.
INSPECT_STRATEGY_KEY = "cotscope:strategy"


#: The key of an Inspect sample's ``store`` where cotscope's CUAHarm solver records the episode's outcome
#: (``cotscope/cuaharm``): the sample's tool calls are then the agent loop's actions (:func:`agent_actions`).
INSPECT_AGENT_KEY = "cotscope:agent"

_CONTROL_CODES = ("DONE", "FAIL", "WAIT")
_SHELL_EXTRA = ("exit_code", "timed_out", "duration_s")


def agent_actions(actions: list[dict[str, Any]], messages: list[Any]) -> list[dict[str, Any]]:
    """The tool-call actions of an Inspect sample that cotscope's agent solver wrote, as the agent loop stores them
    (``cotscope agent run``): ``bash(command=...)`` calls become ``shell`` actions with the exit code, timeout and
    duration their tool message's ``metadata`` holds, ``DONE``/``FAIL``/``WAIT`` calls without arguments become
    ``control`` actions; any other call is kept as it is."""
    extra = {str(m.get("tool_call_id")): m["metadata"] for m in messages
             if isinstance(m, dict) and m.get("role") == "tool" and isinstance(m.get("metadata"), dict)}
    out: list[dict[str, Any]] = []
    for a in actions:
        name, args = a.get("name"), a.get("arguments")
        if name in _CONTROL_CODES and not args:
            out.append({"kind": "control", "name": name, "step": a.get("step")})
        elif name == "bash" and isinstance(args, dict) and isinstance(args.get("command"), str):
            more = extra.get(str(a.get("id")), {})
            out.append({"kind": "shell", "name": "bash", "arguments": {"command": args["command"]},
                        "output": a.get("output"), "step": a.get("step"),
                        **{k: more[k] for k in _SHELL_EXTRA if k in more}})
        else:
            out.append(a)
    return out


def inspect_strategy(sample: dict[str, Any]) -> str | None:
    """The strategy a cotscope solver recorded in an Inspect sample's ``store``, or ``None``."""
    store = sample.get("store")
    value = store.get(INSPECT_STRATEGY_KEY) if isinstance(store, dict) else None
    return value if isinstance(value, str) and value else None


def inspect_sample_rows(sample: dict[str, Any], eval_info: dict[str, Any]) -> list[Row]:
    """The trace rows of one Inspect sample in its JSON form: a sample of a log, or a running sample's state
    dumped the same way (cotscope's Inspect scorers build their trace with this, so a score and the trace that
    ``cotscope ingest`` makes of the logged sample come from one reading).

    Args:
        sample: the sample as a log stores it (``id``, ``epoch``, ``input``, ``messages``, ``output``,
            ``metadata``, ``store``, ``scores``, ``target``).
        eval_info: the log's ``eval`` header (``task``, ``task_id``, ``model``).

    Raises:
        RecordFormatError: the sample holds no response to read (the message says why).
    """
    return _inspect_sample(sample, {"eval": eval_info}, Ctx())


_ZIP_ZSTD = 93  # Inspect AI writes .eval archives with Zstandard members, which zipfile cannot read


def _zip_member(z: zipfile.ZipFile, name: str) -> bytes:
    """Read one member of a zip archive, including Zstandard-compressed ones."""
    info = z.getinfo(name)
    if info.compress_type != _ZIP_ZSTD:
        return z.read(name)
    import struct

    import zstandard

    fp = z.fp
    if fp is None:
        raise zipfile.BadZipFile("archive is closed")
    fp.seek(info.header_offset)
    header = fp.read(30)
    if header[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"{name}: bad local file header")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    fp.seek(info.header_offset + 30 + name_len + extra_len)
    data = fp.read(info.compress_size)
    return zstandard.ZstdDecompressor().decompress(data, max_output_size=max(info.file_size, 1))


def _loads_inspect(data: bytes) -> Any:
    """A JSON member of an Inspect log. Inspect writes ``NaN`` for a score or metric without a value (a scorer
    that abstained), which JSON proper and orjson refuse; the standard library reads it as a float NaN.

    Raises:
        ValueError: the member is not JSON even so (``json.JSONDecodeError``).
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        import json

        return json.loads(data)


def _iter_inspect(path: Path, src: str, fmt: str, ctx: Ctx, stats: ReadStats, batch: int) -> Iterator[list[Row]]:
    b = _Batcher(stats, src)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            header: dict[str, Any] = {}
            for hname in ("header.json", "_journal/start.json"):
                if hname in names:
                    header = _loads_inspect(_zip_member(z, hname))
                    break
            sample_names = sorted(n for n in names if n.startswith("samples/") and n.endswith(".json"))
            for idx, name in enumerate(sample_names, 1):
                ctx.line = idx
                try:
                    sample = _loads_inspect(_zip_member(z, name))
                except (ValueError, zipfile.BadZipFile) as e:
                    b.reject(idx, f"{name}: invalid JSON: {e}")
                    continue
                b.take(idx, _inspect_sample, sample, header, ctx)
                if full := b.pop_full(batch):
                    yield full
    else:
        header = {}
        with _open_binary(path) as f:
            for ev in ijson.items(f, "eval", use_float=True):
                header = {"eval": ev}
                break
        yield from _json_stream(path, "samples.item", b, ctx, batch, "sample", _inspect_sample, header, ctx)
    if b.rows:
        yield b.rows


#: Export columns written as JSON text (Parquet needs one schema for every row).
_PARQUET_JSON_COLS = ("metadata", "actions")
_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


def hive_values(path: Path) -> dict[str, str | None]:
    """The ``key=value`` folders of a Hive-partitioned dataset's file path (values URL-decoded; the null
    partition as ``None``)."""
    from urllib.parse import unquote

    out: dict[str, str | None] = {}
    for part in path.parent.parts:
        key, sep, value = part.partition("=")
        if sep and key:
            value = unquote(value)
            out[unquote(key)] = None if value == _HIVE_NULL else value
    return out


def _iter_parquet(path: Path, src: str, fmt: str, ctx: Ctx, stats: ReadStats, batch: int) -> Iterator[list[Row]]:
    """Parquet files, such as ``cotscope export --format parquet`` writes, one record per row.

    Rows are read a batch at a time and go through the record readers as JSON records do, so an exported trace
    comes back with its id. JSON text columns of the export are decoded; a Hive partition value in the path
    fills a column the file lacks; exported ``results`` are judge output, not trace content, and are dropped.
    """
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)  # a file that is not Parquet raises an Arrow error, reported by the caller
    hive = {k: v for k, v in hive_values(path).items() if k not in pf.schema_arrow.names}
    b = _Batcher(stats, src)
    line = 0
    loads = orjson.loads
    for rb in pf.iter_batches(batch_size=max(1, min(batch, 4096))):
        for rec in rb.to_pylist():
            line += 1
            ctx.line = line
            if rec.pop("results", None) is not None:
                ctx.lose("results", "judge and monitor results are not trace content (ingest keeps traces)")
            rec.update(hive)
            try:
                for c in _PARQUET_JSON_COLS:
                    v = rec.get(c)
                    if isinstance(v, str) and v[:1] in ("{", "["):
                        rec[c] = loads(v)
            except orjson.JSONDecodeError as e:
                b.reject(line, f"column {c!r} is not valid JSON: {e}")
                continue
            b.take(line, read_record, rec, ctx, fmt)
            if full := b.pop_full(batch):
                yield full
    if b.rows:
        yield b.rows


def dataset_files(path: str | Path) -> list[Path]:
    """The files to read for ``path``: the file itself, or every ``.parquet`` file under a folder (a Parquet
    dataset such as a partitioned export), in sorted order.

    Raises:
        TraceFileError: a folder without Parquet files.
    """
    p = Path(path)
    if not p.is_dir():
        return [p]
    files = sorted(f for f in p.rglob("*.parquet") if f.is_file())
    if not files:
        raise TraceFileError(f"{p}: folder holds no .parquet files (give trace files, or a Parquet dataset folder)")
    return files


_FILE_READERS = {
    "parquet": _iter_parquet,
    "jsonl": _iter_jsonl,
    "json": _iter_json,
    "csv": _iter_csv,
    "safechain": _iter_safechain,
    "inspect": _iter_inspect,
}


def iter_row_batches(
    path: str | Path,
    *,
    format: str = "auto",
    stats: ReadStats | None = None,
    batch_size: int = 5000,
    tags: Sequence[TagPair] = DEFAULT_TAGS,
    model: str | None = None,
    strategy: str | None = None,
) -> Iterator[list[Row]]:
    """Stream batches of trace rows from one file; bad records go to ``stats`` with file and line.

    Raises:
        TraceFileError: the file is missing, unreadable, or not of a known format.
    """
    p = Path(path)
    if not p.exists():
        raise TraceFileError(f"{p}: no such file")
    if not p.is_file():
        raise TraceFileError(f"{p}: not a regular file")
    try:
        with open(p, "rb") as f:
            f.read(1)
    except OSError as e:
        raise TraceFileError(f"{p}: cannot read: {e.strerror or e}") from None
    if format not in FORMATS:
        raise TraceFileError(f"unknown format {format!r}: expected one of {', '.join(FORMATS)}")
    stats = stats if stats is not None else ReadStats()
    file_fmt = format
    if format == "auto":
        file_fmt = detect_file_format(p)
    elif format in RECORD_READERS:
        file_fmt = "jsonl"
    ctx = Ctx(file=str(p), tags=tags, model=model, strategy=strategy)
    rec_fmt = format if format in RECORD_READERS else "auto"
    try:
        yield from _FILE_READERS[file_fmt](p, str(p), rec_fmt, ctx, stats, batch_size)
    except (OSError, EOFError, zipfile.BadZipFile, gzip.BadGzipFile) as e:
        raise TraceFileError(f"{p}: cannot read: {e}") from None
    except _arrow_errors() as e:
        raise TraceFileError(f"{p}: cannot read Parquet: {e}") from None
    except UnicodeDecodeError as e:
        raise TraceFileError(f"{p}: not UTF-8 text: {e}") from None


def _arrow_errors() -> tuple[type[BaseException], ...]:
    """pyarrow's error base, when pyarrow is imported (only the Parquet reader imports it)."""
    import sys

    pa = sys.modules.get("pyarrow")
    return (pa.ArrowException,) if pa is not None else ()


def read_traces(
    path: str | Path,
    *,
    format: str = "auto",
    errors: list[RecordError] | None = None,
    tags: Sequence[TagPair] = DEFAULT_TAGS,
    model: str | None = None,
    strategy: str | None = None,
) -> Iterator[Trace]:
    """Stream :class:`Trace` objects out of a file of any supported format.

    Args:
        path: the file.
        format: ``auto`` or one of :data:`FORMATS`.
        errors: where bad records are collected; when ``None`` the first bad record raises.
        tags: reasoning delimiter pairs used to split raw responses.
        model: model name for records that do not name one.
        strategy: strategy name for records that do not name one.

    Raises:
        RecordError: a record is malformed and ``errors`` is ``None``.
        TraceFileError: the file is missing, unreadable, or of an unknown format.
    """
    stats = ReadStats()
    seen = 0
    for batch in iter_row_batches(path, format=format, stats=stats, tags=tags, model=model,
                                  strategy=strategy, batch_size=256):
        if len(stats.errors) > seen:
            if errors is None:
                raise stats.errors[seen]
            errors.extend(stats.errors[seen:])
            seen = len(stats.errors)
        for row in batch:
            yield row_to_trace(row)
    if len(stats.errors) > seen:
        if errors is None:
            raise stats.errors[seen]
        errors.extend(stats.errors[seen:])



