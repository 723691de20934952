"""Checking that quoted evidence is a verbatim substring of the trace it claims to quote."""

from __future__ import annotations

import re
from collections.abc import Iterable

from cotscope.judges._types import Evidence
from cotscope.traces import Trace

#: Fields a quote may come from; ``both`` (reasoning + answer as judged together) comes last so that a quote
#: found in one real field is located there.
_FIELDS = ("reasoning", "answer", "prompt", "both")


def _field_text(trace: Trace, field: str) -> str:
    if field == "prompt":
        return trace.prompt_text
    if field == "both":
        return trace.part("both")
    return str(getattr(trace, field))


def locate(quote: str, trace: Trace, fields: Iterable[str] = _FIELDS) -> Evidence:
    """Evidence for ``quote``: verified with offsets when it occurs verbatim in a field of ``trace``.

    The quote is tried as given, then with surrounding whitespace and quotation marks stripped (judges
    often wrap quotes), never with any other normalisation: a paraphrase is not evidence.
    """
    candidates = [quote]
    stripped = quote.strip().strip("\"'“”‘’").strip()
    if stripped and stripped != quote:
        candidates.append(stripped)
    for cand in candidates:
        if not cand:
            continue
        for f in fields:
            text = _field_text(trace, f)
            i = text.find(cand)
            if i >= 0:
                return Evidence(text=cand, field=f, start=i, end=i + len(cand), verified=True)
    return Evidence(text=quote, verified=False)


def verify(evidence: Evidence, trace: Trace) -> Evidence:
    """Re-check one evidence item against the trace, whatever it claims about itself.

    A span whose offsets point at the quoted text keeps them; otherwise the quote is searched for.
    """
    if evidence.field in _FIELDS and evidence.start is not None and evidence.end is not None:
        text = _field_text(trace, evidence.field)
        if text[evidence.start:evidence.end] == evidence.text and evidence.text:
            return evidence.model_copy(update={"verified": True})
    found = locate(evidence.text, trace)
    return evidence.model_copy(update={
        "verified": found.verified, "field": found.field, "start": found.start, "end": found.end,
        "text": found.text if found.verified else evidence.text,
    })


_QUOTED = re.compile(r"\"([^\"\n]{8,400})\"|“([^”\n]{8,400})”")


def quotes_in(text: str) -> list[str]:
    """Double-quoted passages (8-400 characters) of a judge's free-text reasoning: its claimed quotes."""
    return [a or b for a, b in _QUOTED.findall(text)]
