"""Segmenting reasoning into steps with character spans."""

from __future__ import annotations

import re

from cotscope.traces._trace import Step, StepKind

_PARAGRAPH = re.compile(r"\n[ \t]*\n\s*")
_HEADER = re.compile(
    r"(?m)^[ \t]*(?:#{1,6}[ \t]*|\*\*|\d+[.)][ \t]*)?Step[ \t]*\d+\b", re.IGNORECASE
)
#: Reflection markers that reasoning models use to revisit their work ("aha" moments).
REFLECTION_MARKERS: tuple[str, ...] = (
    "Wait",
    "But wait",
    "Hmm",
    "Alternatively",
    "Hold on",
    "On second thought",
    "Let me think again",
    "Let me double-check",
    "Let me double check",
    "Let me check",
    "Let me verify",
    "Let me reconsider",
    "Actually",
)
_REFLECTION = re.compile(
    r"(?:(?<=[.!?])[ \t]+|(?<=\n)[ \t]*|^)(?=(?:"
    + "|".join(re.escape(m) for m in sorted(REFLECTION_MARKERS, key=len, reverse=True))
    + r")\b)"
)


def segment_steps(reasoning: str) -> list[Step]:
    """Split reasoning into steps: paragraphs, ``Step k:`` headers and reflection markers.

    Every step carries its span, so ``reasoning[step.start:step.end] == step.text``.
    """
    return [
        Step(index=i, start=s, end=e, kind=k, text=reasoning[s:e])
        for i, (s, e, k) in enumerate(segment_spans(reasoning))
    ]


def segment_spans(reasoning: str) -> list[tuple[int, int, StepKind]]:
    """The step spans of :func:`segment_steps` as ``(start, end, kind)`` tuples (the fast path)."""
    if not reasoning.strip():
        return []
    cuts: dict[int, StepKind] = {0: "paragraph"}
    for m in _PARAGRAPH.finditer(reasoning):
        cuts.setdefault(m.end(), "paragraph")
    for m in _HEADER.finditer(reasoning):
        pos = m.start() + (len(m.group(0)) - len(m.group(0).lstrip()))
        cuts[_line_start(reasoning, pos)] = "header"
    for m in _REFLECTION.finditer(reasoning):
        if m.end() > 0:
            cuts[m.end()] = "reflection"
        else:
            cuts[0] = "reflection"
    positions = sorted(cuts)
    spans: list[tuple[int, int, StepKind]] = []
    for k, start in enumerate(positions):
        end = positions[k + 1] if k + 1 < len(positions) else len(reasoning)
        seg = reasoning[start:end]
        stripped_left = len(seg) - len(seg.lstrip())
        s, e = start + stripped_left, start + len(seg.rstrip())
        if e <= s:
            continue
        spans.append((s, e, cuts[start]))
    return spans


def _line_start(text: str, pos: int) -> int:
    return text.rfind("\n", 0, pos) + 1
