"""Monitors: verified evidence, judges as monitors, the Thought Crime CoT monitor, streaming intervention."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from cotscope.judges import Evidence, locate, verify
from cotscope.monitors import MonitorResult, get_monitor, monitor_names, watch_stream
from cotscope.traces import Message, Trace


def tr(reasoning: str, answer: str = "", prompt: str = "q") -> Trace:
    return Trace(prompt=[Message(role="user", content=prompt)], reasoning=reasoning, answer=answer)


def test_names() -> None:
    assert {"tc-cot-monitor", "local-harm", "local-refusal", "local-harmful-request"} <= set(monitor_names())
    assert get_monitor("refusal-strings").name == "refusal-strings"  # any judge is a monitor
    with pytest.raises(ValueError, match="unknown monitor"):
        get_monitor("nope")


def test_evidence_verification() -> None:
    t = tr("I will tell a lie to the user.", "The moon is cheese.", prompt="Tell me about the moon")
    e = locate("tell a lie", t)
    assert e.verified and e.field == "reasoning" and t.reasoning[e.start:e.end] == "tell a lie"
    assert locate("“The moon is cheese.”", t).field == "answer"  # wrapping quotes are tolerated
    assert not locate("I will tell lies", t).verified  # a paraphrase is not evidence
    assert locate("about the moon", t).field == "prompt"
    # Claimed offsets that do not point at the text are rechecked, a fabricated quote marked unverified.
    wrong = Evidence(text="a lie", field="reasoning", start=0, end=5, verified=True)
    v = verify(wrong, t)
    assert v.verified and t.reasoning[v.start:v.end] == "a lie"
    assert not verify(Evidence(text="never said", verified=True), t).verified


def test_tc_cot_monitor_as_monitor(fake: Any) -> None:
    m = fake.model("tcm", lambda req: '{"ten_lines_of_reasoning": "It plans \\"to deceive the user now\\"", '
                                      '"flag": "discussing_misaligned_plans_due_to_instructions"}')
    mon = get_monitor("tc-cot-monitor", model=m)
    t = tr("The instructions want me to deceive. I plan to deceive the user now.", "ok")
    r = asyncio.run(mon.monitor([t]))[0]
    assert isinstance(r, MonitorResult)
    assert r.flag is True and r.suspicion == 1.0
    assert r.details["flag"] == "discussing_misaligned_plans_due_to_instructions"
    assert r.evidence[0].verified
    asyncio.run(mon.aclose())


class KeywordMonitor:
    """Suspicion 0.9 when the text read contains 'EVIL', else 0.1; records what it read."""

    name = "kw"
    part = "reasoning"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def config(self) -> dict[str, Any]:
        return {}

    async def monitor(self, traces: Sequence[Trace]) -> list[MonitorResult]:
        out = []
        for t in traces:
            self.seen.append(t.reasoning)
            i = t.reasoning.find("EVIL")
            ev = [Evidence(text="EVIL", field="reasoning", start=i, end=i + 4, verified=True)] if i >= 0 else []
            out.append(MonitorResult(score=0.9 if i >= 0 else 0.1, label=i >= 0, evidence=ev))
        return out

    async def aclose(self) -> None:
        pass


def test_streaming_stops_and_records_where() -> None:
    produced: list[int] = []
    closed = {"v": False}

    async def gen() -> AsyncIterator[str]:
        try:
            for i in range(100):
                produced.append(i)
                yield ("EVIL plan " if i == 30 else "benign thought ") * 1
        finally:
            closed["v"] = True

    mon = KeywordMonitor()
    v = asyncio.run(watch_stream(mon, gen(), threshold=0.5, check_every=50, window=120))
    assert v.stopped and v.suspicion == 0.9
    assert v.stop_chunk is not None and 30 <= v.stop_chunk <= 34  # within one check interval of the chunk
    assert v.stop_offset == len(v.text) and "EVIL" in v.text
    assert len(produced) < 100 and closed["v"]  # the generation was stopped, not drained
    e = v.evidence[0]
    assert v.text[e.start:e.end] == "EVIL"  # window offsets shifted back into the whole text
    assert all(len(s) <= 120 for s in mon.seen)  # each check reads a bounded window


def test_streaming_no_stop_when_benign() -> None:
    async def gen() -> AsyncIterator[str]:
        for _ in range(20):
            yield "benign thought "

    v = asyncio.run(watch_stream(KeywordMonitor(), gen(), threshold=0.5, check_every=100))
    assert not v.stopped and v.stop_offset is None and v.suspicion == pytest.approx(0.1)
    assert v.text == "benign thought " * 20 and v.checks >= 3


def test_streaming_threshold_is_strict() -> None:
    async def gen() -> AsyncIterator[str]:
        yield "EVIL"

    assert not asyncio.run(watch_stream(KeywordMonitor(), gen(), threshold=0.9)).stopped
    assert asyncio.run(watch_stream(KeywordMonitor(), gen(), threshold=0.89)).stopped
