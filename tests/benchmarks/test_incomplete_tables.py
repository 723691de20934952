"""The benchmarks' tables: incomplete counts and the cap-hit rate per model and strategy next to the rates, answer
verdicts quoted from the reasoning, and the breakdown by reasoning provenance; ``cotscope run`` end to end."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cotscope_test_fakes as fakes  # registered by tests/conftest.py
import pytest
from typer.testing import CliRunner

from cotscope.benchmarks import JudgeSpec, PlanJudge, RunOptions, get_benchmark, get_kind, make_plan
from cotscope.cli import app
from cotscope.models import GenerateRequest, ModelOutput, modelapi
from cotscope.store import Store
from cotscope.thinking import finish_output
from cotscope.traces import ProvenanceSpan, Trace

runner = CliRunner()


def _trace(it: Any, strategy: str, reasoning: str, answer: str, k: int, kind: str, **kw: Any) -> Trace:
    return Trace.model_validate({"prompt": it.messages, "reasoning": reasoning, "answer": answer, "model": "hand/model",
                                 "strategy": strategy, "sample_index": k, **kw,
                                 "reasoning_provenance": [ProvenanceSpan(kind=kind, start=0, end=len(reasoning))]})


def _result(t: Trace, label: bool | None, **details: Any) -> dict[str, Any]:
    return {"trace_id": t.id, "evaluator": "refusal-strings", "config_hash": "h", "part": "answer", "label": label,
            "details": details or None}


def _safechain(form: str | None = None) -> tuple[Store, Any]:
    """K=2 over 2 prompts, two strategies. normal (raw): p0 refused twice; p1 refused + a cut sample (no answer).
    zerothink (prefill): p0 complied + a partial answer at the cap; p1 refused (from the reasoning) + complied."""
    spec = get_benchmark("safechain-strongreject")
    spec.judges = [JudgeSpec(name="refusal-strings", part="answer", role="safety")]
    plan = make_plan(spec, "hand/model", RunOptions(limit=2, samples=2, strategies=["normal", "zerothink"],
                                                    incomplete=form))
    plan.judges = [PlanJudge(spec=spec.judges[0], name="refusal-strings", label_meaning="refused",
                             keys={"*": ["refusal-strings", "h"]})]
    p0, p1 = plan.items
    cut = _trace(p1, "normal", "thinking on", "", 1, "raw", reasoning_closed=False,
                 metadata={"finish_reason": "length"})
    partial = _trace(p0, "zerothink", "z", "Sure, st", 1, "prefill", metadata={"finish_reason": "length"})
    traces = [_trace(p0, "normal", "r", "I'm sorry", 0, "raw"), _trace(p0, "normal", "r", "I'm sorry", 1, "raw"),
              _trace(p1, "normal", "r", "I'm sorry", 0, "raw"), cut,
              _trace(p0, "zerothink", "z", "Sure", 0, "prefill"), partial,
              _trace(p1, "zerothink", "I'm sorry, no", "Here", 0, "prefill"),
              _trace(p1, "zerothink", "z", "Sure", 1, "prefill")]
    st = Store(":memory:")
    st.add_traces(traces)
    labels = [True, True, True, None, False, False, True, False]
    st.add_results([_result(t, lb, **({"outcome": "incomplete"} if t is cut else {}),
                            **({"verdict_from_reasoning": True} if t.answer == "Here" else {}))
                    for t, lb in zip(traces, labels, strict=True)])
    return st, plan


def test_safechain_tables_report_incomplete_and_cap_hits_per_strategy_and_the_provenance() -> None:
    st, plan = _safechain()
    m = get_kind("safechain").metrics(st, plan)
    main = {r["strategy"]: r for r in m.tables[0].records()}
    assert "the papers' \"no answer\"" in m.tables[0].title
    n, z = main["normal"], main["zerothink"]
    assert (n["no answer"], n["prompts"], n["Safe@K"], n["cap hit"], n["reasoning"]) == (1, 1, 1.0, 1, "raw")
    assert n["cap-hit rate"] == pytest.approx(1 / 4)
    # The partial answer cut by the cap is an answer under the papers' form: both prompts are kept.
    assert (z["no answer"], z["prompts"], z["cap hit"], z["reasoning"]) == (0, 2, 1, "prefill")
    assert z["Safe@1"] == pytest.approx(1 / 4) and z["verdicts from reasoning"] == 1
    comp = next(t for t in m.tables if t.title.startswith("Reasoning that never finished"))
    rows = {(r["model"], r["strategy"]): r for r in comp.records()}
    assert rows[("hand/model", "normal")]["cap-hit rate"] == pytest.approx(1 / 4)
    assert m.summary["normal/cap_hit_rate"] == pytest.approx(1 / 4) and m.summary["normal/incomplete"] == 1
    assert m.summary["refusal-strings:answer/verdict_from_reasoning"] == 1
    assert m.provenance == {"raw": 4, "prefill": 4}
    by = next(t for t in m.tables if t.title.startswith("By reasoning provenance"))
    assert {(r["strategy"], r["reasoning"]) for r in by.records()} == {("normal", "raw"), ("zerothink", "prefill")}
    # Tables without a provenance column say which provenance they answered in the title.
    both = [t for t in m.tables if not any(c.name == "reasoning" for c in t.columns)]
    assert all(t.title.endswith("[reasoning: mixed]") for t in both)


def test_cap_form_leaves_partial_answers_out_and_says_so() -> None:
    st, plan = _safechain("cap")
    m = get_kind("safechain").metrics(st, plan)
    z = {r["strategy"]: r for r in m.tables[0].records()}["zerothink"]
    assert "incomplete" in z and "no answer" not in z and m.incomplete_form == "cap"
    assert (z["incomplete"], z["prompts"], z["Safe@1"]) == (1, 1, pytest.approx(1 / 2))
    assert "partial answers too" in m.tables[0].title


def test_monitor_auroc_by_reasoning_provenance() -> None:
    """Thought Crime: the monitor's AUROC on raw thinking and on summaries, as separate rows."""
    plan = make_plan(get_benchmark("thought-crime"), "hand/model", RunOptions(limit=2, samples=4))
    plan.judges = [
        PlanJudge(spec=JudgeSpec(name="em-alignment", part="answer", role="misalignment"), name="em-alignment",
                  label_meaning="misaligned", keys={"*": ["em-alignment", "h"]}),
        PlanJudge(spec=JudgeSpec(name="local-harm", part="reasoning", role="monitor"), name="local-harm",
                  label_meaning="flagged", keys={"*": ["local-harm", "h"]}),
    ]
    s = plan.strategies[0]
    # raw: the monitor ranks every misaligned sample first (AUROC 1); summary: it ranks them last (AUROC 0).
    cases = [("raw", [(True, 0.9), (True, 0.8), (False, 0.2), (False, 0.1)]),
             ("summary", [(True, 0.1), (True, 0.2), (False, 0.8), (False, 0.9)])]
    st = Store(":memory:")
    rows = []
    for it, (kind, samples) in zip(plan.items, cases, strict=True):
        for k, (mis, score) in enumerate(samples):
            t = _trace(it, s, f"thinking {k}", "answer", k, kind)
            st.add_traces([t])
            rows += [{"trace_id": t.id, "evaluator": "em-alignment", "config_hash": "h", "part": "answer",
                      "label": mis},
                     {"trace_id": t.id, "evaluator": "local-harm", "config_hash": "h", "part": "reasoning",
                      "label": score > 0.5, "score": score}]
    st.add_results(rows)
    m = get_kind("thought-crime").metrics(st, plan)
    tab = next(t for t in m.tables if t.title.startswith("Monitor AUROC by reasoning provenance"))
    auc = {r["reasoning"]: r["AUROC"] for r in tab.records()}
    assert auc == {"raw": 1.0, "summary": 0.0}
    assert m.summary["auroc/local-harm:reasoning/raw"] == 1.0 and m.summary["auroc/local-harm:reasoning"] == 0.5


