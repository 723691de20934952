"""The ``<monitor>`` segment: parsing, formatting, stripping, and the ``monitor`` part end to end."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cotscope.cli import app
from cotscope.judges import JudgeResult, get_judge
from cotscope.judges._evidence import verify
from cotscope.store import Store
from cotscope.traces import (
    TRACE_PARTS,
    Message,
    Trace,
    format_monitor,
    parse_monitor,
    split_reasoning,
    strip_monitor,
)

runner = CliRunner()


def _trace(reasoning: str, answer: str = "Fine.") -> Trace:
    return Trace(prompt=[Message(role="user", content="q")], reasoning=reasoning, answer=answer, model="m")


def test_format_parse_round_trip_and_offsets() -> None:
    seg_text = format_monitor("unsafe", "it plans to hurt someone")
    assert seg_text == "<monitor>\nunsafe: it plans to hurt someone\n</monitor>"
    reasoning = "Step one.\n\n" + seg_text
    seg = parse_monitor(reasoning, "answer")
    assert seg is not None
    assert (seg.verdict, seg.justification, seg.field) == ("unsafe", "it plans to hurt someone", "reasoning")
    assert reasoning[seg.start:seg.end] == seg.text == "\nunsafe: it plans to hurt someone\n"
    with pytest.raises(ValueError):
        format_monitor("maybe", "x")  # type: ignore[arg-type]


@pytest.mark.parametrize(("inner", "verdict"), [
    ("UNSAFE - bad", "unsafe"), ("Safe. ok", "safe"), ("**Unsafe**: x", "unsafe"), ("safely done", None),
    ("I cannot tell", None), ("", None), ("unsafe", "unsafe"),
])
def test_verdict_word(inner: str, verdict: str | None) -> None:
    seg = parse_monitor(f"<monitor>{inner}</monitor>")
    assert seg is not None and seg.verdict == verdict


def test_first_complete_segment_reasoning_then_answer() -> None:
    assert parse_monitor("no segment", "plain") is None
    assert parse_monitor("<monitor>unsafe: open, never closed", "") is None
    seg = parse_monitor("<monitor>unclosed", "A <monitor>safe: fine</monitor> B <monitor>unsafe</monitor>")
    assert seg is not None and (seg.field, seg.verdict, seg.justification) == ("answer", "safe", "fine")
    seg = parse_monitor("<monitor>unsafe: r</monitor>", "<monitor>safe: a</monitor>")
    assert seg is not None and seg.field == "reasoning" and seg.verdict == "unsafe"


def test_strip_monitor() -> None:
    assert strip_monitor("R.\n\n<monitor>\nsafe: x\n</monitor>") == "R."
    assert strip_monitor("a <monitor>x</monitor> b <monitor>y</monitor>") == "a b"
    assert strip_monitor("keep <monitor>unclosed") == "keep <monitor>unclosed"
    assert strip_monitor("  plain  ") == "  plain  "


def test_splitter_keeps_segment_in_reasoning_and_part() -> None:
    raw = "<think>\nI reason.\n\n" + format_monitor("safe", "harmless maths") + "\n</think>\n\n42."
    s = split_reasoning(raw)
    assert s.answer == "42." and "<monitor>" in s.reasoning
    t = _trace(s.reasoning, s.answer)
    assert "monitor" in TRACE_PARTS
    assert t.part("monitor") == "\nsafe: harmless maths\n"
    assert _trace("no segment").part("monitor") == ""


def test_missing_segment_is_parse_error_blank_is_empty() -> None:
    j = get_judge("refusal-strings", scope="part")
    none, blank = asyncio.run(j.judge([_trace("no segment"), _trace("x <monitor>  </monitor>")], "monitor"))
    assert none.parse_error and none.label is None
    assert blank.parse_error is None and blank.details.get("empty_part")
    assert JudgeResult.no_text(_trace("r"), "reasoning").details.get("empty_part")


def test_judge_part_monitor_end_to_end(tmp_path: Path) -> None:
    # A self-monitor completion whose segment (only) holds a refusal phrase, one whose segment does not, and
    # a trace with no segment at all; ingested as {prompt, response} pairs.
    data = tmp_path / "t.jsonl"
    responses = [
        "<think>\nPlan.\n\n" + format_monitor("unsafe", "I'm sorry, this plan is harmful") + "\n</think>\n\nOK.",
        "<think>\nPlan.\n\n" + format_monitor("safe", "nothing harmful") + "\n</think>\n\nI'm sorry, no.",
        "<think>\nPlan.\n</think>\n\nOK.",
    ]
    data.write_text("".join(json.dumps({"prompt": f"p{i}", "response": r}) + "\n" for i, r in enumerate(responses)))
    store = tmp_path / "s.duckdb"
    r = runner.invoke(app, ["ingest", str(data), "--store", str(store), "--model", "m", "--json"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["judge", "--judge", "refusal-strings", "--part", "monitor", "--option", "scope=part",
                            "--store", str(store), "--json"])
    assert r.exit_code == 0, r.output
    with Store(store) as st:
        res = st.results("refusal-strings")
        traces = {t.id: t for t in st.traces()}
    assert len(res) == 3 and {x["part"] for x in res} == {"monitor"}
    by_answer = {traces[x["trace_id"]].prompt_text: x for x in res}
    hit, clean, missing = by_answer["p0"], by_answer["p1"], by_answer["p2"]
    assert hit["label"] is True and clean["label"] is False  # p1's answer refuses, its monitor does not
    assert missing["parse_error"] and missing["label"] is None
    ev = hit["evidence"][0]
    assert ev["field"] == "monitor" and ev["verified"]
    t0 = traces[hit["trace_id"]]
    assert t0.part("monitor")[ev["start"]:ev["end"]] == ev["text"]
    from cotscope.judges import Evidence

    assert verify(Evidence(**ev), t0).verified
    assert not verify(Evidence(**{**ev, "start": 0, "end": 3, "text": "zzz"}), t0).verified
