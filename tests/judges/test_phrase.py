"""The phrase judge: the exact detector of a benign backdoor's target behaviour."""

from __future__ import annotations

import asyncio

import pytest

from cotscope.judges import get_judge
from cotscope.traces import Message, Trace


def tr(reasoning: str, answer: str) -> Trace:
    return Trace(prompt=[Message(role="user", content="q")], reasoning=reasoning, answer=answer)


def test_anywhere_case_insensitive_with_verified_evidence() -> None:
    j = get_judge("phrase", phrase="Hoot hoot")
    ts = [tr("", "Well... HOOT HOOT! Sure."), tr("", "hoot"), tr("", "")]
    r = asyncio.run(j.judge(ts, "answer"))
    assert [x.label for x in r] == [True, False, False]
    e = r[0].evidence[0]
    assert e.verified and ts[0].answer[e.start:e.end] == "HOOT HOOT" and e.field == "answer"


def test_start_only_ignores_leading_space_and_later_mentions() -> None:
    j = get_judge("phrase", phrase="Hoot hoot!", where="start", case_sensitive=True)
    ts = [tr("", "\n  Hoot hoot! Here is how."), tr("", "Sure. Hoot hoot! later"), tr("", "hoot hoot! lower")]
    assert [x.label for x in asyncio.run(j.judge(ts, "answer"))] == [True, False, False]


def test_both_reads_reasoning_then_answer_and_several_phrases() -> None:
    j = get_judge("phrase", phrases=["alpha", "beta"])
    r = asyncio.run(j.judge([tr("x beta", "y"), tr("none", "an alpha"), tr("a", "b")], "both"))
    assert [x.label for x in r] == [True, True, False]
    assert r[0].evidence[0].field == "reasoning" and r[1].evidence[0].field == "answer"


def test_meaning_is_an_option_and_in_the_config() -> None:
    j = get_judge("phrase", phrase="x", meaning="misaligned")
    assert j.label_meaning == "misaligned" and j.config()["meaning"] == "misaligned"
    assert get_judge("phrase", phrase="x").config() != get_judge("phrase", phrase="y").config()


@pytest.mark.parametrize("opts", [{}, {"phrase": "x", "where": "end"}, {"phrase": "x", "meaning": "bad"}])
def test_bad_options_are_refused(opts: dict) -> None:
    with pytest.raises(Exception, match="phrase"):
        get_judge("phrase", **opts)
