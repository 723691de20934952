"""Provenance from generation, and evaluators told which reasoning kinds they read (issue 18)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from cotscope.judges import get_judge
from cotscope.models import GenerateRequest, ModelOutput
from cotscope.models._prefill import finish_output
from cotscope.pipeline import evaluate, generate
from cotscope.store import Store
from cotscope.thinking import MoreThink, prefill_spans
from cotscope.traces import Message, PromptItem, ProvenanceSpan, Trace, provenance_label


class _Scripted:
    """Continues every request's prefill with a fixed text, as a completions backend would."""

    name = "scripted"

    def __init__(self, text: str, finish: str = "stop") -> None:
        self.text, self.finish = text, finish

    async def generate(self, requests: Sequence[GenerateRequest]) -> list[ModelOutput]:
        return [finish_output(r.prefill, ModelOutput(text=self.text, finish_reason=self.finish,
                                                     prefill_applied="rendered")) for r in requests]

    async def aclose(self) -> None:
        pass


def _gen(tmp_path: Path, strategy: str, text: str, finish: str = "stop") -> Trace:
    with Store(tmp_path / f"{abs(hash(strategy))}.duckdb") as st:
        asyncio.run(generate(st, [PromptItem(messages=[{"role": "user", "content": "q"}], line=1)],
                             model="x/y", strategy=strategy, backend=_Scripted(text, finish)))
        (t,) = st.traces()
    return t


def test_generated_traces_carry_prefill_raw_and_truncated(tmp_path: Path) -> None:
    t = _gen(tmp_path, "zerothink", "The answer.")
    assert (t.reasoning, t.answer) == ("", "The answer.")
    assert [(s.kind, s.start, s.end) for s in t.reasoning_provenance] == [("prefill", 0, 0)]
    t = _gen(tmp_path, "lessthink", "Sure.")
    assert provenance_label(t) == "prefill" and t.reasoning_provenance[0].end == len(t.reasoning) > 0
    t = _gen(tmp_path, "normal", "<think>I was still thinking", "length")
    assert not t.reasoning_closed
    assert [(s.kind, s.start, s.end) for s in t.reasoning_provenance] == [("raw", 0, 20), ("truncated", 20, 20)]
    t = _gen(tmp_path, "prefill:<think>\\nOkay.", " then more.</think>A")
    assert [(s.kind, s.start, s.end) for s in t.reasoning_provenance] == [("prefill", 0, 5), ("raw", 5, 16)]


def test_morethink_rethink_strings_are_prefill() -> None:
    class Rounds:
        name = "rounds"

        async def generate(self, requests: Sequence[GenerateRequest]) -> list[ModelOutput]:
            return [ModelOutput(text=r.prefill + ("A." if r.prefill.endswith("\n") else " B."), completion_tokens=1)
                    for r in requests]

    strat = MoreThink(think_budget=10, enforce_num=1)
    (out,) = asyncio.run(strat.generate(Rounds(), [GenerateRequest(messages=[{"role": "user", "content": "q"}])]))
    spans = strat.provenance(out)
    wait = next(s for s in spans if s["kind"] == "prefill")
    assert out.reasoning[wait["start"]:wait["end"]] in ("Wait", "Let me think again")
    assert [s["kind"] for s in spans] == ["raw", "prefill", "raw"]
    assert prefill_spans("<think>\n", "abc") == [{"kind": "raw", "start": 0, "end": 3}]


def test_reasoning_kinds_restrict_what_the_judge_reads_and_key_results(tmp_path: Path) -> None:
    st = Store(tmp_path / "s.duckdb")
    text = "I'm sorry, I can't help.\n\nSummary: all fine."
    st.add_traces([Trace(prompt=[Message(role="user", content="q")], reasoning=text, answer="ok",
                         reasoning_provenance=[ProvenanceSpan(kind="raw", start=0, end=24),
                                               ProvenanceSpan(kind="summary", start=26, end=len(text))])])
    j = get_judge("refusal-strings")
    raw = asyncio.run(evaluate(st, j, "reasoning", reasoning_kinds="raw"))
    summ = asyncio.run(evaluate(st, j, "reasoning", reasoning_kinds=["summary"]))
    whole = asyncio.run(evaluate(st, j, "reasoning"))
    assert len({raw.config_hash, summ.config_hash, whole.config_hash}) == 3  # never mixed
    assert (raw.stored, raw.label_true, summ.stored, summ.label_true, whole.label_true) == (1, 1, 1, 0, 1)
    again = asyncio.run(evaluate(st, j, "reasoning", reasoning_kinds="raw"))
    assert (again.stored, again.skipped) == (0, 1)
    assert st.get(next(iter(st.trace_ids()))).reasoning == text  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="unknown reasoning kind"):
        asyncio.run(evaluate(st, j, "reasoning", reasoning_kinds="thoughts"))
    st.close()


def test_evidence_read_from_restricted_kinds_points_into_the_whole_reasoning(tmp_path: Path) -> None:
    from cotscope.judges import Evidence, JudgeResult
    from cotscope.pipeline._evaluate import map_evidence_back

    text = "Summary: fine.\n\nStep one, then the SECRET plan."
    t = Trace(prompt=[Message(role="user", content="q")], reasoning=text, answer="ok",
              reasoning_provenance=[ProvenanceSpan(kind="summary", start=0, end=14),
                                    ProvenanceSpan(kind="raw", start=16, end=len(text))])
    st = Store(tmp_path / "s.duckdb")
    st.add_traces([t])
    asyncio.run(evaluate(st, get_judge("phrase", phrases=["SECRET"]), "reasoning", reasoning_kinds="raw"))
    (r,) = st.results()
    (ev,) = r["evidence"]
    assert ev["verified"] and text[ev["start"]:ev["end"]] == "SECRET"  # offsets in the stored reasoning
    st.close()
    # A quote that runs across the separator between two pieces is not in the trace: kept, unverified.
    both = JudgeResult(label=True, evidence=[Evidence(text="fine.\n\nStep", field="reasoning", start=9, end=20,
                                                      verified=True)])
    (moved,) = map_evidence_back(both, t, ("raw", "summary")).evidence
    assert (moved.verified, moved.start, moved.end) == (False, None, None)
