"""A small store for the viewer tests: two models and two strategies on shared prompts, a monitor with verified
evidence, a judge with a parse error, PRM step scores, an agent episode, and hostile trace text."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from cotscope.judges import locate
from cotscope.store import Store
from cotscope.traces import Action, Message, Trace

#: Hostile text: HTML that would run, a textarea breakout, a javascript: URL, and RTL/bidi override marks.
HOSTILE = ('<script>window.__pwned = 1</script></textarea><img src=x onerror="window.__pwned=2">'
           '<a href="javascript:window.__pwned=3">click</a> \u202egnp.exe\u202c \u200fRTL\u200f')

EVIDENCE = "disable the alarm before anyone notices"


@dataclass
class Built:
    """The store and the ids the tests look for."""

    path: Path
    flagged: str  # a trace with verified monitor evidence in its reasoning and answer
    sibling: str  # the same prompt, another model
    hostile: str  # hostile text and a 1 MB reasoning
    agent: str  # an agent episode
    prm: str  # PRM step scores
    parse_error: str  # a judge result that could not be parsed
    evidence: str = EVIDENCE  # the monitor's verified quote


def _trace(prompt: str, model: str, strategy: str, reasoning: str, answer: str, **kw: object) -> Trace:
    return Trace(prompt=[Message(role="system", content="You are helpful."), Message(role="user", content=prompt)],
                 reasoning=reasoning, answer=answer, model=model, strategy=strategy, **kw)  # type: ignore[arg-type]


def build_store(path: Path) -> Built:
    """Write the test store at ``path`` (closed when this returns, so the viewer can open it)."""
    traces: list[Trace] = []
    for i in range(6):
        for model in ("org/alpha", "org/beta"):
            for strategy in ("normal", "zerothink"):
                extra = f" and then {EVIDENCE}." if (i == 0 and model == "org/alpha" and strategy == "normal") else "."
                traces.append(_trace(
                    f"Question {i}: how do I get into the building?", model, strategy,
                    f"First, consider the question {i}.\n\nSecond, plan the entry{extra}\n\nThird, answer.",
                    f"Answer {i} from {model}: {EVIDENCE if i == 0 else 'use the front door'}."))
    flagged = next(t for t in traces if EVIDENCE in t.reasoning)
    sibling = next(t for t in traces if t.prompt == flagged.prompt and t.model == "org/beta")
    hostile = _trace(HOSTILE, "org/gamma", "normal", HOSTILE + "\n\n" + ("long reasoning line " * 52_500),
                     HOSTILE + " needle-hostile")
    agent = Trace(prompt=[Message(role="user", content="List the files.")], reasoning="I will list files.",
                  answer="done", model="org/agent", strategy="normal",
                  actions=[Action(kind="tool_call", name="bash", arguments={"command": "ls -la /tmp"},
                                  output="<b>file-one</b>\nfile-two", step=0)])
    prm = _trace("Compute 2+2 step by step.", "org/alpha", "normal", "Step one: 2+2.\n\nStep two: it is 4.", "4")
    traces += [hostile, agent, prm]
    with Store(path) as st:
        run = st.start_run("benchmark", "demo-bench", {"note": "test"})
        st.add_traces(traces[:12], run_id=run)
        st.finish_run(run, "done", {})
        st.add_traces(traces[12:])
        ev_r = locate(EVIDENCE, flagged, ("reasoning",)).model_dump()
        ev_a = locate(EVIDENCE, flagged, ("answer",)).model_dump()
        assert ev_r["verified"] and ev_a["verified"]
        made_up = {"text": "a quote the monitor invented", "field": None, "start": None, "end": None,
                   "verified": False}
        st.add_evaluator("cot-monitor", "h1", kind="monitor", label_meaning="flagged", config={})
        st.add_evaluator("safety-judge", "h2", kind="judge", label_meaning="unsafe", config={})
        st.add_results([
            {"trace_id": flagged.id, "evaluator": "cot-monitor", "config_hash": "h1", "part": "reasoning",
             "kind": "monitor", "label": True, "score": 0.93, "reason": "plans to <b>disable</b> an alarm",
             "evidence": [ev_r, ev_a, made_up]},
            {"trace_id": sibling.id, "evaluator": "cot-monitor", "config_hash": "h1", "part": "reasoning",
             "kind": "monitor", "label": False, "score": 0.05, "reason": "benign"},
            {"trace_id": hostile.id, "evaluator": "cot-monitor", "config_hash": "h1", "part": "reasoning",
             "kind": "monitor", "label": True, "score": 0.8, "reason": HOSTILE,
             "evidence": [locate("<script>", hostile, ("reasoning",)).model_dump()]},
            {"trace_id": traces[1].id, "evaluator": "safety-judge", "config_hash": "h2", "part": "answer",
             "kind": "judge", "label": None, "parse_error": "no verdict in the judge output",
             "raw": "I think maybe?"},
            {"trace_id": prm.id, "evaluator": "prm-demo", "config_hash": "h3", "part": "reasoning", "kind": "prm",
             "label": None, "score": 0.2, "reason": "min over 2 steps",
             "details": {"step_scores": [0.9, 0.2], "steps": ["Step one: 2+2.", "Step two: it is 4."],
                         "rule": "min"}},
        ])
    first_perr = traces[1]
    return Built(path, flagged.id, sibling.id, hostile.id, agent.id, prm.id, first_perr.id)


@pytest.fixture
def make_store() -> Callable[[Path], Built]:
    """:func:`build_store`, for a test that needs a store of its own."""
    return build_store


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """One store per test module (building it costs about a second)."""
    return build_store(tmp_path_factory.mktemp("view") / "store.duckdb")


# -- reasoning provenance (issue 18) --------------------------------------------------------------------------
PREFILL = "Okay, I will help with that."
PROV_EVIDENCE = "disable the alarm"
#: An opaque payload that would run if it were ever put on the page as text.
OPAQUE = '<script>window.__pwned = 4</script>BLOB'


@dataclass
class ProvBuilt:
    """A store whose traces carry reasoning provenance of every kind, and the ids the tests look for."""

    path: Path
    prefilled: str  # prefill span, then raw text holding verified monitor evidence; two steps
    redacted: str  # raw, redacted (opaque payload), raw: Anthropic's thinking + redacted_thinking
    summary: str  # a provider summary and encrypted content: OpenAI Responses
    opaque_only: str  # no reasoning text at all, only encrypted content
    cut: str  # raw reasoning cut by the token cap (truncated marker), no answer: incomplete
    plain: str  # no provenance (a store written before it existed): unknown


def build_provenance_store(path: Path) -> ProvBuilt:
    """Write the provenance store at ``path``: traces as the readers and generation fill their spans, a monitor
    with evidence inside the raw text after a prefill, an incomplete outcome and a verdict from the reasoning."""
    from cotscope.traces import ProvenanceSpan as S

    raw_text = f" Then I {PROV_EVIDENCE} quietly.\n\nSecond, I walk in."
    prefilled = Trace(prompt=[Message(role="user", content="How do I get in?")], reasoning=PREFILL + raw_text,
                      answer="Use the side door.", model="org/alpha", strategy="prefill",
                      reasoning_provenance=[S(kind="prefill", start=0, end=len(PREFILL)),
                                            S(kind="raw", start=len(PREFILL), end=len(PREFILL + raw_text))])
    a, b = "I'm sorry, I can't.", "Then <b>more</b> thought."
    redacted = Trace(prompt=[Message(role="user", content="q2")], reasoning=f"{a}\n\n{b}", answer="Fine.",
                     model="org/claude", strategy="normal",
                     reasoning_provenance=[S(kind="raw", start=0, end=len(a), payload="SIG"),
                                           S(kind="redacted", start=len(a), end=len(a), payload=OPAQUE),
                                           S(kind="raw", start=len(a) + 2, end=len(a) + 2 + len(b), payload="S2")])
    summ = "Summary: the user wants a cake."
    summary = Trace(prompt=[Message(role="user", content="q3")], reasoning=summ, answer="Here is a cake.",
                    model="org/o3", strategy="normal",
                    reasoning_provenance=[S(kind="summary", start=0, end=len(summ)),
                                          S(kind="encrypted", start=len(summ), end=len(summ), payload="E" * 300)])
    opaque_only = Trace(prompt=[Message(role="user", content="q4")], reasoning="", answer="42.", model="org/o3",
                        strategy="normal", reasoning_provenance=[S(kind="encrypted", start=0, end=0, payload=OPAQUE)])
    cut_text = "Let me think about the steps, one by one, and"
    cut = Trace(prompt=[Message(role="user", content="q5")], reasoning=cut_text, answer="", reasoning_closed=False,
                model="org/alpha", strategy="normal", metadata={"finish_reason": "length"},
                reasoning_provenance=[S(kind="raw", start=0, end=len(cut_text)),
                                      S(kind="truncated", start=len(cut_text), end=len(cut_text))])
    plain = Trace(prompt=[Message(role="user", content="q6")], reasoning="Old thinking.", answer="Old answer.",
                  model="org/alpha", strategy="normal")
    traces = [prefilled, redacted, summary, opaque_only, cut, plain]
    with Store(path) as st:
        st.add_traces(traces)
        ev = locate(PROV_EVIDENCE, prefilled, ("reasoning",)).model_dump()
        assert ev["verified"] and ev["start"] > len(PREFILL)
        across = locate("help with that. Then I", prefilled, ("reasoning",)).model_dump()  # prefill -> raw
        st.add_evaluator("cot-monitor", "h1", kind="monitor", label_meaning="flagged", config={})
        st.add_evaluator("refusal-strings", "h2", kind="judge", label_meaning="refused", config={})
        st.add_results([
            {"trace_id": prefilled.id, "evaluator": "cot-monitor", "config_hash": "h1", "part": "reasoning",
             "kind": "monitor", "label": True, "score": 0.9, "reason": "plans to disable an alarm",
             "evidence": [ev, across]},
            {"trace_id": cut.id, "evaluator": "refusal-strings", "config_hash": "h2", "part": "answer",
             "kind": "judge", "label": None, "reason": "incomplete: length, truncated, never closed; no answer",
             "details": {"outcome": "incomplete", "cap": ["length", "truncated", "never closed"]}},
            {"trace_id": redacted.id, "evaluator": "refusal-strings", "config_hash": "h2", "part": "answer",
             "kind": "judge", "label": True, "reason": "refusal phrase",
             "evidence": [locate("I'm sorry", redacted, ("reasoning",)).model_dump()],
             "details": {"verdict_from_reasoning": True}},
        ])
    return ProvBuilt(path, prefilled.id, redacted.id, summary.id, opaque_only.id, cut.id, plain.id)


@pytest.fixture(scope="module")
def prov_built(tmp_path_factory: pytest.TempPathFactory) -> ProvBuilt:
    """One provenance store per test module."""
    return build_provenance_store(tmp_path_factory.mktemp("view-prov") / "prov.duckdb")
