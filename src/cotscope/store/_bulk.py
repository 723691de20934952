"""The bulk ingest path: plain prompt/response JSONL parsed and split inside DuckDB.

Per-record Python costs tens of microseconds, which caps ingest far below the speed of just parsing
the file. For the most common shape (a JSON object with one string prompt and one string response
using ``<think>`` tags) this path hands whole chunks of lines to DuckDB, whose vectorised, multi-threaded
JSON functions parse, split and hash them. Every other line (other formats, odd types, bad JSON) goes
through the Python readers with its exact line number, so results and errors are the same as the slow
path: the test suite checks that the two paths store identical rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa

from cotscope.traces._errors import RecordError
from cotscope.traces._formats import (
    _KNOWN_PAIR_KEYS,
    PROMPT_KEYS,
    RESPONSE_KEYS,
    Ctx,
    RecordFormatError,
    read_record,
)
from cotscope.traces._read import ReadStats

if TYPE_CHECKING:
    from cotscope.store._store import Store

#: Python's ``str.strip()`` whitespace, so that SQL trims exactly what Python strips.
_WS = "".join(c for c in map(chr, range(0x110000)) if c.isspace())
_SCALAR_PROMPT_KEYS = PROMPT_KEYS
_STRING_RESPONSE_KEYS = tuple(k for k in RESPONSE_KEYS if k not in ("responses", "outputs"))
#: Keys that make a record need the Python reader.
_COMPLEX_KEYS = ("messages", "choices", "custom_id", "reasoning", "answer", "id", "group_id", "sample_index",
                 "steps", "actions", "metadata", "system", "responses", "outputs", "object", "type")
#: Substrings of a response that the SQL split does not handle (other tag pairs, answer tags).
_OTHER_TAGS = ("<thinking>", "</thinking>", "<reasoning>", "</reasoning>", "◁think▷", "◁/think▷", "<answer>")
CHUNK_BYTES = 32 << 20


def _lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _build_sql(default_model: str | None, default_strategy: str | None) -> str:
    # One JSON parse per line: json_extract with a list of paths returns every value we look at
    # (JSON text, 'null' for a JSON null, SQL NULL when the key is missing).
    def sqllist(items: tuple[str, ...]) -> str:
        return "[" + ", ".join(_lit(k) for k in items) + "]"

    pk, rk, ck = sqllist(_SCALAR_PROMPT_KEYS), sqllist(_STRING_RESPONSE_KEYS), sqllist(_COMPLEX_KEYS)
    fields = (*_SCALAR_PROMPT_KEYS, *_STRING_RESPONSE_KEYS, "model", "strategy")
    struct = _lit(orjson.dumps(dict.fromkeys(fields, "JSON")).decode())
    first_p = "coalesce(" + ", ".join(f"v.{k}" for k in _SCALAR_PROMPT_KEYS) + ")"
    first_r = "coalesce(" + ", ".join(f"v.{k}" for k in _STRING_RESPONSE_KEYS) + ")"
    # trim(s, chars) is slow on long strings; one RE2 pass over the class does the same job.
    ws_class = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in _WS) + "]"

    def strip(expr: str) -> str:
        return f"regexp_replace({expr}, {_lit('^' + ws_class + '+|' + ws_class + '+$')}, '', 'g')"

    null_patch = _lit(orjson.dumps(dict.fromkeys(sorted(_KNOWN_PAIR_KEYS))).decode())
    known = sqllist(tuple(sorted(_KNOWN_PAIR_KEYS)))
    other_tags = " OR ".join(f"contains(resp, {_lit(t)})" for t in _OTHER_TAGS)
    dm = _lit(default_model) if default_model else "NULL"
    ds = _lit(default_strategy) if default_strategy else "NULL"
    return f"""
WITH parsed AS (
    SELECT line, raw, try(json_keys(raw)) AS k FROM _lines
), shaped0 AS (
    SELECT line, raw, len(list_filter(k, lambda x: NOT list_contains({known}, x))) > 0 AS extra,
        json_transform(raw, {struct}) AS v
    FROM parsed
    WHERE k IS NOT NULL AND len(list_intersect(k, {ck})) = 0
      AND len(list_intersect(k, {pk})) = 1 AND len(list_intersect(k, {rk})) = 1
), shaped AS (
    SELECT line, raw, extra, {first_p} AS pj, {first_r} AS rj, v.model AS mj, v.strategy AS sj FROM shaped0
), simple AS (
    SELECT line, raw, extra,
        json_extract_string(pj, '$') AS prompt,
        json_extract_string(rj, '$') AS resp,
        coalesce(nullif(json_extract_string(mj, '$'), ''), {dm}) AS model,
        coalesce(nullif(json_extract_string(sj, '$'), ''), {ds}) AS strategy
    FROM shaped
    WHERE starts_with(pj, '"') AND starts_with(rj, '"')
      AND (mj IS NULL OR mj = 'null' OR starts_with(mj, '"'))
      AND (sj IS NULL OR sj = 'null' OR starts_with(sj, '"'))
), pos AS (
    SELECT *, strpos(resp, '<think>') AS i, strpos(resp, '</think>') AS j
    FROM simple WHERE NOT ({other_tags})
), split AS (
    SELECT line, raw, extra, prompt, model, strategy,
        CASE
            WHEN i = 0 AND j = 0 THEN ''
            WHEN j = 0 THEN {strip('substr(resp, i + 7)')}
            WHEN i > 0 AND i < j THEN {strip('substr(resp, i + 7, j - i - 7)')}
            ELSE {strip('substr(resp, 1, j - 1)')}
        END AS reasoning,
        CASE
            WHEN i = 0 AND j = 0 THEN {strip('resp')}
            WHEN j = 0 THEN ''
            ELSE {strip('substr(resp, j + 8)')}
        END AS answer,
        NOT (i > 0 AND j = 0) AS reasoning_closed,
        'user' || chr(29) || prompt AS pcanon
    FROM pos
), ided AS (
    SELECT *, 'g-' || md5(coalesce(model, '') || chr(31) || coalesce(strategy, '') || chr(31) || pcanon)[:24]
        AS group_id
    FROM split
)
SELECT
    md5(coalesce(model, '') || chr(31) || coalesce(strategy, '') || chr(31) || group_id || chr(31) || '0'
        || chr(31) || pcanon || chr(31) || reasoning || chr(31) || answer)[:24] AS id,
    json_array(json_object('role', 'user', 'content', prompt)) AS prompt,
    reasoning, answer, reasoning_closed,
    NULL::JSON AS steps, '[]'::JSON AS actions, model, strategy, group_id, 0 AS sample_index,
    $file AS source_file, line AS source_line, 'pair' AS source_format,
    CASE WHEN extra THEN json_merge_patch(raw, {null_patch}) ELSE '{{}}'::JSON END AS metadata, $run_id AS run_id
