"""The HTML report: one self-contained page (inline CSS and SVG plots, no script, no network) with a table
per benchmark, Safe@K by strategy, misalignment rates with confidence intervals, DTR per category, habit
profiles, monitor ROC curves, and example traces with reasoning and answer apart and evidence highlighted."""

from cotscope.report._format import column_names, fmt_num, fmt_pct, format_cell, format_rows
from cotscope.report._html import action_html, build_report, highlight, render_report, trace_card
from cotscope.report._svg import bar_chart, line_chart, roc_chart, standalone_svg
from cotscope.report._tables import completion_table, guard_table, safety_table

__all__ = [
    "action_html",
    "bar_chart",
    "build_report",
    "column_names",
    "completion_table",
    "fmt_num",
    "fmt_pct",
    "format_cell",
    "format_rows",
    "guard_table",
    "highlight",
    "line_chart",
    "render_report",
    "roc_chart",
    "safety_table",
    "standalone_svg",
    "trace_card",
]
