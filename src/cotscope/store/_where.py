"""Filters on stored results (``cotscope traces --where``): parsed here, resolved and run as one store query.

An expression names an evaluator (optionally ``evaluator:part``) and what its result must be:

- ``NAME=true`` / ``NAME=false``: the stored label;
- ``NAME=WORD``: the label in the evaluator's own words: its label meaning (``refused``, ``unsafe``,
  ``flagged``, ...) for a true label, ``not-WORD`` (or a plain antonym such as ``safe``) for a false one;
- ``parse_error``: any result whose judge output could not be parsed; ``NAME:parse_error`` for one
  evaluator (and part).
"""

from __future__ import annotations

from dataclasses import dataclass

from cotscope.errors import ConfigError

__all__ = ["PARTS", "ResultFilter", "parse_where"]

#: Trace parts a result can be for.
PARTS = ("reasoning", "answer", "both", "prompt", "actions", "trajectory", "monitor")

#: Plain-word negations of label meanings, so ``--where llama-guard=safe`` reads as it is meant.
_ANTONYMS = {"unsafe": "safe", "misaligned": "aligned", "consistent": "inconsistent", "flagged": "unflagged"}


@dataclass(frozen=True)
class ResultFilter:
    """One condition a trace's stored results must meet.

    Attributes:
        expr: the expression as written, named in every error about it.
        evaluator: the evaluator, or ``None`` for any (only with ``parse_error``).
        part: the part, or ``None`` for any.
        value: ``true``/``false`` or a label-meaning word (resolved against the store); ``None`` for a
            parse-error filter.
        parse_error: match results with a parse error instead of a label.
    """

    expr: str
    evaluator: str | None = None
    part: str | None = None
    value: str | None = None
    parse_error: bool = False


def _name(expr: str, name: str) -> tuple[str, str | None]:
    """``evaluator`` or ``evaluator:part`` split; a trailing token that is not a part stays in the name."""
    name = name.strip()
    if not name:
        raise ConfigError(f"{expr!r}: expected NAME=LABEL, NAME:parse_error or parse_error")
    ev, sep, part = name.rpartition(":")
    if sep and part in PARTS and ev:
        return ev, part
    return name, None


def parse_where(expr: str) -> ResultFilter:
    """Parse one filter expression (syntax only; :meth:`Store.trace_ids_where` checks names and words).

    Raises:
        ConfigError: the expression is malformed.
    """
    text = expr.strip()
    if text == "parse_error":
        return ResultFilter(expr=expr, parse_error=True)
    if "=" not in text:
        head, sep, tail = text.rpartition(":")
        if sep and tail == "parse_error":
            ev, part = _name(expr, head)
            return ResultFilter(expr=expr, evaluator=ev, part=part, parse_error=True)
        raise ConfigError(f"{expr!r}: expected NAME=LABEL, NAME:parse_error or parse_error")
    name, _, value = text.partition("=")
    value = value.strip().lower()
    if not value:
        raise ConfigError(f"{expr!r}: no label after '='")
    ev, part = _name(expr, name)
    return ResultFilter(expr=expr, evaluator=ev, part=part, value=value)


def _norm(word: str) -> str:
    return word.strip().lower().replace("_", "-").replace(" ", "-")


def wanted_label(f: ResultFilter, meaning: str | None) -> bool | None:
    """The stored label that ``f.value`` asks for, given the evaluator's label meaning; ``None`` if it says neither."""
    v = _norm(f.value or "")
    if v == "true":
        return True
    if v == "false":
        return False
    if not meaning:
        return None
    m = _norm(meaning)
    if v == m:
        return True
    negations = {f"not-{m}"} | ({_norm(_ANTONYMS[meaning])} if meaning in _ANTONYMS else set())
    return False if v in negations else None


def label_words(meaning: str | None) -> str:
    """The words a label of this meaning can be asked for by, for error messages."""
    if not meaning:
        return "true or false"
    neg = _ANTONYMS.get(meaning, f"not-{_norm(meaning)}")
    return f"true, false, {_norm(meaning)} or {neg}"
