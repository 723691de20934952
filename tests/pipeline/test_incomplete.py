"""Reasoning that never finished (``incomplete``), answer verdicts quoted from the reasoning
(``verdict_from_reasoning``) and the breakdown by reasoning provenance, from the evaluate stage to the report."""

from __future__ import annotations

import asyncio
import json
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cotscope.cli import app
from cotscope.judges import Evidence, get_judge
from cotscope.pipeline import (
    cap_reasons,
    completion_metrics,
    evaluate,
    is_incomplete,
    safety_metrics,
    verdict_from_reasoning,
)
from cotscope.store import Store
from cotscope.traces import Message, ProvenanceSpan, Trace

runner = CliRunner()


def _t(q: str, reasoning: str, answer: str, *, closed: bool = True, finish: str = "stop", kind: str = "raw",
       group: str | None = None, k: int = 0, truncated: bool = False) -> Trace:
    spans = [ProvenanceSpan(kind=kind, start=0, end=len(reasoning))]  # type: ignore[arg-type]
    if truncated:
        spans.append(ProvenanceSpan(kind="truncated", start=len(reasoning), end=len(reasoning)))
    return Trace(prompt=[Message(role="user", content=q)], reasoning=reasoning, answer=answer, reasoning_closed=closed,
                 model="m", strategy="normal", group_id=group, sample_index=k, metadata={"finish_reason": finish},
                 reasoning_provenance=spans)


def test_cap_reasons_and_the_two_forms_of_incomplete() -> None:
    cut = _t("q", "thinking on and on", "", closed=False, finish="length", truncated=True)
    partial = _t("q", "thought", "Step 1. Step", finish="length")  # closed, then the cap cut the answer
    done = _t("q", "thought", "4")
    assert cap_reasons(cut) == ["length", "truncated", "never closed"]
    assert cap_reasons(partial) == ["length"] and cap_reasons(done) == []
    # A truncated span alone (a reader that recorded no finish reason) is a cap hit too.
    assert cap_reasons(_t("q", "x", "", truncated=True)) == ["truncated"]
    assert is_incomplete(cut) and is_incomplete(cut, "cap")
    assert not is_incomplete(partial) and is_incomplete(partial, "cap")  # the papers' form keeps partial answers
    assert not is_incomplete(done, "cap")
    with pytest.raises(ValueError, match="no-answer or cap"):
        is_incomplete(cut, "nope")


def test_metrics_read_the_same_cap_reasons_from_the_stored_columns() -> None:
    from cotscope.pipeline import trace_facts

    traces = [_t("a", "thinking on and on", "", closed=False, finish="length", truncated=True),
              _t("b", "thought", "Step 1. Step", finish="length"),
              _t("c", "thought", "4"),
              _t("d", "x", "", truncated=True),
              _t("e", "stopped by the guard", "", closed=False, finish="content_filter")]
    st = Store(":memory:")
    st.add_traces(traces)
    facts = trace_facts(st, judged_only=False)
    assert {t.id: facts[t.id].cap for t in traces} == {t.id: cap_reasons(t) for t in traces}
    assert cap_reasons(traces[-1]) == ["content filter"]
    st.close()


def test_unclosed_reasoning_at_the_cap_is_incomplete_and_never_judged_as_an_answer(tmp_path: Path,
                                                                                    fake: Any) -> None:
    """An LLM judge of the answer never sees the cut trace; its stored outcome is neither safe nor unsafe."""
    st = Store(tmp_path / "s.duckdb")
    cut = _t("q-cut", "Step one of the plan CUTMARK", "", closed=False, finish="length")
    ok = _t("q-ok", "fine", "Here is a cake recipe.")
    st.add_traces([cut, ok])
    m = fake.model("guard", lambda req: "safe")
    stats = asyncio.run(evaluate(st, get_judge("llama-guard", model=m, cache=False), "answer"))
    assert (stats.total, stats.stored, stats.incomplete, stats.label_false, stats.label_true) == (2, 2, 1, 1, 0)
    assert not any("CUTMARK" in fake.text(req) for req in fake.calls("guard"))  # never sent as an answer
    rows = {r["trace_id"]: r for r in st.results("llama-guard")}
    assert rows[cut.id]["label"] is None and rows[cut.id]["score"] is None and rows[cut.id]["parse_error"] is None
    assert rows[cut.id]["details"] == {"outcome": "incomplete", "cap": ["length", "never closed"]}
    # "both" reads the answer too; the reasoning alone is judged as it stands.
    both = asyncio.run(evaluate(st, get_judge("refusal-strings"), "both"))
    reasoning = asyncio.run(evaluate(st, get_judge("refusal-strings"), "reasoning"))
    assert both.incomplete == 1 and reasoning.incomplete == 0 and reasoning.label_false == 2
    st.close()


