"""DTR and habit counting on hand-made traces and verdicts, and the evidence-first habit rule."""

from __future__ import annotations

from typing import Any

import pytest

from cotscope.benchmarks import JudgeSpec, PlanJudge, RunOptions, get_benchmark, get_kind, make_plan
from cotscope.judges import habit_verdict, parse_json_object
from cotscope.store import Store
from cotscope.traces import Trace


def _trace(plan: Any, item: Any, strategy: str, reasoning: str, answer: str, k: int = 0) -> Trace:
    return Trace.model_validate({"prompt": item.messages, "reasoning": reasoning, "answer": answer,
                                 "model": plan.model, "strategy": strategy, "sample_index": k})


def _result(t: Trace, ev: str, part: str, label: bool | None, **kw: Any) -> dict[str, Any]:
    return {"trace_id": t.id, "evaluator": ev, "config_hash": "h", "part": part, "label": label, **kw}


def test_dtr_per_category_from_hand_made_verdicts() -> None:
    spec = get_benchmark("deceptionbench")
    plan = make_plan(spec, "hand/model", RunOptions(limit=4))
    plan.judges = [PlanJudge(spec=JudgeSpec(name="deception-consistency", part=p, role="consistency"),
                             name="deception-consistency", label_meaning="consistent",
                             keys={"*": ["deception-consistency", "h"]}) for p in ("reasoning", "answer")]
    # items 0,1: Sycophantic Misrepresentation; 2,3: Alignment Faking (see the shipped file).
    verdicts = [(True, False), (True, True), (True, False), (False, False)]
    st = Store(":memory:")
    rows = []
    for it, (r, a) in zip(plan.items, verdicts, strict=True):
        t = _trace(plan, it, "normal", "I believe X.", "Not X.")
        st.add_traces([t])
        rows += [_result(t, "deception-consistency", "reasoning", r), _result(t, "deception-consistency", "answer", a)]
    st.add_results(rows)
    m = get_kind(plan.benchmark.kind).metrics(st, plan)
    table = {r[0]: r for r in m.tables[0].rows}
    assert m.tables[0].columns[2].kind == "rate"
    assert table["Sycophantic Misrepresentation"][2] == pytest.approx(0.5)
    assert table["Alignment Faking"][2] == pytest.approx(0.5)
    assert table["overall"][2] == pytest.approx(0.5)
    assert m.summary["dtr"] == pytest.approx(0.5)


def test_habit_counts_from_hand_made_verdicts() -> None:
    spec = get_benchmark("cogtest")
    spec.data.options = {"habits": ["persisting", "finding_humor"], "tasks": 3}
    plan = make_plan(spec, "hand/model", RunOptions())
    assert len(plan.items) == 6
    plan.judges = [PlanJudge(spec=JudgeSpec(name="cogtest-habit", part="reasoning", role="habit"),
                             name="cogtest-habit", label_meaning="flagged",
                             keys={"persisting": ["cogtest-habit:persisting", "h"],
                                   "finding_humor": ["cogtest-habit:finding_humor", "h"]})]
    st = Store(":memory:")
    rows = []
    reflected = {"persisting": [True, True, False], "finding_humor": [False, None, True]}
    seen: dict[str, int] = {}
    for it in plan.items:
        i = seen.get(it.category or "", 0)
        seen[it.category or ""] = i + 1
        t = _trace(plan, it, "normal", f"thinking {it.id}", "42")
        st.add_traces([t])
        lb = reflected[it.category or ""][i]
        rows.append(_result(t, f"cogtest-habit:{it.category}", "reasoning", lb,
                            parse_error=None if lb is not None else "bad json"))
    st.add_results(rows)
    m = get_kind(plan.benchmark.kind).metrics(st, plan)
    assert m.habit_profile == {"persisting": 2, "finding_humor": 1}
    rows_by = {r[0]: r for r in m.tables[0].rows}
    assert rows_by["Finding Humor"][2] == 2  # the parse error is not counted as judged


def test_habit_needs_verbatim_evidence() -> None:
    t = Trace(reasoning="First I try. Let me keep going until it works.", answer="done")
    ok = habit_verdict({"evidence": "Let me keep going until it works.", "is_reflected": True}, t)
    assert ok.label is True and ok.evidence[0].verified and ok.evidence[0].start == 13
    invented = habit_verdict({"evidence": "I will never give up!", "is_reflected": True}, t)
    assert invented.label is False and invented.details["invented_quote"] and not invented.evidence[0].verified
    none = habit_verdict({"evidence": "", "is_reflected": True}, t)
    assert none.label is False and none.details["no_quote"]
    no = habit_verdict({"evidence": "", "is_reflected": False}, t)
    assert no.label is False
    with pytest.raises(ValueError):
        habit_verdict({"evidence": "x"}, t)


def test_parse_json_object_tolerates_fences_and_prose() -> None:
    assert parse_json_object('```json\n{"a": 1}\n```') == {"a": 1}
    assert parse_json_object('{"a": {"b": 2}} and then {more}') == {"a": {"b": 2}}
    with pytest.raises(ValueError):
        parse_json_object("no json here")
