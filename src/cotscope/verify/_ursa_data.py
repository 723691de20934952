"""URSA-8B's responses to 200 MathVista questions, shipped with cotscope (``data/ursa``, see its SOURCE.md)."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from cotscope.errors import DataError

__all__ = ["UrsaItem", "ursa_mathvista"]

_FILE = Path(__file__).parent / "data" / "ursa" / "outputs_infer_mathvista_first200.jsonl"


@dataclass(frozen=True)
class UrsaItem:
    """One MathVista question with URSA-8B's response and URSA's verdict.

    Attributes:
        pid: MathVista's problem id.
        question: the question text.
        choices: the options of a multiple-choice question in order (A first), else None.
        answer: the gold answer (for multiple choice, the text of the right option).
        precision: decimals expected of a float answer, else None.
        unit: the answer's unit, if MathVista gives one.
        question_type: ``multi_choice`` or ``free_form``.
        answer_type: ``text``, ``integer`` or ``float``.
        response: URSA-8B's step-by-step response.
        extraction: the answer URSA extracted from it (e.g. ``Answer: C``).
        correct: URSA's verdict on the extraction (its ``match`` column: 0 = correct, 1 = wrong).
    """

    pid: str
    question: str
    choices: tuple[str, ...] | None
    answer: str
    precision: int | None
    unit: str
    question_type: str
    answer_type: str
    response: str
    extraction: str
    correct: bool


@cache
def ursa_mathvista() -> tuple[UrsaItem, ...]:
    """The 200 rows, in file order.

    Raises:
        DataError: a row that cannot be read (a broken copy of the data file).
    """
    from cotscope.traces import iter_records

    items = []
    for line_no, row in iter_records(_FILE):
        try:
            choices = ast.literal_eval(row["choices"]) if row["choices"] else None
            items.append(
                UrsaItem(
                    pid=str(row["pid"]),
                    question=row["question"],
                    choices=tuple(str(c) for c in choices) if choices else None,
                    answer=str(row["answer"]),
                    precision=int(float(row["precision"])) if row["precision"] else None,
                    unit=row["unit"] or "",
                    question_type=row["question_type"],
                    answer_type=row["answer_type"],
                    response=row["response"],
                    extraction=row["extraction"],
                    correct={"0": True, "1": False}[str(row["match"])],
                )
            )
        except (KeyError, ValueError, SyntaxError) as e:
            raise DataError(f"{_FILE.name}:{line_no}: unreadable URSA row ({e})") from e
    return tuple(items)