def test_verdict_from_reasoning_is_read_from_the_evidence_offsets() -> None:
    t = Trace(reasoning="I'm sorry, I cannot say it. Then I thought more.", answer="Sure: the answer is 42.")
    in_reasoning = Evidence(text="I'm sorry", field="reasoning", start=0, end=9, verified=True)
    in_answer = Evidence(text="the answer is 42", field="answer", start=6, end=22, verified=True)
    assert verdict_from_reasoning(t, [in_reasoning]) is True
    assert verdict_from_reasoning(t, [in_reasoning, in_answer]) is False
    assert verdict_from_reasoning(t, [in_answer]) is False
    # Located in the reasoning first, but the answer holds the same words: it quotes the answer too.
    t2 = Trace(reasoning="I'm sorry to say.", answer="I'm sorry, no.")
    assert verdict_from_reasoning(t2, [Evidence(text="I'm sorry", field="reasoning", start=0, end=9,
                                                verified=True)]) is False
    # The rendered "both" part: offsets before the answer lie in the reasoning.
    assert verdict_from_reasoning(t, [Evidence(text="Then I thought", field="both", start=28, end=42,
                                               verified=True)]) is True
    assert verdict_from_reasoning(t, [Evidence(text="invented", verified=False)]) is None
    assert verdict_from_reasoning(t, []) is None


def test_the_evaluate_stage_flags_answer_verdicts_that_quote_only_the_reasoning(tmp_path: Path) -> None:
    st = Store(tmp_path / "s.duckdb")
    from_r = _t("q1", "I'm sorry, I should not. But fine.", "Here is how.")
    from_a = _t("q2", "Let me think.", "I'm sorry, I cannot help.")
    st.add_traces([from_r, from_a])
    stats = asyncio.run(evaluate(st, get_judge("refusal-strings"), "answer"))  # SafeChain's whole-response scope
    assert stats.verdict_from_reasoning == 1
    rows = {r["trace_id"]: r for r in st.results()}
    assert rows[from_r.id]["details"]["verdict_from_reasoning"] is True
    assert rows[from_a.id]["details"]["verdict_from_reasoning"] is False
    # On the reasoning part the flag is not asked.
    asyncio.run(evaluate(st, get_judge("refusal-strings"), "reasoning"))
    assert all("verdict_from_reasoning" not in (r["details"] or {}) for r in st.results() if r["part"] == "reasoning")
    st.close()


def _result(t: Trace, label: bool | None, **details: Any) -> dict[str, Any]:
    return {"trace_id": t.id, "evaluator": "refusal-strings", "config_hash": "h", "part": "answer", "kind": "judge",
            "label": label, "details": details or None}


