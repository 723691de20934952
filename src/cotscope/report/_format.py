"""Turning metric values into text: the only place numbers become "66.7%" (the CLI and the HTML report use it)."""

from __future__ import annotations

import math
from typing import Any

#: What an undefined value (no data, NaN) shows as: never 0.
DASH = "–"


def _undefined(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def fmt_pct(x: float | None) -> str:
    """A rate in [0, 1] as a percentage with one decimal."""
    return DASH if _undefined(x) else f"{100 * float(x):.1f}%"  # type: ignore[arg-type]


def fmt_num(x: float | None, digits: int = 3) -> str:
    """A plain number with ``digits`` decimals."""
    return DASH if _undefined(x) else f"{float(x):.{digits}f}"  # type: ignore[arg-type]


def format_cell(value: Any, kind: str) -> str:
    """One table cell by its column kind (``text``, ``int``, ``rate``, ``ci``, ``num``)."""
    if kind == "rate":
        return fmt_pct(value)
    if kind == "ci":
        return DASH if not value else f"[{fmt_pct(value[0])}, {fmt_pct(value[1])}]"
    if kind == "num":
        return fmt_num(value)
    if kind == "int":
        return DASH if value is None else f"{int(value):,}"
    return DASH if value is None else str(value)


def format_rows(table: Any) -> list[list[str]]:
    """A metric table's rows as text (``table`` is a :class:`cotscope.benchmarks.MetricTable` or its dict)."""
    t = table if isinstance(table, dict) else table.model_dump()
    kinds = [c["kind"] if isinstance(c, dict) else "text" for c in t["columns"]]
    return [[format_cell(v, k) for v, k in zip(r, kinds, strict=True)] for r in t["rows"]]


def column_names(table: Any) -> list[str]:
    """A metric table's column headers."""
    t = table if isinstance(table, dict) else table.model_dump()
    return [c["name"] if isinstance(c, dict) else str(c) for c in t["columns"]]
