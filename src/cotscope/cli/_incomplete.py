"""``--incomplete``: the form of the ``incomplete`` outcome the metrics use (``metrics``, ``run``, ``report``)."""

from __future__ import annotations

from typing import Annotated

import typer

from cotscope.cli._app import fail

IncompleteOpt = Annotated[str, typer.Option(
    "--incomplete", help="Form of incomplete (reasoning that never finished, counted apart from the rates): "
    "no-answer (default, the papers' \"no answer\": a cap hit without an answer) or cap (every cap hit, partial "
    "answers too).")]
#: ``--incomplete`` of ``cotscope report``: unset, each benchmark run keeps the form it was run with.
ReportIncompleteOpt = Annotated[str | None, typer.Option(
    "--incomplete", help="Form of incomplete for every table: no-answer or cap (default: each benchmark run's own "
    "form, no-answer for the store section).")]


def incomplete_form(value: str) -> str:
    """``--incomplete`` checked: a usage error names the forms."""
    from cotscope.pipeline import INCOMPLETE_FORMS

    if value not in INCOMPLETE_FORMS:
        fail(f"unknown --incomplete {value!r}: expected {' or '.join(INCOMPLETE_FORMS)}")
    return value