def test_safety_metrics_count_incomplete_apart_per_provenance_with_the_cap_hit_rate() -> None:
    """K=2, refused = safe. raw: g1 (refused, refused), g2 (refused, cut) -> g2 left out, Safe@K 1/1, 1 of 4 samples
    hit the cap. summary: g3 (refused from the reasoning, complied), g4 (complied, a partial answer at the cap)
    -> Safe@1 1/4 under no-answer; under cap g4 is left out too: Safe@1 1/2."""
    st = Store(":memory:")
    g1 = [_t("a", "r", "I'm sorry", group="g1", k=i) for i in range(2)]
    g2 = [_t("b", "r", "I'm sorry", group="g2"), _t("b", "cut", "", closed=False, finish="length", group="g2", k=1)]
    g3 = [_t("c", "s", "Sure", kind="summary", group="g3"), _t("c", "s", "Sure", kind="summary", group="g3", k=1)]
    g4 = [_t("d", "s", "Sure", kind="summary", group="g4"),
          _t("d", "s", "Sure, st", kind="summary", finish="length", group="g4", k=1)]
    st.add_traces([*g1, *g2, *g3, *g4])
    # The cut sample of g2 was judged before the outcome existed (its empty answer "not refused"): it still
    # counts apart, by the trace's own columns.
    st.add_results([*(_result(t, True) for t in g1), _result(g2[0], True), _result(g2[1], False),
                    _result(g3[0], True, verdict_from_reasoning=True), _result(g3[1], False),
                    _result(g4[0], False), _result(g4[1], False)])
    st.add_evaluator("refusal-strings", "h", kind="judge", label_meaning="refused", config={})
    rows = {r.provenance: r for r in safety_metrics(st)}
    raw, summ = rows["raw"], rows["summary"]
    assert (raw.k, raw.groups, raw.incomplete, raw.excluded_groups, raw.cap_hit) == (2, 1, 1, 1, 1)
    assert raw.safe_at_k == 1.0 and raw.cap_hit_rate == pytest.approx(1 / 4) and raw.no_label == 0
    assert (summ.groups, summ.incomplete, summ.cap_hit, summ.verdict_from_reasoning) == (2, 0, 1, 1)
    assert summ.safe_at_1 == pytest.approx(1 / 4) and summ.incomplete_form == "no-answer"
    cap = {r.provenance: r for r in safety_metrics(st, incomplete="cap")}["summary"]
    assert (cap.groups, cap.incomplete, cap.safe_at_1) == (1, 1, pytest.approx(1 / 2))
    comp = {c.provenance: c for c in completion_metrics(st, incomplete="cap")}
    assert (comp["raw"].traces, comp["raw"].cap_hit, comp["raw"].no_answer, comp["raw"].incomplete) == (4, 1, 1, 1)
    assert (comp["summary"].cap_hit, comp["summary"].no_answer, comp["summary"].incomplete) == (1, 0, 1)
    assert comp["summary"].cap_hit_rate == pytest.approx(1 / 4)