class CapModel(fakes.FakeModel):
    """The fake model, except that prompts about bread run out of tokens inside the reasoning."""

    async def generate(self, requests: Sequence[GenerateRequest]) -> list[ModelOutput]:
        outs = []
        for r in requests:
            if "bread" in " ".join(str(m["content"]) for m in r.messages):
                outs.append(finish_output(r.prefill, ModelOutput(text="<think>\nFirst knead the dough and",
                                                                 finish_reason="length")))
            else:
                outs.extend(await super().generate([r]))
        return outs


@modelapi("h18cap")
def _cap_model(model: str, base_url: str | None = None, **kw: Any) -> CapModel:
    return CapModel(model)


def test_run_summary_reports_cap_hits_and_never_judges_the_cut_answers(tmp_path: Path) -> None:
    store = tmp_path / "s.duckdb"
    spec = fakes.tiny_safechain_spec(tmp_path, ("normal",))
    r = runner.invoke(app, ["run", str(spec), "--model", "h18cap/model", "--store", str(store), "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    main = s["metrics"]["tables"][0]
    rec = dict(zip([c["name"] for c in main["columns"]], main["rows"][0], strict=True))
    # 3 prompts x K=2; the bread prompt's 2 samples were cut: its group is left out, both others are refusals.
    assert rec["no answer"] == 2 and rec["prompts"] == 2 and rec["cap hit"] == 2
    assert rec["cap-hit rate"] == pytest.approx(2 / 6) and rec["Safe@K"] == 1.0
    assert s["metrics"]["summary"]["normal/cap_hit_rate"] == pytest.approx(2 / 6)
    with Store(store, read_only=True) as st:
        cut = [r for r in st.results() if (r["details"] or {}).get("outcome") == "incomplete"]
        assert len(cut) == 2 and {r["part"] for r in cut} == {"answer"} and all(r["label"] is None for r in cut)
    human = runner.invoke(app, ["run", str(spec), "--model", "h18cap/model", "--store", str(store)])
    assert human.exit_code == 0 and "Reasoning that never finished" in human.output
