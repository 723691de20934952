"""Plain-dict rows: the fast internal form of a trace used by readers and the store."""

from __future__ import annotations

from typing import Any

from cotscope.traces._provenance import ProvenanceSpan, span_dicts
from cotscope.traces._steps import segment_spans
from cotscope.traces._trace import (
    Action,
    Message,
    Source,
    Step,
    StepKind,
    Trace,
    group_id_of_canon,
    prompt_canon,
    trace_id_of_canon,
)

Row = dict[str, Any]

#: Column order of a row; the store's traces table uses the same order.
ROW_FIELDS: tuple[str, ...] = (
    "id",
    "prompt",
    "reasoning",
    "answer",
    "reasoning_closed",
    "steps",
    "actions",
    "model",
    "strategy",
    "group_id",
    "sample_index",
    "source_file",
    "source_line",
    "source_format",
    "metadata",
    "reasoning_provenance",
)


def make_row(
    prompt: list[dict[str, Any]],
    reasoning: str,
    answer: str,
    reasoning_closed: bool = True,
    *,
    model: str | None = None,
    strategy: str | None = None,
    group_id: str | None = None,
    sample_index: int = 0,
    actions: list[dict[str, Any]] | None = None,
    metadata: dict[str, Any] | None = None,
    id: str | None = None,
    steps: list[tuple[int, int, str]] | None = None,
    source_file: str | None = None,
    source_line: int | None = None,
    source_format: str | None = None,
    reasoning_provenance: list[dict[str, Any]] | None = None,
) -> Row:
    """Build a row, deriving the group id, trace id and steps where they are not given.

    ``reasoning_provenance`` holds span dicts (``{kind, start, end, payload?}``, see
    :mod:`cotscope.traces._provenance`); it is not part of the id. ``None`` or ``[]``: unknown.
    """
    # The prompt's canonical text goes into both ids: computed once (ingest builds a row per record).
    canon = prompt_canon(prompt) if not (group_id and id) else ""
    gid = group_id or group_id_of_canon(canon, model, strategy)
    return {
        "id": id or trace_id_of_canon(canon, reasoning, answer, model, strategy, gid, sample_index),
        "prompt": prompt,
        "reasoning": reasoning,
        "answer": answer,
        "reasoning_closed": reasoning_closed,
        # Steps are derived from the reasoning; None means "derive on read" and keeps ingest fast.
        "steps": steps,
        "actions": actions or [],
        "model": model,
        "strategy": strategy,
        "group_id": gid,
        "sample_index": sample_index,
        "source_file": source_file,
        "source_line": source_line,
        "source_format": source_format,
        "metadata": metadata or {},
        "reasoning_provenance": reasoning_provenance or [],
    }


def row_spans(row: Row) -> list[tuple[int, int, StepKind]]:
    """The step spans of a row: the stored ones, else derived from the reasoning (steps are derived data)."""
    steps = row["steps"]
    return steps if steps is not None else segment_spans(row["reasoning"] or "")


def row_to_trace(row: Row) -> Trace:
    """Turn a row into a :class:`Trace` without re-deriving anything."""
    reasoning = row["reasoning"] or ""
    steps = [Step(index=i, start=s, end=e, kind=k, text=reasoning[s:e]) for i, (s, e, k) in enumerate(row_spans(row))]
    source = None
    if row.get("source_file") is not None or row.get("source_format") is not None:
        source = Source(file=row.get("source_file"), line=row.get("source_line"), format=row.get("source_format"))
    return Trace(
        id=row["id"],
        prompt=[Message.model_validate(m) for m in row["prompt"] or []],
        reasoning=reasoning,
        answer=row["answer"] or "",
        reasoning_closed=bool(row["reasoning_closed"]),
        steps=steps,
        actions=[Action.model_validate(a) for a in row["actions"] or []],
        model=row.get("model"),
        strategy=row.get("strategy"),
        group_id=row.get("group_id"),
        sample_index=int(row.get("sample_index") or 0),
        source=source,
        metadata=row.get("metadata") or {},
        reasoning_provenance=[ProvenanceSpan.model_validate(p) for p in row.get("reasoning_provenance") or []],
    )


def trace_to_row(trace: Trace) -> Row:
    """Turn a :class:`Trace` into a row."""
    src = trace.source or Source()
    return {
        "id": trace.id,
        "prompt": [m.model_dump() for m in trace.prompt],
        "reasoning": trace.reasoning,
        "answer": trace.answer,
        "reasoning_closed": trace.reasoning_closed,
        "steps": [(s.start, s.end, s.kind) for s in trace.steps],
        "actions": [a.model_dump(exclude_none=True) for a in trace.actions],
        "model": trace.model,
        "strategy": trace.strategy,
        "group_id": trace.group_id,
        "sample_index": trace.sample_index,
        "source_file": src.file,
        "source_line": src.line,
        "source_format": src.format,
        "metadata": trace.metadata,
        "reasoning_provenance": span_dicts(trace.reasoning_provenance),
    }
