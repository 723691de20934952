"""Judges: a protocol, a registry by name, LLM-judge templates and the embedded local classifiers.

A judge scores one part of a trace (``reasoning``, ``answer`` or ``both``) for a property and returns a
:class:`JudgeResult` whose ``label`` is true when the property holds (unsafe, refused, misaligned,
flagged) and whose ``score`` lies in [0, 1]. Outputs that cannot be parsed are recorded as parse errors
with the raw text and never default to safe or unsafe.
"""

from cotscope.judges._context import CogTestHabit, DeceptionConsistency, cogtest_habits, habit_verdict
from cotscope.judges._evidence import locate, quotes_in, verify
from cotscope.judges._llm import LLMJudge
from cotscope.judges._parse import ParseError, parse_json_object
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
    "CogTestHabit",
    "DeceptionConsistency",
    "Evidence",
    "Judge",
    "JudgeResult",
    "LLMJudge",
    "LabelMeaning",
    "ParseError",
    "Part",
    "cogtest_habits",
    "get_judge",
    "habit_verdict",
    "judge",
    "judge_names",
    "locate",
    "parse_json_object",
    "quotes_in",
    "verify",
]
