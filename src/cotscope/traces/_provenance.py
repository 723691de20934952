"""Provenance of reasoning: what kind of text each part of a trace's reasoning is.

A trace's ``reasoning_provenance`` is a list of :class:`ProvenanceSpan` over ``Trace.reasoning``: character
offsets ``[start, end)`` and a kind.

Kinds (:data:`REASONING_KINDS`):

- ``raw``: the model's own thinking text (a ``<think>`` block, ``reasoning_content``, an Anthropic ``thinking``
  block, OpenRouter ``reasoning.text``).
- ``summary``: a provider-written summary of hidden reasoning (OpenAI Responses ``reasoning.summary``, Gemini
  thought parts, OpenRouter ``reasoning.summary``, Inspect's readable summary of a redacted block).
- ``redacted``: reasoning the provider withheld (Anthropic ``redacted_thinking``); the span is zero-length at
  the place the block stood and its opaque data is the span's ``payload``.
- ``encrypted``: opaque content (OpenAI ``encrypted_content``, OpenRouter ``reasoning.encrypted``, a Gemini
  thought signature on a part that is not a thought); zero-length, the opaque data in ``payload``. A signature
  that belongs to a block of text (Anthropic ``thinking.signature``) is that block's span's ``payload``, not a
  span of its own.
- ``prefill``: text cotscope or the user put there (ZeroThink's empty thought, LessThink's and MoreThink's
  strings, a ``prefill:`` strategy's text). A ZeroThink trace, whose prefilled thought is empty, has a
  zero-length ``prefill`` span at 0.
- ``truncated``: a zero-length *marker* at the offset where the token limit cut the reasoning (its end): the
  text before it keeps its own kind. It is present exactly when the reader or generator knows the reasoning
  never closed (``reasoning_closed`` false).

Spans are ordered by ``start``, never overlap (zero-length spans may share an offset with a neighbour's edge),
and stay inside the reasoning. Text between spans (the ``"\\n\\n"`` that joins blocks) belongs to no span.
An empty list means *unknown* (a store written before provenance existed, a record that says nothing);
readers and generation fill it for everything they produce. Provenance is not part of the trace id.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal, get_args

from pydantic import BaseModel, Field, model_validator

if TYPE_CHECKING:
    from cotscope.traces._trace import Trace

ReasoningKind = Literal["raw", "summary", "redacted", "encrypted", "prefill", "truncated"]
#: Every kind, in the order :func:`provenance_label` writes them.
REASONING_KINDS: tuple[str, ...] = ("prefill", "raw", "summary", "redacted", "encrypted", "truncated")
#: Pseudo-kind accepted by :func:`reasoning_of_kinds`: the whole reasoning of a trace without provenance.
UNKNOWN_KIND = "unknown"

assert set(REASONING_KINDS) == set(get_args(ReasoningKind))


class ProvenanceSpan(BaseModel):
    """One span of a trace's reasoning and what kind of text it is (see :mod:`cotscope.traces._provenance`).

    Attributes:
        kind: the kind of reasoning.
        start: first character, an offset into ``Trace.reasoning``.
        end: one past the last character (``start == end`` for markers and opaque content).
        payload: opaque data kept with the span (encrypted content, a signature, redacted data); never
            shown or judged as text.
    """

    kind: ReasoningKind
    start: int = Field(ge=0)
    end: int = Field(ge=0)
    payload: str | None = None

    @model_validator(mode="after")
    def _ordered(self) -> ProvenanceSpan:
        if self.end < self.start:
            raise ValueError(f"span end {self.end} is before its start {self.start}")
        return self


def span_dicts(spans: Iterable[ProvenanceSpan]) -> list[dict[str, Any]]:
    """Spans as the plain dicts rows and exports hold (``payload`` only when there is one)."""
    return [s.model_dump(exclude_none=True) for s in spans]


def check_spans(spans: Any, reasoning: str, where: str = "reasoning_provenance") -> list[dict[str, Any]]:
    """Validate spans given as plain data (a record's ``reasoning_provenance``) against their reasoning.

    Returns:
        The spans as plain dicts, sorted by ``(start, end)``.

    Raises:
        ValueError: not a list of ``{kind, start, end, payload?}`` objects, an unknown kind, or offsets outside
            the reasoning or with ``start > end``; the message says which entry.
    """
    if spans is None:
        return []
    if not isinstance(spans, list):
        raise ValueError(f"'{where}' must be a list of spans, got {type(spans).__name__}")
    out: list[dict[str, Any]] = []
    n = len(reasoning)
    for i, s in enumerate(spans):
        if not isinstance(s, dict):
            raise ValueError(f"'{where}[{i}]' must be an object, got {type(s).__name__}")
        kind, start, end, payload = s.get("kind"), s.get("start"), s.get("end"), s.get("payload")
        if kind not in REASONING_KINDS:
            raise ValueError(f"'{where}[{i}]': unknown kind {kind!r}: expected one of {', '.join(REASONING_KINDS)}")
        if isinstance(start, bool) or isinstance(end, bool) or not isinstance(start, int) or not isinstance(end, int):
            raise ValueError(f"'{where}[{i}]': 'start' and 'end' must be integers")
        if not 0 <= start <= end <= n:
            raise ValueError(f"'{where}[{i}]': span [{start}, {end}) is not inside the reasoning ({n} characters)")
        if payload is not None and not isinstance(payload, str):
            raise ValueError(f"'{where}[{i}]': 'payload' must be a string, got {type(payload).__name__}")
        d: dict[str, Any] = {"kind": kind, "start": start, "end": end}
        if payload is not None:
            d["payload"] = payload
        out.append(d)
    out.sort(key=lambda d: (d["start"], d["end"]))
    return out


def _spans_of(trace_or_spans: Trace | Sequence[ProvenanceSpan] | Sequence[dict[str, Any]]) -> list[Any]:
    spans = getattr(trace_or_spans, "reasoning_provenance", trace_or_spans)
    return list(spans)


def _kind(s: Any) -> str:
    return str(s["kind"] if isinstance(s, dict) else s.kind)


def provenance_kinds(trace: Trace) -> set[str]:
    """The kinds of the trace's provenance spans (empty: unknown)."""
    return {_kind(s) for s in trace.reasoning_provenance}


def label_of_kinds(kinds: Iterable[str], reasoning: str = "x") -> str:
    """:func:`provenance_label` of a set of kinds (for rows and SQL results, which are not traces)."""
    present = set(kinds)
    if not present:
        return "unknown" if reasoning else "none"
    content = [k for k in REASONING_KINDS if k in present and k != "truncated"]
    return "+".join(content) if content else "truncated"


def provenance_label(trace: Trace) -> str:
    """One category per trace, for breaking metrics and reports down by provenance.

    The rule: the distinct kinds of its spans in the fixed order ``prefill, raw, summary, redacted,
    encrypted``, joined with ``+`` (``"raw"``, ``"summary+encrypted"``, ``"prefill+raw"``, ``"raw+redacted"``).
    ``truncated`` is left out when other kinds are present: it marks where reasoning was cut, which the
    ``incomplete`` outcome reports, not what kind of text it is; a trace whose only span is that marker is
    ``"truncated"``. A trace without spans is ``"unknown"``, or ``"none"`` when it has no reasoning text
    either (there is nothing whose kind is unknown).
    """
    return label_of_kinds(provenance_kinds(trace), trace.reasoning)


def parse_kinds(kinds: str | Iterable[str]) -> tuple[str, ...]:
    """A selection of kinds from ``"raw,summary"`` or a list, checked, deduplicated, in canonical order.

    ``unknown`` (the whole reasoning of a trace that has no provenance) may be selected too.

    Raises:
        ValueError: an unknown kind, or an empty selection.
    """
    items = [k.strip() for k in (kinds.split(",") if isinstance(kinds, str) else kinds)]
    items = [k for k in items if k]
    allowed = (*REASONING_KINDS, UNKNOWN_KIND)
    bad = [k for k in items if k not in allowed]
    if bad:
        raise ValueError(f"unknown reasoning kind {bad[0]!r}: expected some of {', '.join(allowed)}")
    if not items:
        raise ValueError(f"no reasoning kind given: expected some of {', '.join(allowed)}")
    return tuple(k for k in allowed if k in items)


def reasoning_ranges(trace: Trace, kinds: str | Iterable[str]) -> list[tuple[int, int]]:
    """The ``[start, end)`` ranges of ``trace.reasoning`` that :func:`reasoning_of_kinds` returns, in order.

    Spans of the selected kinds that touch (one's end is the next one's start) are merged into one range;
    zero-length spans give no range. A trace without spans gives its whole reasoning only when ``unknown`` is
    selected.
    """
    sel = set(parse_kinds(kinds))
    spans = trace.reasoning_provenance
    if not spans:
        return [(0, len(trace.reasoning))] if UNKNOWN_KIND in sel and trace.reasoning else []
    out: list[tuple[int, int]] = []
    for s in sorted(spans, key=lambda s: (s.start, s.end)):
        if s.kind not in sel or s.end <= s.start:
            continue
        if out and out[-1][1] >= s.start:
            out[-1] = (out[-1][0], max(out[-1][1], s.end))
        else:
            out.append((s.start, s.end))
    return out


#: What :func:`reasoning_of_kinds` puts between two ranges that are not adjacent in the reasoning.
PIECE_SEPARATOR = "\n\n"


def reasoning_of_kinds(trace: Trace, kinds: str | Iterable[str]) -> str:
    """The reasoning text restricted to spans of the given kinds.

    The text is the ranges of :func:`reasoning_ranges` in reasoning order, joined by
    :data:`PIECE_SEPARATOR` (``"\\n\\n"``, what readers join blocks with). Offsets map back piece by piece:
    piece ``i`` starts in the result at ``sum(len(piece_j) + 2 for j < i)`` and in the reasoning at
    ``ranges[i][0]``. Selecting every kind present on a trace whose spans cover its reasoning up to those
    separators gives back ``trace.reasoning`` itself. Zero-length spans (markers, opaque content) add no text:
    ``encrypted`` and ``redacted`` payloads are never returned.

    Args:
        trace: the trace.
        kinds: the kinds to keep (``"raw,summary"`` or a list); ``unknown`` keeps the whole reasoning of a
            trace without provenance.

    Raises:
        ValueError: an unknown kind.
    """
    ranges = reasoning_ranges(trace, kinds)
    r = trace.reasoning
    if len(ranges) == 1 and ranges[0] == (0, len(r)):
        return r
    return PIECE_SEPARATOR.join(r[s:e] for s, e in ranges)


__all__ = [
    "PIECE_SEPARATOR",
    "REASONING_KINDS",
    "UNKNOWN_KIND",
    "ProvenanceSpan",
    "ReasoningKind",
    "check_spans",
    "label_of_kinds",
    "parse_kinds",
    "provenance_kinds",
    "provenance_label",
    "reasoning_of_kinds",
    "reasoning_ranges",
    "span_dicts",
]