FROM ided
"""


def _line_chunks(path: Path) -> Iterator[tuple[list[int], list[bytes]]]:
    nums: list[int] = []
    lines: list[bytes] = []
    size = 0
    with open(path, "rb", buffering=1 << 22) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            nums.append(lineno)
            lines.append(line)
            size += len(line)
            if size >= CHUNK_BYTES:
                yield nums, lines
                nums, lines, size = [], [], 0
    if lines:
        yield nums, lines


def bulk_eligible(path: Path, format: str) -> bool:
    """Whether a file can take the bulk path: plain (uncompressed) JSONL read as ``auto`` or ``pair``."""
    name = path.name.lower()
    return format in ("auto", "jsonl", "pair") and (name.endswith(".jsonl") or name.endswith(".ndjson"))


def bulk_ingest_jsonl(
    store: Store,
    path: Path,
    stats: ReadStats,
    *,
    run_id: str,
    model: str | None = None,
    strategy: str | None = None,
    format: str = "auto",
    on_batch: Callable[[int, int], None] | None = None,
) -> int:
    """Ingest one JSONL file through DuckDB; returns how many traces were new."""
    con = store.con
    sql = _build_sql(model, strategy)
    from cotscope.store._store import _TRACE_COLS

    names = ", ".join(_TRACE_COLS)
    ctx = Ctx(file=str(path), model=model, strategy=strategy)
    rec_fmt = "pair" if format == "pair" else "auto"
    new = 0
    done_bytes = 0
    for nums, lines in _line_chunks(path):
        done_bytes += sum(map(len, lines))
        try:
            raw = pa.array(lines, pa.binary()).cast(pa.string())
        except pa.ArrowInvalid:
            raw = pa.array([b.decode("utf-8", "replace") for b in lines], pa.string())
        con.register("_lines", pa.table({"line": pa.array(nums, pa.int64()), "raw": raw}))
        try:
            con.execute(f"CREATE OR REPLACE TEMP TABLE _bulk AS {sql}", {"file": str(path), "run_id": run_id})
            res = con.execute(
                f"INSERT OR IGNORE INTO traces ({names}) SELECT DISTINCT ON (id) {names} FROM _bulk"
            ).fetchone()
            new += int(res[0]) if res else 0
            n_bulk_row = con.execute("SELECT count(*) FROM _bulk").fetchone()
            n_bulk = int(n_bulk_row[0]) if n_bulk_row else 0
            rest = con.execute(
                "SELECT line FROM _lines ANTI JOIN _bulk ON _lines.line = _bulk.source_line ORDER BY line"
            ).fetchall()
        finally:
            con.unregister("_lines")
        stats.records += n_bulk
        stats.accepted += n_bulk
        stats.traces += n_bulk
        if rest:
            index = {n: k for k, n in enumerate(nums)}
            rows: list[dict[str, Any]] = []
            for (lineno,) in rest:
                stats.records += 1
                line = lines[index[lineno]]
                try:
                    rec = orjson.loads(line)
                except orjson.JSONDecodeError as e:
                    stats.reject(RecordError(f"invalid JSON: {e}", str(path), lineno))
                    continue
                ctx.line = lineno
                try:
                    got = read_record(rec, ctx, rec_fmt)
                except RecordFormatError as e:
                    stats.reject(RecordError(str(e), str(path), lineno))
                    continue
                except (TypeError, ValueError, KeyError, AttributeError) as e:
                    stats.reject(RecordError(f"malformed record: {type(e).__name__}: {e}", str(path), lineno))
                    continue
                stats.accepted += 1
                stats.traces += len(got)
                rows.extend(got)
            new += store.add_rows(rows, run_id)
        if on_batch is not None:
            on_batch(stats.records, done_bytes)
    con.execute("DROP TABLE IF EXISTS _bulk")
    return new
