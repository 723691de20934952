"""Prompts and labelled traces out of record files: the one prompt-field list and its readers.

Every reader of prompts (``cotscope generate --prompts``, the benchmark ``prompts`` loader, ingest of
``{prompt, response}`` pairs) looks for the prompt under the same fields, :data:`PROMPT_FIELDS`, so a file
that one command accepts, the others accept too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from cotscope.traces._errors import RecordError
from cotscope.traces._records import iter_records

T = TypeVar("T")

if TYPE_CHECKING:
    from cotscope.traces._trace import Trace

__all__ = ["PROMPT_FIELDS", "PromptItem", "read_labelled", "read_prompts", "record_messages"]

#: Fields that hold the prompt of a record, tried in order: chat messages, then the text spellings of
#: SafeChain/WildJailbreak (``prompt``, ``instruction``), StrongREJECT (``forbidden_prompt``), QA sets
#: (``question``, ``input``, ``query``), AdvBench/HarmBench (``goal``, ``behavior``).
PROMPT_FIELDS: tuple[str, ...] = (
    "messages", "prompt", "instruction", "forbidden_prompt", "question", "input", "query", "goal", "behavior",
)


@dataclass
class PromptItem:
    """One prompt read from a file.

    Attributes:
        messages: the chat messages (``{"role", "content"}``) sent to the model.
        line: where the record is in its file (JSONL/CSV line, JSON list index from 1).
        metadata: the record's other scalar fields, kept as trace metadata.
    """

    messages: list[dict[str, Any]]
    line: int
    metadata: dict[str, Any] = field(default_factory=dict)


def _is_messages(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in v
    )


def record_messages(rec: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The chat messages and metadata of one prompt record.

    A record is a non-empty string, or an object with one of :data:`PROMPT_FIELDS` (the first non-empty
    one wins): a list of ``{role, content}`` messages, or a text that becomes the user turn (a ``system``
    field adds a system message). The record's other scalar fields are returned as metadata.

    Raises:
        ValueError: the record is not a prompt (no prompt field, wrong type, empty).
    """
    if isinstance(rec, str):
        if not rec.strip():
            raise ValueError("empty prompt")
        return [{"role": "user", "content": rec}], {}
    if not isinstance(rec, dict):
        raise ValueError(f"expected an object or a string, got {type(rec).__name__}")
    for f in PROMPT_FIELDS:
        v = rec.get(f)
        if v is None or v == "":
            continue
        meta = {k: x for k, x in rec.items() if k != f and isinstance(x, str | int | float | bool)}
        if isinstance(v, str):
            msgs = [{"role": "user", "content": v}]
            sys_msg = rec.get("system")
            if isinstance(sys_msg, str) and sys_msg:
                msgs.insert(0, {"role": "system", "content": sys_msg})
                meta.pop("system", None)
            return msgs, meta
        if _is_messages(v):
            return [{"role": m["role"], "content": m["content"]} for m in v], meta
        raise ValueError(f"field {f!r} must be a string or a list of {{role, content}} messages")
    raise ValueError(f"no prompt field: expected one of {', '.join(PROMPT_FIELDS)}")


def read_prompts(path: str | Path) -> tuple[list[PromptItem], list[RecordError]]:
    """Prompts from a JSONL, JSON or CSV file; each bad record is returned as an error with file and line.

    JSON files may also be a list of strings. See :func:`record_messages` for what a record holds and
    :func:`cotscope.traces.iter_records` for the file formats.

    Raises:
        TraceFileError: the file cannot be read at all.
    """
    def item(line: int, rec: Any) -> PromptItem:
        msgs, meta = record_messages(rec)
        return PromptItem(msgs, line, meta)

    return _read_each(path, item)


def _read_each(path: str | Path, convert: Callable[[int, Any], T]) -> tuple[list[T], list[RecordError]]:
    """``convert(line, record)`` for every record of a file; a record it rejects (``ValueError``) becomes an
    error with file and line, in line order with the file's unreadable records, and the rest proceeds."""
    errors: list[RecordError] = []
    out: list[T] = []
    for line, rec in iter_records(path, errors):
        try:
            out.append(convert(line, rec))
        except ValueError as e:
            errors.append(RecordError(str(e), str(path), line))
    errors.sort(key=lambda e: e.line or 0)
    return out, errors


def _labelled_trace(rec: Any) -> tuple[Trace, bool]:
    from cotscope.traces._trace import Trace

    if not isinstance(rec, dict):
        raise ValueError(f"expected an object, got {type(rec).__name__}")
    r = dict(rec)
    lab = r.pop("label", None)
    if lab is None:
        meta = r.get("metadata")
        lab = meta.get("label") if isinstance(meta, dict) else None
    if not (isinstance(lab, bool) or lab in (0, 1)):
        raise ValueError(f"label must be true/false or 0/1, got {lab!r}")
    if isinstance(r.get("prompt"), str):
        r["prompt"] = [{"role": "user", "content": r["prompt"]}]
    r.pop("results", None)  # an export with results: the stored verdicts are not part of the trace
    try:
        trace = Trace.model_validate(r)
    except ValueError as e:  # pydantic's ValidationError
        raise ValueError(f"not a trace: {e}") from None
    return trace, bool(lab)


def read_labelled(path: str | Path) -> tuple[list[Trace], list[bool], list[RecordError]]:
    """Labelled traces: trace fields plus ``label`` (true = positive), from JSONL, a JSON list or CSV.

    ``prompt`` may be a string or a list of messages; ``label`` a boolean or 0/1 (also accepted under
    ``metadata.label``). A bad record is returned as an error with file and line; the rest is read.

    Returns:
        ``(traces, labels, errors)``: ``labels[i]`` is the label of ``traces[i]``.

    Raises:
        TraceFileError: the file cannot be read at all.
    """
    pairs, errors = _read_each(path, lambda line, rec: _labelled_trace(rec))
    return [t for t, _ in pairs], [lab for _, lab in pairs], errors
