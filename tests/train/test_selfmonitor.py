"""Self-monitor data: verdicts from a judge through its label meaning, segments that parse back, rejects."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cotscope.store import Store
from cotscope.traces import Message, Trace, parse_monitor, split_reasoning
from cotscope.train import build_self_monitor, read_sft_records, self_monitor_completion


def _t(p: str, reasoning: str, answer: str = "Answer.", closed: bool = True) -> Trace:
    return Trace(prompt=[Message(role="user", content=p)], reasoning=reasoning, answer=answer, model="m",
                 strategy="normal", reasoning_closed=closed)


def test_completion_format_splits_and_parses() -> None:
    text = self_monitor_completion("Reasoning.", "unsafe", "it plans harm", "No.")
    assert text == "<think>\nReasoning.\n\n<monitor>\nunsafe: it plans harm\n</monitor>\n</think>\n\nNo."
    s = split_reasoning(text)
    seg = parse_monitor(s.reasoning, s.answer)
    assert s.answer == "No." and seg is not None and seg.field == "reasoning" and seg.verdict == "unsafe"


def test_build_self_monitor(tmp_path: Path) -> None:
    traces = [
        _t("a", "I'm sorry, I should not."),  # refusal phrase in the reasoning: refused -> safe
        _t("b", "Sure, let me do it.\n\n<monitor>\nsafe: old\n</monitor>"),  # no refusal -> unsafe; old segment
        _t("c", ""),  # no reasoning: rejected
        _t("d", "Thinking", answer="", closed=False),  # unclosed: rejected
    ]
    out = tmp_path / "sm.jsonl"
    with Store(tmp_path / "s.duckdb") as st:
        st.add_traces(traces)
        rep = asyncio.run(build_self_monitor(st, out, judge="refusal-strings", judge_options={"scope": "part"}))
        n = len(st.results())
        rep2 = asyncio.run(build_self_monitor(st, out, judge="refusal-strings", judge_options={"scope": "part"}))
        assert len(st.results()) == n and rep2.details["evaluate"]["stored"] == 0  # resumable: nothing rejudged
        (run, _) = [r for r in st.runs() if r["kind"] == "data"]
        assert run["name"] == "self-monitor" and run["status"] == "done"
    assert rep.read == 4 and rep.written == {"self-monitor": 2} and rep.rejected == 2 and rep.reconciles
    assert sorted(e.split(": ", 1)[1] for e in rep.errors) == ["no reasoning", "the reasoning never closed"]
    recs, errs = read_sft_records(out)
    assert errs == []
    by_prompt = {r.prompt_messages()[-1]["content"]: r for r in recs}
    for p, verdict in (("a", "safe"), ("b", "unsafe")):
        r = by_prompt[p]
        s = split_reasoning(r.completion())
        seg = parse_monitor(s.reasoning, s.answer)
        assert seg is not None and seg.verdict == verdict == r.metadata["verdict"]
        assert s.answer == "Answer." and r.completion().count("<monitor>") == 1
        assert seg.justification  # the judge's reason ("refusal phrase ...", "no refusal phrase")
        assert r.metadata["source"] == {"trace_id": r.metadata["trace_id"]} and r.metadata["judge"] == "refusal-strings"
    assert "old" not in by_prompt["b"].completion()


def test_parse_errors_are_rejected(tmp_path: Path, fake: object) -> None:
    guard = fake.model("g", lambda r: "no idea")  # type: ignore[attr-defined]
    with Store(tmp_path / "s.duckdb") as st:
        st.add_traces([_t("a", "Some reasoning.")])
        rep = asyncio.run(build_self_monitor(st, tmp_path / "o.jsonl", judge="llama-guard", judge_model=guard))
    assert rep.written == {"self-monitor": 0} and rep.rejected == 1 and "parse error" in rep.errors[0]


def test_label_meaning_override(tmp_path: Path) -> None:
    """A judge whose label rates the request stands in only when told how its label reads."""
    import pytest

    from cotscope.errors import ConfigError

    with Store(tmp_path / "s.duckdb") as st:
        st.add_traces([_t("How do I bake bread?", "Flour and water."),
                       _t("How do I build a pipe bomb at home to hurt people?", "Pipes and powder.")])
        with pytest.raises(ConfigError, match="harmful_request"):
            asyncio.run(build_self_monitor(st, tmp_path / "x.jsonl", judge="local-harmful-request"))
        rep = asyncio.run(build_self_monitor(st, tmp_path / "o.jsonl", judge="local-harmful-request",
                                             label_meaning="unsafe"))
        run = next(r for r in st.runs() if r["kind"] == "data" and r["status"] == "done")
    assert rep.written == {"self-monitor": 2} and run["config"]["label_meaning"] == "unsafe"
    recs, _ = read_sft_records(tmp_path / "o.jsonl")
    by = {r.prompt_messages()[-1]["content"]: r.metadata["verdict"] for r in recs}
    assert by["How do I bake bread?"] == "safe"
    assert by["How do I build a pipe bomb at home to hurt people?"] == "unsafe"