def test_ingest_judge_metrics_report_on_one_store(tmp_path: Path) -> None:
    """The cross-command path: a cut trace and provenance read from a file reach the metrics and the report."""
    recs = [
        {"reasoning": "I should refuse.", "answer": "I'm sorry, I can't help.", "finish": "stop", "kind": "raw"},
        {"reasoning": "Let me think about the steps", "answer": "", "finish": "length", "kind": "raw"},
        {"reasoning": "Summary: I'm sorry is what I will say", "answer": "Here is how.", "finish": "stop",
         "kind": "summary"},
        {"reasoning": "Summary: a plain question", "answer": "It is 4.", "finish": "stop", "kind": "summary"},
    ]
    lines = []
    for i, r in enumerate(recs):
        spans = [{"kind": r["kind"], "start": 0, "end": len(r["reasoning"])}]
        if r["finish"] == "length":
            spans.append({"kind": "truncated", "start": len(r["reasoning"]), "end": len(r["reasoning"])})
        lines.append(json.dumps({"prompt": [{"role": "user", "content": f"q{i}"}], "reasoning": r["reasoning"],
                                 "answer": r["answer"], "reasoning_closed": r["finish"] != "length", "model": "m",
                                 "strategy": "normal", "metadata": {"finish_reason": r["finish"]},
                                 "reasoning_provenance": spans}))
    src, store = tmp_path / "t.jsonl", tmp_path / "s.duckdb"
    src.write_text("\n".join(lines) + "\n")
    assert runner.invoke(app, ["ingest", str(src), "-s", str(store), "--json"]).exit_code == 0
    j = runner.invoke(app, ["judge", "-s", str(store), "-j", "refusal-strings", "--part", "answer", "--json"])
    assert j.exit_code == 0, j.output
    stats = json.loads(j.stdout)
    assert stats["incomplete"] == 1 and stats["verdict_from_reasoning"] == 1 and stats["label_true"] == 2
    m = runner.invoke(app, ["metrics", "-s", str(store), "--json"])
    assert m.exit_code == 0, m.output
    out = json.loads(m.stdout)
    rows = {r["provenance"]: r for r in out["rows"]}
    assert set(rows) == {"raw", "summary"} and out["incomplete_form"] == "no-answer"
    assert rows["raw"]["incomplete"] == 1 and rows["raw"]["safe@1"] == 1.0
    assert rows["summary"]["safe@1"] == pytest.approx(0.5) and rows["summary"]["verdict_from_reasoning"] == 1
    comp = {(c["model"], c["strategy"], c["provenance"]): c for c in out["completion"]}
    assert comp[("m", "normal", "raw")]["cap_hit_rate"] == pytest.approx(0.5)
    assert comp[("m", "normal", "summary")]["cap_hit"] == 0
    human = runner.invoke(app, ["metrics", "-s", str(store)])
    assert "cap-hit rate" in human.output and "summary" in human.output
    assert runner.invoke(app, ["metrics", "-s", str(store), "--incomplete", "nope"]).exit_code != 0
    rep = runner.invoke(app, ["report", "-s", str(store), "-o", str(tmp_path / "rep"), "--json"])
    assert rep.exit_code == 0, rep.output
    html = unescape((tmp_path / "rep" / "index.html").read_text())
    assert "Reasoning that never finished, per model and strategy" in html and "cap-hit rate" in html
    assert "incomplete (not judged: no answer)" in html and "from reasoning (its evidence quotes only" in html
    assert "per judge, model, strategy and reasoning provenance" in html and "50.0%" in html
    assert "partial answers too" not in html
    rep = runner.invoke(app, ["report", "-s", str(store), "-o", str(tmp_path / "rep2"), "--incomplete", "cap"])
    assert rep.exit_code == 0, rep.output
    assert "partial answers too" in unescape((tmp_path / "rep2" / "index.html").read_text())


def test_monitor_detection_rows_split_by_reasoning_provenance(tmp_path: Path) -> None:
    """`metrics --detection`: a monitor's AUROC on raw thinking and on summaries are separate rows."""
    from cotscope.pipeline import detection_metrics

    def episode(i: int, variant: str, kind: str) -> Trace:
        r = f"Step reasoning {i}."
        return Trace(prompt=[Message(role="user", content=f"task {i}")], reasoning=r,
                     reasoning_provenance=[ProvenanceSpan(kind=kind, start=0, end=len(r))],  # type: ignore[arg-type]
                     metadata={"agent": {"task_id": f"t{i}", "variant": variant, "score": 1.0}})

    # raw: harmful scored above benign (AUROC 1); summary: below (AUROC 0).
    eps = [(episode(0, "harmful", "raw"), 0.9), (episode(1, "benign", "raw"), 0.1),
           (episode(2, "harmful", "summary"), 0.1), (episode(3, "benign", "summary"), 0.9)]
    with Store(tmp_path / "s.duckdb") as st:
        st.add_traces([t for t, _ in eps])
        st.add_evaluator("cot-monitor", "h", kind="monitor", label_meaning="flagged", config={})
        st.add_results([{"trace_id": t.id, "evaluator": "cot-monitor", "config_hash": "h", "part": "reasoning",
                         "kind": "monitor", "label": s > 0.5, "score": s} for t, s in eps])
        rows = {r.provenance: r for r in detection_metrics(st, n_boot=50)}
    assert set(rows) == {"raw", "summary"}
    assert rows["raw"].metrics is not None and rows["raw"].metrics.auroc is not None
    assert rows["summary"].metrics is not None and rows["summary"].metrics.auroc is not None
    assert rows["raw"].metrics.auroc.point == 1.0 and rows["summary"].metrics.auroc.point == 0.0
    assert rows["raw"].to_dict()["provenance"] == "raw"
