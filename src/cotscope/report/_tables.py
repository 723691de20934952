"""The store-wide metric tables (``cotscope metrics`` and the report's store section) as typed tables.

One column layout for both, so the terminal and the HTML page show the same figures: values stay numbers here
and become text in :func:`cotscope.report.format_rows` (the report) or the CLI's table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cotscope.pipeline import FORM_TEXT, CompletionRow, GuardRow, SafetyRow


def _incomplete_header(form: str) -> str:
    # The papers' "no answer" under their form, so a table says which count it holds.
    return "no answer" if form == "no-answer" else "incomplete"


def safety_table(rows: Sequence[SafetyRow], by: Sequence[str], form: str, title: str | None = None) -> dict[str, Any]:
    """Safe@1 / Safe@K / ConsSafe@K rows with the reasoning provenance each row answered, the incomplete samples
    left out (under ``form``), the cap-hit rate and the answer verdicts quoted from the reasoning."""
    cols = [("judge", "text"), *[(b, "text") for b in by], ("part", "text"), ("reasoning", "text"), ("K", "int"),
            ("groups", "int"), ("Safe@1", "rate"), ("Safe@K", "rate"), ("ConsSafe@K", "rate"),
            ("both safe", "rate"), ("no label", "int"), (_incomplete_header(form), "int"), ("cap-hit rate", "rate"),
            ("verdicts from reasoning", "int")]
    return {"title": title or f"SafeChain metrics per judge and reasoning provenance ({FORM_TEXT[form]}; a group "
                              "with one is left out of the rates)",
            "columns": [{"name": c, "kind": k} for c, k in cols],
            "rows": [[r.judge, *[r.by.get(b) for b in by], r.part, r.provenance, r.k, r.groups, r.safe_at_1,
                      r.safe_at_k, r.conssafe_at_k, r.both_safe_rate, r.no_label, r.incomplete, r.cap_hit_rate,
                      r.verdict_from_reasoning] for r in rows]}


def completion_table(rows: Sequence[CompletionRow], form: str) -> dict[str, Any]:
    """Cap hits and incomplete traces per model, strategy and reasoning provenance."""
    cols = [("model", "text"), ("strategy", "text"), ("reasoning", "text"), ("traces", "int"), ("cap hit", "int"),
            ("cap-hit rate", "rate"), ("no answer", "int")]
    if form != "no-answer":
        cols.append(("incomplete", "int"))
    return {"title": f"Reasoning that never finished, per model and strategy ({FORM_TEXT[form]}; cap hit: finish "
                     "reason length, a truncated span, or reasoning never closed)",
            "columns": [{"name": c, "kind": k} for c, k in cols],
            "rows": [[r.model, r.strategy, r.provenance, r.traces, r.cap_hit, r.cap_hit_rate, r.no_answer,
                      *([r.incomplete] if form != "no-answer" else [])] for r in rows]}


def guard_table(rows: Sequence[GuardRow], by: Sequence[str]) -> dict[str, Any]:
    """What ``cotscope guard`` did with the traffic it recorded, per guard key (and ``by`` values)."""
    cols = [("guard", "text"), *[(b, "text") for b in by], ("requests", "int"), ("passed", "int"),
            ("blocked", "int"), ("flagged", "int"), ("logged", "int"), ("upstream err", "int"),
            ("flag rate", "rate"), ("no verdict", "int"), ("monitor errors", "int"), ("fail-decided", "int"),
            ("stop offset p50", "num"), ("latency p50", "num"), ("latency p95", "num"), ("TTFT p50", "num")]
    return {"title": "Guard traffic per monitor (flag rate: over requests with a verdict; flagged/logged: flagged "
                     "and let through by the policy; fail-decided: decided by a failed check; seconds)",
            "columns": [{"name": c, "kind": k} for c, k in cols],
            "rows": [[r.evaluator, *[r.by.get(b) for b in by], r.requests, r.passed, r.blocked, r.flagged,
                      r.logged, r.error, r.flag_rate, r.no_verdict, r.monitor_errors, r.fail_applied,
                      r.median_stop_offset, r.latency_p50_s, r.latency_p95_s, r.ttft_p50_s] for r in rows]}
