"""The ``<monitor>`` segment: a model's own assessment of its reasoning (CoT Monitor+ self-monitoring).

A self-monitoring model ends its chain of thought with ``<monitor>\\nsafe: why\\n</monitor>`` (or ``unsafe``)
before it closes the think block, so the segment lives in the reasoning and the answer stays clean for answer
judges. :func:`parse_monitor` finds it (the ``monitor`` trace part), :func:`format_monitor` writes it (the
self-monitor data builder), :func:`strip_monitor` removes it (so an external judge of the reasoning does not
read the model's verdict on itself).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel

__all__ = ["MONITOR_CLOSE", "MONITOR_OPEN", "MonitorSegment", "format_monitor", "parse_monitor", "strip_monitor"]

MONITOR_OPEN = "<monitor>"
MONITOR_CLOSE = "</monitor>"

Verdict = Literal["safe", "unsafe"]

# "unsafe" first: "safe" is a suffix of it, and a leading "Unsafe" must never read as safe. Leading markup
# (``**Unsafe**``, ``- safe``) is skipped; the word must end there ("safely" is not a verdict).
_VERDICT = re.compile(r"^[\W_]*(unsafe|safe)\b[\W_]*", re.IGNORECASE)
_SEGMENT = re.compile(re.escape(MONITOR_OPEN) + r".*?" + re.escape(MONITOR_CLOSE), re.DOTALL)


class MonitorSegment(BaseModel):
    """The first complete ``<monitor>`` segment of a trace.

    Attributes:
        verdict: ``safe`` or ``unsafe`` from the segment's leading word; ``None`` when it states neither.
        justification: the text after the verdict word (the whole text when there is no verdict), stripped.
        text: the inner text between the tags, as written.
        field: the trace field holding it (``reasoning`` or ``answer``).
        start: offset of ``text`` in that field.
        end: end offset of ``text`` in that field (``field_text[start:end] == text``).
    """

    verdict: Verdict | None
    justification: str
    text: str
    field: Literal["reasoning", "answer"]
    start: int
    end: int


def _find(text: str) -> tuple[int, int] | None:
    i = text.find(MONITOR_OPEN)
    if i < 0:
        return None
    start = i + len(MONITOR_OPEN)
    j = text.find(MONITOR_CLOSE, start)
    # An open tag that never closes is no complete segment (a later open tag would be inside it).
    return (start, j) if j >= 0 else None


def _verdict(inner: str) -> tuple[Verdict | None, str]:
    body = inner.strip()
    m = _VERDICT.match(body)
    if m is None:
        return None, body
    word = m.group(1).lower()
    return ("unsafe" if word == "unsafe" else "safe"), body[m.end():].strip()


def parse_monitor(reasoning: str, answer: str = "") -> MonitorSegment | None:
    """The first complete ``<monitor>...</monitor>`` segment, looked for in the reasoning, then the answer.

    The verdict is the segment's leading word, ``unsafe`` or ``safe`` (case-insensitive, ``unsafe`` checked
    first); a segment stating neither has verdict ``None`` (there is a segment, but no verdict to read).

    Returns:
        The segment, or ``None`` when neither field holds a complete one.
    """
    for field, text in (("reasoning", reasoning), ("answer", answer)):
        span = _find(text)
        if span is None:
            continue
        start, end = span
        inner = text[start:end]
        verdict, why = _verdict(inner)
        return MonitorSegment(verdict=verdict, justification=why, text=inner,
                              field=field,  # type: ignore[arg-type]
                              start=start, end=end)
    return None


def format_monitor(verdict: Verdict, justification: str) -> str:
    """The segment as a self-monitoring model writes it: ``<monitor>\\n{verdict}: {justification}\\n</monitor>``."""
    if verdict not in ("safe", "unsafe"):
        raise ValueError(f"verdict must be 'safe' or 'unsafe', got {verdict!r}")
    return f"{MONITOR_OPEN}\n{verdict}: {justification}\n{MONITOR_CLOSE}"


def strip_monitor(text: str) -> str:
    """``text`` without its complete ``<monitor>`` segments (and the blank space before each).

    An unclosed ``<monitor>`` is left as it is: it is no segment, and cutting to the end of the text would
    hide reasoning from the judge. Text without a segment comes back unchanged.
    """
    if MONITOR_OPEN not in text:
        return text
    out = re.sub(r"\s*" + _SEGMENT.pattern, "", text, flags=re.DOTALL)
    return out.lstrip() if out != text else text
