"""Judges used as monitors, and the built-in monitors (Thought Crime CoT monitor, local classifiers)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cotscope.judges import Judge, Part, get_judge, verify
from cotscope.monitors._types import MonitorResult, monitor
from cotscope.traces import Trace


class JudgeMonitor:
    """A judge as a monitor: suspicion is the judge's score, the flag its label, evidence re-verified.

    Evidence is checked again against the trace here, whatever the judge claimed, so a monitor result
    never carries an unchecked quote.

    Args:
        judge: the judge to wrap.
        part: the part of the trace it reads (default ``both``).
        name: the monitor name (default: the judge's).
    """

    def __init__(self, judge: Judge, part: Part = "both", name: str | None = None) -> None:
        self.judge = judge
        self.part: Part = part
        self.name = name or judge.name
        self.label_meaning: str = judge.label_meaning
        self.preferred_batch: int = judge.preferred_batch

    @classmethod
    def from_name(cls, name: str, *, model: str | None = None, part: Part = "both", **options: Any) -> JudgeMonitor:
        """Wrap the registered judge ``name``."""
        return cls(get_judge(name, model=model, **options), part=part)

    def config(self) -> dict[str, Any]:
        """The judge's config plus the part read."""
        return {"monitor": self.name, "part": self.part, "judge": self.judge.config()}

    async def monitor(self, traces: Sequence[Trace]) -> list[MonitorResult]:
        """One verified result per trace."""
        results = await self.judge.judge(traces, self.part)
        out = []
        for t, r in zip(traces, results, strict=True):
            m = MonitorResult.model_validate(r.model_dump())
            m.evidence = [verify(e, t) for e in r.evidence]
            out.append(m)
        return out

    async def aclose(self) -> None:
        """Close the judge."""
        await self.judge.aclose()


@monitor("tc-cot-monitor")
def _tc_cot_monitor(model: str | None = None, **options: Any) -> JudgeMonitor:
    return JudgeMonitor.from_name("tc-cot-monitor", model=model, **options)


# The embedded classifiers are monitors too; by default they read reasoning and answer together
# (scored by chunks, so a long CoT is read whole and the most suspicious chunk is the evidence).
@monitor("local-harm")
def _local_harm(model: str | None = None, part: Part = "both", **options: Any) -> JudgeMonitor:
    return JudgeMonitor.from_name("local-harm", part=part, **options)


@monitor("local-refusal")
def _local_refusal(model: str | None = None, part: Part = "both", **options: Any) -> JudgeMonitor:
    return JudgeMonitor.from_name("local-refusal", part=part, **options)


@monitor("local-harmful-request")
def _local_harmful_request(model: str | None = None, part: Part = "both", **options: Any) -> JudgeMonitor:
    return JudgeMonitor.from_name("local-harmful-request", part=part, **options)


# The same heads on the static distillation of MiniLM: a few hundred times cheaper per window and no torch,
# for the guard's serving path (see docs/guard.md).
@monitor("local-harm-static")
def _local_harm_static(model: str | None = None, part: Part = "both", **options: Any) -> JudgeMonitor:
    return JudgeMonitor.from_name("local-harm-static", part=part, **options)


@monitor("local-refusal-static")
def _local_refusal_static(model: str | None = None, part: Part = "both", **options: Any) -> JudgeMonitor:
    return JudgeMonitor.from_name("local-refusal-static", part=part, **options)


@monitor("local-harmful-request-static")
def _local_harmful_request_static(model: str | None = None, part: Part = "both",
                                  **options: Any) -> JudgeMonitor:
    return JudgeMonitor.from_name("local-harmful-request-static", part=part, **options)
