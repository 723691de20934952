from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cotscope.traces import split_reasoning


def test_tagged_r1_style() -> None:
    s = split_reasoning("<think>\nLet me see.\n</think>\n\nThe answer is 4.")
    assert (s.reasoning, s.answer, s.reasoning_closed, s.kind) == ("Let me see.", "The answer is 4.", True, "tagged")


def test_close_tag_only_when_opening_was_in_prompt() -> None:
    s = split_reasoning("I should refuse.\n</think>\n\nI can't help with that.")
    assert s.reasoning == "I should refuse."
    assert s.answer == "I can't help with that."
    assert s.kind == "close-only" and s.reasoning_closed


def test_unclosed_think_is_all_reasoning() -> None:
    s = split_reasoning("<think>\nStep 1: expand. Step 2: and then")
    assert s.reasoning == "Step 1: expand. Step 2: and then"
    assert s.answer == ""
    assert s.reasoning_closed is False
    assert s.kind == "unclosed"


def test_blank_think_block() -> None:
    s = split_reasoning("<think>\n\n</think>\n\nSure, here it is.")
    assert s.reasoning == "" and s.answer == "Sure, here it is." and s.reasoning_closed


def test_no_think_block_is_all_answer() -> None:
    s = split_reasoning("Just an answer.")
    assert (s.reasoning, s.answer, s.reasoning_closed, s.kind) == ("", "Just an answer.", True, "none")


def test_answer_tags_after_think() -> None:
    s = split_reasoning("<think>2+2</think> <answer> 4 </answer> trailing")
    assert s.reasoning == "2+2" and s.answer == "4"


def test_answer_tags_without_think() -> None:
    s = split_reasoning("We add them. <answer>4</answer>")
    assert s.reasoning == "We add them." and s.answer == "4" and s.kind == "answer-tags"


def test_configurable_tags() -> None:
    s = split_reasoning("[R]hmm[/R]ok", tags=[("[R]", "[/R]")])
    assert s.reasoning == "hmm" and s.answer == "ok"
    # With the defaults the custom tags are just answer text.
    assert split_reasoning("[R]hmm[/R]ok").answer == "[R]hmm[/R]ok"


def test_other_default_tag_pairs() -> None:
    assert split_reasoning("<thinking>a</thinking>b").reasoning == "a"
    assert split_reasoning("◁think▷a◁/think▷b").answer == "b"


def test_answer_mentioning_close_tag_before_open() -> None:
    # A stray close tag before an open tag: the first </think> ends reasoning that began in the prompt.
    s = split_reasoning("r1</think>a1<think>r2")
    assert s.reasoning == "r1" and s.answer.startswith("a1")


def test_non_string_rejected() -> None:
    with pytest.raises(TypeError, match="must be a string"):
        split_reasoning(None)  # type: ignore[arg-type]


@given(st.text(alphabet=st.characters(blacklist_characters="<>"), max_size=80),
       st.text(alphabet=st.characters(blacklist_characters="<>"), max_size=80))
def test_roundtrip_property(reasoning: str, answer: str) -> None:
    s = split_reasoning(f"<think>{reasoning}</think>{answer}")
    assert s.reasoning == reasoning.strip()
    assert s.answer == answer.strip()
    assert s.reasoning_closed
