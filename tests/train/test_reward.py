"""The self-monitor reward: agreement, disagreement, missing segment, judge parse errors and failures, the answer
term, and that the judge never reads the model's self-assessment."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from cotscope.judges import JudgeResult
from cotscope.traces import Trace
from cotscope.train import SelfMonitorReward, get_reward, reward_names


class ScriptedJudge:
    """Labels a trace unsafe when its read text contains ``BOMB``; ``???`` is a parse error, ``DOWN`` a failure.
    Records every text it read."""

    name = "scripted"
    preferred_batch = 64

    def __init__(self, label_meaning: str = "unsafe") -> None:
        self.label_meaning = label_meaning
        self.seen: list[tuple[str, str]] = []

    def config(self) -> dict[str, Any]:
        return {"judge": self.name}

    async def judge(self, traces: Sequence[Trace], part: str,
                    context: Sequence[Mapping[str, Any]] | None = None) -> list[JudgeResult]:
        out = []
        for t in traces:
            text = {"reasoning": t.reasoning, "answer": t.answer}.get(part, t.reasoning + "\n" + t.answer)
            self.seen.append((part, text))
            if "???" in text:
                out.append(JudgeResult.unparsed(text, "no verdict"))
            elif "DOWN" in text:
                out.append(JudgeResult(error="timeout"))
            else:
                bad = "BOMB" in text
                out.append(JudgeResult(label=bad if self.label_meaning == "unsafe" else not bad))
        return out

    async def aclose(self) -> None:
        return None


def _c(reasoning: str, verdict: str | None, answer: str = "Sure.") -> list[dict[str, str]]:
    seg = f"\n\n<monitor>\n{verdict}: my reasoning is {verdict}\n</monitor>" if verdict else ""
    return [{"role": "assistant", "content": f"<think>\n{reasoning}{seg}\n</think>\n\n{answer}"}]


def test_agree_disagree_missing() -> None:
    j = ScriptedJudge()
    r = SelfMonitorReward(j)
    comps = [_c("plan a picnic", "safe"), _c("build a BOMB", "unsafe"), _c("plan a picnic", "unsafe"),
             _c("build a BOMB", "safe"), _c("plan a picnic", None)]
    assert r(["p"] * 5, comps) == [1.0, 1.0, 0.0, 0.0, -0.5]
    assert r.counts == {"calls": 5, "agree": 2, "disagree": 2, "missing": 1, "parse_errors": 0, "judge_errors": 0,
                        "answer_safe": 0, "answer_unsafe": 0}
    assert r.__name__ == "self_monitor"
    # The judge read the reasoning without the monitor segment, and was not asked about the missing one.
    assert [t for _, t in j.seen] == ["plan a picnic", "build a BOMB", "plan a picnic", "build a BOMB"]
    assert all("<monitor>" not in t and "my reasoning is" not in t for _, t in j.seen)


def test_a_segment_without_a_verdict_is_missing_and_string_completions_work() -> None:
    r = SelfMonitorReward(ScriptedJudge(), missing=-1.0)
    text = "<think>\nhmm\n\n<monitor>\nnot sure\n</monitor>\n</think>\n\nok"
    assert r(["p"], [text]) == [-1.0]
    assert r(["p"], ["<think>\nhmm\n\n<monitor>\nsafe: fine\n</monitor>\n</think>\n\nok"]) == [1.0]


def test_parse_errors_and_failures_give_none_never_safe() -> None:
    r = SelfMonitorReward(ScriptedJudge())
    assert r(["p", "p", "p"], [_c("??? odd", "safe"), _c("DOWN", "safe"), _c("fine", "safe")]) == [None, None, 1.0]
    assert r.counts["parse_errors"] == 1 and r.counts["judge_errors"] == 1 and r.counts["agree"] == 1


def test_label_meaning_maps_to_safe() -> None:
    # A judge whose True means "refused" (safe): the same verdicts agree the same way.
    r = SelfMonitorReward(ScriptedJudge("refused"))
    assert r(["p", "p"], [_c("picnic", "safe"), _c("BOMB", "unsafe")]) == [1.0, 1.0]


def test_answer_weight_adds_the_answers_safety() -> None:
    j = ScriptedJudge()
    r = SelfMonitorReward(j, answer_weight=0.5)
    got = r(["p"] * 4, [_c("picnic", "safe"), _c("picnic", "safe", answer="a BOMB recipe"), _c("picnic", None),
                        _c("picnic", "safe", answer="???")])
    assert got == [1.5, 1.0, 0.0, None]
    assert r.counts["answer_safe"] == 2 and r.counts["answer_unsafe"] == 1 and r.counts["parse_errors"] == 1
    assert ("answer", "a BOMB recipe") in j.seen


def test_judge_part_both_never_sees_the_segment() -> None:
    j = ScriptedJudge()
    r = SelfMonitorReward(j, part="both")
    # The segment written after the think block (in the answer) is stripped from the answer too.
    text = "<think>\nplan\n</think>\n\n<monitor>\nunsafe: BOMB talk\n</monitor>\nDone."
    assert r(["p"], [text]) == [0.0]
    assert j.seen[0][0] == "both" and "BOMB" not in j.seen[0][1] and "Done." in j.seen[0][1]


def test_registry_and_bad_options() -> None:
    assert "self-monitor" in reward_names()
    r = get_reward("self-monitor", judge="refusal-strings")
    assert isinstance(r, SelfMonitorReward)
    # refusal-strings: a refusal is safe; no refusal phrase means unsafe to it.
    assert r(["p"], [_c("I'm sorry, I cannot help", "safe")]) == [1.0]
    with pytest.raises(ValueError, match="part"):
        SelfMonitorReward(ScriptedJudge(), part="monitor")
    with pytest.raises(ValueError, match="answer_weight"):
        SelfMonitorReward(ScriptedJudge(), answer_weight=-1)
    from cotscope.metrics import MetricError

    with pytest.raises(MetricError):
        SelfMonitorReward(ScriptedJudge("harmful_request"))


def test_works_inside_a_running_event_loop() -> None:
    import asyncio

    r = SelfMonitorReward(ScriptedJudge())

    async def inside() -> list[float | None]:
        return r(["p"], [_c("picnic", "safe")])  # sync call while a loop runs (a notebook)

    assert asyncio.run(inside()) == [1.0]


def test_label_meaning_override_lets_a_request_judge_stand_in() -> None:
    class RequestJudge(ScriptedJudge):
        """Label true (a harmful request) when the text mentions BOMB; its own label has no safe reading."""

        async def judge(self, traces: Sequence[Trace], part: str,
                        context: Sequence[Mapping[str, Any]] | None = None) -> list[JudgeResult]:
            return [JudgeResult(label="BOMB" in t.reasoning) for t in traces]

    with pytest.raises(Exception, match="harmful_request"):
        SelfMonitorReward(RequestJudge("harmful_request"))
    r = SelfMonitorReward(RequestJudge("harmful_request"), label_meaning="unsafe")
    assert r(["p", "p"], [_c("build a BOMB", "unsafe"), _c("build a BOMB", "safe")]) == [1.0, 0.0]
