"""Judges: a protocol, a registry by name, LLM-judge templates and the embedded local classifiers.

A judge scores one part of a trace (``reasoning``, ``answer`` or ``both``) for a property and returns a
:class:`JudgeResult` whose ``label`` is true when the property holds (unsafe, refused, misaligned,
flagged) and whose ``score`` lies in [0, 1]. Outputs that cannot be parsed are recorded as parse errors
with the raw text and never default to safe or unsafe.
"""

from cotscope.judges._evidence import locate, quotes_in, verify
from cotscope.judges._parse import ParseError
from cotscope.judges._run import JudgeRunStats, run_judge
from cotscope.judges._types import (
    PARTS,
    Evidence,
    Judge,
    JudgeResult,
    LabelMeaning,
    Part,
    get_judge,
    judge,
    judge_names,
)

__all__ = [
    "PARTS",
    "Evidence",
    "Judge",
    "JudgeResult",
    "JudgeRunStats",
    "LabelMeaning",
    "ParseError",
    "Part",
    "get_judge",
    "judge",
    "judge_names",
    "locate",
    "quotes_in",
    "run_judge",
    "verify",
]
