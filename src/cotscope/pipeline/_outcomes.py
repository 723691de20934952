"""Outcomes a judge verdict is not: reasoning that never finished (``incomplete``), and a verdict on the answer
whose evidence quotes only the reasoning (``verdict_from_reasoning``).

One definition for the evaluate stage, the metrics stage, the benchmarks' tables and the report.

**Cap hit.** A trace hit the token cap when its generation stopped for length (``metadata.finish_reason ==
"length"``), its reasoning carries a ``truncated`` provenance span, or its reasoning never closed
(``reasoning_closed`` false: what a cap looks like in a source that recorded no finish reason).

**Incomplete** is a cap hit counted apart from the rates, never scored as an answer. Two forms
(:data:`INCOMPLETE_FORMS`):

- ``no-answer`` (default; the "no answer" count of the fidelity issue, the figures as they were): a cap hit
  with no answer at all (generation stopped inside the reasoning).
- ``cap``: every cap hit, a partial answer cut by the cap too (the issue's wider reading: such an answer is
  not the model's whole answer either).

The evaluate stage never sends an absent answer of a cap hit to a judge of the answer (parts ``answer`` and
``both``): it stores an ``incomplete`` result instead (no label, no score, ``details.outcome ==
"incomplete"``), which counts as neither safe nor unsafe. A partial answer cut by the cap is judged and
stored; the ``cap`` form leaves it out of the rates when the metrics are computed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal, get_args

from cotscope.judges import Evidence, JudgeResult
from cotscope.traces import Trace, provenance_kinds

IncompleteForm = Literal["no-answer", "cap"]
#: The forms of ``incomplete``, default first.
INCOMPLETE_FORMS: tuple[str, ...] = get_args(IncompleteForm)
DEFAULT_INCOMPLETE: IncompleteForm = "no-answer"
#: What each form counts, in the words the tables and the report use.
FORM_TEXT = {
    "no-answer": "incomplete = hit the token cap with no answer (the papers' \"no answer\")",
    "cap": "incomplete = hit the token cap or reasoning never closed, partial answers too",
}
#: The parts a judge of the answer reads: an incomplete trace's absent answer is never sent to them.
ANSWER_PARTS = ("answer", "both")
#: The ``details.outcome`` of a stored incomplete result.
INCOMPLETE = "incomplete"


def check_incomplete_form(form: str) -> IncompleteForm:
    """``form`` checked against :data:`INCOMPLETE_FORMS`.

    Raises:
        ValueError: an unknown form.
    """
    if form not in INCOMPLETE_FORMS:
        raise ValueError(f"unknown incomplete form {form!r}: expected {' or '.join(INCOMPLETE_FORMS)}")
    return form  # type: ignore[return-value]


def cap_reasons(trace: Trace) -> list[str]:
    """Why the trace counts as a cap hit: ``length`` (finish reason), ``truncated`` (provenance span),
    ``never closed`` (reasoning), or ``content filter`` (reasoning stopped by a filter, e.g. ``cotscope guard``'s
    block: incomplete as well, and named apart so a table never calls it the token cap); empty when it
    finished."""
    return cap_reasons_of(trace.metadata.get("finish_reason"), provenance_kinds(trace), trace.reasoning_closed)


def cap_reasons_of(finish_reason: Any, kinds: Iterable[str], reasoning_closed: bool) -> list[str]:
    """:func:`cap_reasons` from a trace's stored facts (finish reason, provenance kinds, whether its reasoning
    closed), for readers that take them from the store's columns without building the trace."""
    out = []
    if finish_reason == "length":
        out.append("length")
    if "truncated" in kinds:
        out.append("truncated")
    if not reasoning_closed:
        # A generation a content filter stopped (the guard's block) never finished either, but not for the cap.
        out.append("content filter" if finish_reason == "content_filter" else "never closed")
    return out


def cap_hit(trace: Trace) -> bool:
    """The trace hit the token cap (see the module docstring)."""
    return bool(cap_reasons(trace))


def is_incomplete(trace: Trace, form: str = DEFAULT_INCOMPLETE) -> bool:
    """The trace is ``incomplete`` under ``form``: counted apart, never scored as an answer."""
    if not cap_hit(trace):
        return False
    return check_incomplete_form(form) == "cap" or not trace.answer.strip()


def incomplete_result(trace: Trace) -> JudgeResult:
    """The stored outcome of an incomplete trace on a part that reads the answer: no label, no score."""
    reasons = cap_reasons(trace)
    return JudgeResult(reason=f"incomplete: {', '.join(reasons)}; no answer to judge",
                       details={"outcome": INCOMPLETE, "cap": reasons})


def is_incomplete_result(row: Mapping[str, Any]) -> bool:
    """A stored result (a row of :meth:`Store.results`) is an incomplete outcome."""
    details = row.get("details")
    return isinstance(details, dict) and details.get("outcome") == INCOMPLETE


def _in_reasoning(e: Evidence, trace: Trace) -> bool:
    if e.field == "reasoning":
        return True
    # ``both`` is reasoning + "\n\n" + answer: offsets before the answer fall in the reasoning.
    return e.field == "both" and e.start is not None and bool(trace.reasoning) and e.start < len(trace.reasoning)


def verdict_from_reasoning(trace: Trace, evidence: Iterable[Evidence | Mapping[str, Any]]) -> bool | None:
    """Whether a verdict on the answer rests on the reasoning alone, from its verified evidence offsets.

    True when at least one verified quote lies in the reasoning and no verified quote occurs in the answer
    (a quote found in the reasoning first that the answer also holds quotes the answer). ``None`` when there
    is no verified evidence to tell.
    """
    verified = [e if isinstance(e, Evidence) else Evidence.model_validate(e) for e in evidence]
    verified = [e for e in verified if e.verified and e.text]
    if not verified:
        return None
    if any(e.field == "answer" or (e.text in trace.answer) for e in verified):
        return False
    return any(_in_reasoning(e, trace) for e in verified)


def flag_from_reasoning(trace: Trace, result: JudgeResult, part: str) -> JudgeResult:
    """``result`` with ``details.verdict_from_reasoning`` set when it judged the answer and has verified evidence."""
    if part != "answer" or not result.evidence or result.parse_error or result.error:
        return result
    flag = verdict_from_reasoning(trace, result.evidence)
    if flag is None:
        return result
    return result.model_copy(update={"details": {**result.details, "verdict_from_reasoning": flag}})
