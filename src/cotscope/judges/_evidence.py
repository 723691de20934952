"""Checking that quoted evidence is a verbatim substring of the trace it claims to quote."""

from __future__ import annotations

import re
from collections.abc import Iterable

from cotscope.judges._types import Evidence
from cotscope.traces import Trace
from cotscope.traces._trajectory import action_field_text, action_texts, step_of_offset

#: Fields a quote may come from; ``both`` (reasoning + answer as judged together) comes after the real fields
#: so that a quote found in one of them is located there. ``actions`` stands for the commands and outputs of
#: an agent trajectory: a quote is located in one action's command or output (``actions[i].command``,
#: ``actions[i].output``) and, failing that, in the rendered actions text (field ``actions``).
_FIELDS = ("reasoning", "answer", "prompt", "both", "actions")
#: Fields whose text is a rendering of the trace (:meth:`Trace.part`); ``monitor`` is the inner text of the
#: ``<monitor>`` segment, so a judge of that part quotes it with offsets into the segment.
_RENDERED = ("both", "actions", "trajectory", "monitor")


def _field_text(trace: Trace, field: str) -> str | None:
    """The text of an evidence field, or ``None`` when ``field`` names none."""
    if field == "prompt":
        return trace.prompt_text
    if field in ("reasoning", "answer"):
        return str(getattr(trace, field))
    if field in _RENDERED:
        return trace.part(field)  # type: ignore[arg-type]
    return action_field_text(trace, field)


def _step(trace: Trace, field: str, start: int) -> int | None:
    if field == "reasoning":
        return step_of_offset(trace, start)
    if field.startswith("actions["):
        i = int(field[len("actions["):].partition("]")[0])
        return trace.actions[i].step if i < len(trace.actions) else None
    return None


def _find(cand: str, trace: Trace, field: str) -> Evidence | None:
    places = [(f, t) for f, t, _ in action_texts(trace)] if field == "actions" else []
    text = _field_text(trace, field)
    if text is not None:
        places.append((field, text))
    for f, text in places:
        i = text.find(cand)
        if i >= 0:
            return Evidence(text=cand, field=f, start=i, end=i + len(cand), verified=True, step=_step(trace, f, i))
    return None


def locate(quote: str, trace: Trace, fields: Iterable[str] = _FIELDS) -> Evidence:
    """Evidence for ``quote``: verified with offsets when it occurs verbatim in a field of ``trace``.

    The quote is tried as given, then with surrounding whitespace and quotation marks stripped (judges
    often wrap quotes), never with any other normalisation: a paraphrase is not evidence. On an agent
    trajectory the evidence also names the agent step it comes from (``step``).
    """
    candidates = [quote]
    stripped = quote.strip().strip("\"'“”‘’").strip()
    if stripped and stripped != quote:
        candidates.append(stripped)
    for cand in candidates:
        if not cand:
            continue
        for f in fields:
            found = _find(cand, trace, f)
            if found is not None:
                return found
    return Evidence(text=quote, verified=False)


def verify(evidence: Evidence, trace: Trace) -> Evidence:
    """Re-check one evidence item against the trace, whatever it claims about itself.

    A span whose offsets point at the quoted text keeps them; otherwise the quote is searched for.
    """
    if evidence.field and evidence.start is not None and evidence.end is not None:
        text = _field_text(trace, evidence.field)
        if text is not None and text[evidence.start:evidence.end] == evidence.text and evidence.text:
            step = evidence.step if evidence.step is not None else _step(trace, evidence.field, evidence.start)
            return evidence.model_copy(update={"verified": True, "step": step})
    found = locate(evidence.text, trace)
    return evidence.model_copy(update={
        "verified": found.verified, "field": found.field, "start": found.start, "end": found.end,
        "text": found.text if found.verified else evidence.text, "step": found.step,
    })


_QUOTED = re.compile(r"\"([^\"\n]{8,400})\"|“([^”\n]{8,400})”")


def quotes_in(text: str) -> list[str]:
    """Double-quoted passages (8-400 characters) of a judge's free-text reasoning: its claimed quotes."""
    return [a or b for a, b in _QUOTED.findall(text)]
