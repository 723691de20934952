"""Human labels of stored traces: who said what about which trace, and when.

A label is ``(trace, name, value, note, author, time)``: ``name`` says what is judged (``unsafe``, ``deceptive``,
``refused``, ...), ``value`` the person's answer (``true``/``false``, or a word such as ``unsure``). Labels are
appended, never updated: relabelling a trace adds a row, and the newest row of a ``(trace, name, author)`` is
that person's current label, so the history of a disagreement stays readable.

The labels of one name export as a labelled file (:func:`export_labelled`) that both ``cotscope validate``
(:func:`cotscope.traces.read_labelled`: trace fields plus a boolean ``label``) and the agreement benchmarks'
``labelled`` loader (``prompt`` text, ``response``, ``label``) read.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import duckdb
import orjson
from pydantic import BaseModel, Field, field_validator

from cotscope.store._export import export_record
from cotscope.store._schema import has_table
from cotscope.traces._rows import row_to_trace

if TYPE_CHECKING:
    from cotscope.store._store import Store

#: Values read as a positive (true) label when exporting, compared case-insensitively.
TRUE_VALUES = frozenset({"true", "yes", "1", "y", "positive"})
#: Values read as a negative (false) label when exporting.
FALSE_VALUES = frozenset({"false", "no", "0", "n", "negative"})

LABEL_COLS = ("id", "trace_id", "name", "value", "note", "author", "created_at")


class Label(BaseModel):
    """One human label of one trace.

    Attributes:
        trace_id: the labelled trace (its full id).
        name: what is judged, e.g. ``unsafe``; 1-100 characters, no surrounding blanks.
        value: the person's answer, e.g. ``true``, ``false`` or ``unsure``; 1-200 characters.
        note: free text, at most 10,000 characters.
        author: who labelled (``None`` when unknown).
        id: the row's id, assigned when stored.
        created_at: when it was stored (UTC), assigned when stored.
    """

    trace_id: str = Field(min_length=1, max_length=1000)
    name: str = Field(min_length=1, max_length=100)
    value: str = Field(min_length=1, max_length=200)
    note: str = Field(default="", max_length=10_000)
    author: str | None = Field(default=None, max_length=200)
    id: str = ""
    created_at: dt.datetime | None = None

    @field_validator("name", "value", mode="before")
    @classmethod
    def _strip(cls, v: Any) -> Any:
        return v.strip() if isinstance(v, str) else v


def label_bool(value: str) -> bool | None:
    """A label value as a boolean: ``True``/``False`` for the words of :data:`TRUE_VALUES`/:data:`FALSE_VALUES`,
    ``None`` for any other value (``unsure``, ``skip``, ...), which no binary metric can use."""
    v = value.strip().lower()
    return True if v in TRUE_VALUES else False if v in FALSE_VALUES else None


def insert_labels(con: duckdb.DuckDBPyConnection, labels: Sequence[Label]) -> list[Label]:
    """Append labels in one transaction; returns them with ``id`` and ``created_at`` set."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)  # the column is a naive TIMESTAMP, stored as UTC
    stored = [lab.model_copy(update={"id": uuid.uuid4().hex, "created_at": now}) for lab in labels]
    if not stored:
        return []
    con.execute("BEGIN TRANSACTION")
    try:
        con.executemany(
            f"INSERT INTO labels ({', '.join(LABEL_COLS)}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [[lab.id, lab.trace_id, lab.name, lab.value, lab.note, lab.author, lab.created_at] for lab in stored])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return stored


def _labels_sql(trace_ids: Iterable[str] | None, name: str | None, author: str | None,
                latest: bool) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if trace_ids is not None:
        clauses.append("trace_id IN (SELECT unnest(?::VARCHAR[]))")
        params.append(list(trace_ids))
    if name is not None:
        clauses.append("name = ?")
        params.append(name)
    if author is not None:
        clauses.append("author = ?")
        params.append(author)
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    sql = f"SELECT {', '.join(LABEL_COLS)} FROM labels{where}"
    if latest:
        # The newest row of each (trace, name, author) is that person's current label.
        sql += (" QUALIFY row_number() OVER (PARTITION BY trace_id, name, author ORDER BY created_at DESC,"
                " rowid DESC) = 1")
    # Labels stored together share their time; rowid (insertion order: labels are never deleted) breaks the tie.
    return sql + " ORDER BY created_at, rowid", params


def read_labels(con: duckdb.DuckDBPyConnection, *, trace_ids: Iterable[str] | None = None, name: str | None = None,
                author: str | None = None, latest: bool = False) -> list[Label]:
    """Stored labels, oldest first (none for a store older than the ``labels`` table).

    Args:
        trace_ids: only labels of these traces.
        name: only labels of this name.
        author: only labels by this author.
        latest: only the newest label of each ``(trace, name, author)``.
    """
    if not has_table(con, "labels"):
        return []
    sql, params = _labels_sql(trace_ids, name, author, latest)
    return [Label(**dict(zip(LABEL_COLS, r, strict=True))) for r in con.execute(sql, params).fetchall()]


@dataclass
class LabelExport:
    """What one export wrote. ``traces == written + not_boolean + missing``.

    Attributes:
        path: the file written.
        name: the label name exported.
        traces: labelled traces considered (one current label each).
        written: records written (``positives + negatives``).
        positives: records with ``label: true``.
        negatives: records with ``label: false``.
        not_boolean: traces left out because their current label is neither true nor false (``unsure``, ...).
        missing: traces left out because they are no longer in the store.
        skipped: ``{"trace_id", "value"}`` of the traces left out as not boolean.
    """

    path: str
    name: str
    traces: int = 0
    written: int = 0
    positives: int = 0
    negatives: int = 0
    not_boolean: int = 0
    missing: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The export as a JSON object."""
        return {"path": self.path, "name": self.name, "traces": self.traces, "written": self.written,
                "positives": self.positives, "negatives": self.negatives, "not_boolean": self.not_boolean,
                "missing": self.missing, "skipped": self.skipped}


def labelled_record(row: dict[str, Any], label: Label, value: bool) -> dict[str, Any]:
    """The labelled-file record of one stored trace row and its current label.

    The trace's export fields (``cotscope export``), with ``prompt`` as the prompt's text and the full
    message list under ``messages`` (the agreement loader reads ``prompt`` as text; ``cotscope validate``
    accepts either), ``response`` (the answer, for the agreement loader), the boolean ``label``, and the
    label's provenance under ``human_label``.
    """
    rec = export_record(row)
    rec["messages"] = rec["prompt"]
    rec["prompt"] = row_to_trace(row).prompt_text
    rec["response"] = rec["answer"]
    rec["label"] = value
    rec["human_label"] = {"name": label.name, "value": label.value, "note": label.note, "author": label.author,
                          "created_at": label.created_at.isoformat() if label.created_at else None}
    return rec


def export_labelled(store: Store, out: str | Path | IO[bytes], *, name: str,
                    author: str | None = None) -> LabelExport:
    """Write the traces labelled ``name`` as a JSONL labelled file, in store order.

    Each trace's current label is its newest label of that name (by ``author`` only, when given; otherwise by
    whoever labelled last). Values in :data:`TRUE_VALUES`/:data:`FALSE_VALUES` become ``label: true``/``false``;
    a trace whose current value is another word is left out and counted.

    Args:
        store: the store.
        out: the file to write (or a binary stream).
        name: the label name to export.
        author: only this author's labels.
    """
    newest: dict[str, Label] = {}
    for lab in read_labels(store.con, name=name, author=author):
        newest[lab.trace_id] = lab  # oldest first: the last one seen is the newest
    rep = LabelExport(path=str(out) if isinstance(out, str | Path) else str(getattr(out, "name", "<stream>")),
                      name=name, traces=len(newest))
    wanted: dict[str, tuple[Label, bool]] = {}
    for tid, lab in newest.items():
        b = label_bool(lab.value)
        if b is None:
            rep.not_boolean += 1
            rep.skipped.append({"trace_id": tid, "value": lab.value})
        else:
            wanted[tid] = (lab, b)

    def write(fh: IO[bytes]) -> None:
        found = 0
        if wanted:
            for row in store.iter_rows(ids=list(wanted)):
                lab, b = wanted[row["id"]]
                fh.write(orjson.dumps(labelled_record(row, lab, b)) + b"\n")
                found += 1
                rep.positives += int(b)
                rep.negatives += int(not b)
        rep.written = found
        rep.missing = len(wanted) - found

    if isinstance(out, str | Path):
        with open(out, "wb") as fh:
            write(fh)
    else:
        write(out)
    return rep
