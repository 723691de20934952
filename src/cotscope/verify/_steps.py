"""Solution steps for process verification: URSA's ``Step k:`` format, free-form reasoning, and the step tags.

URSA's solutions read ``Step 1: ...`` ... ``Step k: ...`` then ``†Answer: ...``; its process reward model reads
the question and the solution with a tag (``" и"``) after every step and scores the token of each tag. This module
splits solutions (either format) into steps, renders steps in URSA's format, and builds the PRM's input exactly as
URSA's ``inference/prm_infer_score.py`` does (``replace_specific_plus_minus_with_ki``, ``prepare_input``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from cotscope.traces import Trace, segment_steps
from cotscope.verify._answers import _located_answer, extract_answer

__all__ = [
    "STEP_TAG",
    "SolutionSteps",
    "format_steps",
    "prm_input",
    "prm_prompt",
    "split_steps",
    "tag_steps",
    "trace_steps",
]

#: The step tag of URSA's PRM: a space and the Cyrillic letter "и", inserted after every step.
STEP_TAG = " и"

# A step header of URSA's format, wherever it stands: "Step 3:" (also "**Step 3:**"). URSA-8B sometimes writes
# "StepStep 1:", so no line start is required; a reference inside a step ("from Step 2, we") has no colon.
_HEADER = re.compile(r"(?:\*\*)?Step\s+(\d+)\s*(?:\*\*)?\s*:(?:\*\*)?")
_ANSWER = "†Answer:"
# What may stand before the first header without being a step of its own: nothing, or URSA-8B's stray "Step".
_JUNK_PREAMBLE = re.compile(r"^(?:\s|Step|\*|#)*$")
# The paper's pattern for where steps start (replace_specific_plus_minus_with_ki).
_PAPER_STEP = re.compile(r"Step \d+")


@dataclass
class SolutionSteps:
    """A solution as steps and a final answer.

    Attributes:
        steps: the text of each step, stripped, without its ``Step k:`` header.
        answer: the final answer (URSA: what follows ``†Answer:``; free-form: :func:`extract_answer`'s), or None
            when the solution states none.
        fmt: ``"ursa"`` when the steps came from ``Step k:`` headers, ``"free"`` when from paragraph segmentation.
    """

    steps: list[str] = field(default_factory=list)
    answer: str | None = None
    fmt: Literal["ursa", "free"] = "free"


def split_steps(text: str) -> SolutionSteps:
    """Split a solution into steps and its final answer.

    URSA format when the text has ``Step k:`` headers: each step is the text from its header to the next header
    (or to ``†Answer:``, or the end), without the header; the answer is what follows the last ``†Answer:``
    (None without one: URSA-8B's truncated responses end mid-step). Text before the first header becomes a
    step of its own unless it is blank or only URSA-8B's stray ``Step`` words (``StepStep 1:``).

    Free-form otherwise: the steps are cotscope's segmentation (:func:`cotscope.traces.segment_steps`:
    paragraphs, headers, reflection markers) and the answer is :func:`extract_answer`'s when the text has an
    answer marker (``†``, ``Answer:``, ``therefore,`` ...) or a ``\\boxed{}``, else None.

    Args:
        text: a solution (a model's response, or a trace's reasoning and answer joined).
    """
    headers = list(_HEADER.finditer(text))
    if not headers:
        located = _located_answer(text)
        if located is None and "\\boxed" in text:
            located = extract_answer(text)
        return SolutionSteps([s.text for s in segment_steps(text)], located or None, "free")
    answer_at = text.rfind(_ANSWER)
    answer: str | None = None
    body_end = len(text)
    if answer_at > headers[-1].start():
        answer = text[answer_at + len(_ANSWER) :].strip()
        body_end = answer_at
    steps: list[str] = []
    preamble = text[: headers[0].start()]
    if not _JUNK_PREAMBLE.match(preamble):
        steps.append(preamble.strip())
    for i, h in enumerate(headers):
        end = headers[i + 1].start() if i + 1 < len(headers) else body_end
        steps.append(text[h.end() : end].strip())
    return SolutionSteps(steps, answer, "ursa")


def trace_steps(trace: Trace) -> SolutionSteps:
    """The steps of a stored trace.

    When the trace's reasoning and answer, joined by a blank line, have ``Step k:`` headers, they are read as URSA
    format (:func:`split_steps`). Otherwise the steps are the trace's own ``steps`` (its reasoning's
    segmentation) and, when the answer part is not blank, the answer part as the final step; the answer is
    :func:`extract_answer` of the answer part (None when it is blank, e.g. reasoning that never closed).

    Args:
        trace: a stored trace.
    """
    joined = "\n\n".join(p for p in (trace.reasoning, trace.answer) if p.strip())
    if _HEADER.search(joined):
        return split_steps(joined)
    steps = [s.text for s in trace.steps] if trace.steps else [s.text for s in segment_steps(trace.reasoning)]
    answer_part = trace.answer.strip()
    if answer_part:
        steps.append(answer_part)
    return SolutionSteps(steps, extract_answer(answer_part) or None if answer_part else None, "free")


def tag_steps(text: str, tag: str = STEP_TAG) -> str:
    """Insert the step tag after every step, exactly as URSA's ``replace_specific_plus_minus_with_ki`` does.

    Steps start at each match of ``Step \\d+`` (anywhere, references inside a step included). The tag goes right
    after the last character that is neither a space nor a newline (tabs and carriage returns count as text)
    before each match from the second on, searching back no further than the end of the previous match; and after
    the last such character before ``†Answer:``. Consequences worth knowing, all URSA's: without ``†Answer:`` the
    last step gets no tag; text before the first ``Step k`` gets none; a blank step gets none; a text with no
    ``Step k`` at all gets the tag appended at its very end (URSA's fallback).

    Args:
        text: the text to tag (URSA tags the whole PRM input, question included: see :func:`prm_input`).
        tag: the tag to insert (URSA's ``" и"`` by default).

    Returns:
        The tagged text.
    """
    spans = [(m.start(), m.end()) for m in _PAPER_STEP.finditer(text)]
    if not spans:
        return text + tag
    insert: list[int] = []
    for (_, prev_end), (start, _) in itertools.pairwise(spans):
        pos = _after_last_text(text, start, prev_end)
        if pos is not None:
            insert.append(pos)
    answer_start = text.find(_ANSWER)
    if answer_start != -1:
        pos = _after_last_text(text, answer_start, spans[-1][1])
        if pos is not None:
            insert.append(pos)
    for pos in sorted(insert, reverse=True):
        text = text[:pos] + tag + text[pos:]
    return text


def _after_last_text(text: str, before: int, floor: int) -> int | None:
    """The index after the last character other than a space or a newline in ``text[floor + 1:before]``."""
    for j in range(before - 1, floor, -1):
        if text[j] not in " \n":
            return j + 1
    return None


def format_steps(steps: Sequence[str], answer: str | None) -> str:
    """Render steps in URSA's format: ``Step 1: ...`` lines, then ``†Answer: ...`` when there is an answer.

    Args:
        steps: the text of each step (stripped here; a step's own line breaks are kept).
        answer: the final answer, or None to end after the last step.
    """
    lines = [f"Step {i}: {s.strip()}" for i, s in enumerate(steps, 1)]
    if answer is not None:
        lines.append(f"{_ANSWER} {answer.strip()}")
    return "\n".join(lines)


def prm_prompt() -> str:
    """URSA's PRM instruction (``PROMPT`` of ``inference/prm_infer_score.py``), from ``prompts/prm_input.txt``."""
    from cotscope.judges._prompts import load_prompt

    return load_prompt("prm_input.txt", "cotscope.verify")


def prm_input(question: str, text: str, *, tag: str = STEP_TAG) -> str:
    """The text URSA's PRM reads for a question and a solution (``prepare_input`` of ``prm_infer_score.py``).

    The instruction, the question, a newline, the solution, then :func:`tag_steps` over the whole of it (so a
    question that mentions ``Step 1`` gets tagged too, as in URSA). An empty question gives the instruction, a
    newline and the solution, which is URSA's text for a missing (NaN) question.

    Args:
        question: the problem statement.
        text: the solution, ideally in URSA's format (:func:`format_steps`).
        tag: the step tag.
    """
    return tag_steps(prm_prompt() + question + "\n" + text, tag)
