"""Steps of URSA's format and free-form reasoning, the PRM's step tags, and the PRM input.

The expected outputs of ``tag_steps`` were written by hand from reading URSA's
``replace_specific_plus_minus_with_ki`` (``inference/prm_infer_score.py``), one case per branch of it.
"""

from __future__ import annotations

import re

import pytest

from cotscope.traces import Message, Trace
from cotscope.verify._steps import (
    STEP_TAG,
    SolutionSteps,
    format_steps,
    prm_input,
    prm_prompt,
    split_steps,
    tag_steps,
    trace_steps,
)
from cotscope.verify._ursa_data import ursa_mathvista

# ------------------------------------------------------------------------------------------------ tag_steps

TAG_CASES = [
    # a tag after each step, the last one before †Answer:
    ("Step 1: a\nStep 2: b\n†Answer: C", "Step 1: a и\nStep 2: b и\n†Answer: C"),
    # no †Answer: the last step gets no tag
    ("Step 1: a\nStep 2: b", "Step 1: a и\nStep 2: b"),
    # no "Step k" at all: URSA's fallback appends the tag
    ("just text", "just text и"),
    ("", " и"),
    # the tag goes after the last character that is not a space or a newline
    ("Step 1: x  \n\n Step 2: y\n\n†Answer: 3", "Step 1: x и  \n\n Step 2: y и\n\n†Answer: 3"),
    # a blank step (the colon right after the match is never looked at) gets no tag
    ("Step 1:\nStep 2: b\n†Answer: 1", "Step 1:\nStep 2: b и\n†Answer: 1"),
    # a reference to a step inside a step counts as a step start
    ("Step 1: a\nStep 2: from Step 1, b\n†Answer: 2", "Step 1: a и\nStep 2: from и Step 1, b и\n†Answer: 2"),
    # tabs and carriage returns count as text
    ("Step 1: a\t\nStep 2: b\r\n†Answer: 1", "Step 1: a\t и\nStep 2: b\r и\n†Answer: 1"),
    # †Answer: before the last step: no tag for it
    ("†Answer: 1\nStep 1: a", "†Answer: 1\nStep 1: a"),
    ("Step 1: a\n†Answer: b", "Step 1: a и\n†Answer: b"),
    # lower-case "step" is not a step
    ("Step 1: a, see step 2\n†Answer: x", "Step 1: a, see step 2 и\n†Answer: x"),
    # the first †Answer: counts
    ("Step 1: a\n†Answer: b\nStep 2: c\n†Answer: d", "Step 1: a\n†Answer: b и\nStep 2: c\n†Answer: d"),
    # URSA-8B's "StepStep 1:" glitch; two-digit steps
    ("StepStep 1: a\n\nStep 2: b\n\n†Answer: 5", "StepStep 1: a и\n\nStep 2: b и\n\n†Answer: 5"),
    ("Step 9: a\nStep 10: b\n†Answer: 5", "Step 9: a и\nStep 10: b и\n†Answer: 5"),
]


@pytest.mark.parametrize(("text", "expected"), TAG_CASES)
def test_tag_steps_matches_ursa(text: str, expected: str) -> None:
    assert tag_steps(text) == expected


def test_tag_steps_custom_tag() -> None:
    assert tag_steps("Step 1: a\nStep 2: b\n†Answer: 1", tag="<t>") == "Step 1: a<t>\nStep 2: b<t>\n†Answer: 1"
    assert STEP_TAG == " и"


# ---------------------------------------------------------------------------------------------- split_steps


def test_split_steps_ursa_format() -> None:
    text = "Step 1: Find x.\nx = 2\n\nStep 2: Double it: 4.\n\n†Answer: 4"
    assert split_steps(text) == SolutionSteps(["Find x.\nx = 2", "Double it: 4."], "4", "ursa")


def test_split_steps_ursa_without_answer_and_with_preambles() -> None:
    assert split_steps("Step 1: a\nStep 2: b is cut") == SolutionSteps(["a", "b is cut"], None, "ursa")
    # URSA-8B's stray "Step" before the first header is dropped; real text there is a step of its own
    assert split_steps("StepStep 1: a\n†Answer: B").steps == ["a"]
    assert split_steps("Look at the figure.\nStep 1: a\n†Answer: B").steps == ["Look at the figure.", "a"]
    assert split_steps("**Step 1:** a\n**Step 2:** b\n†Answer: 3").steps == ["a", "b"]


def test_split_steps_reference_is_not_a_header() -> None:
    out = split_steps("Step 1: x = 2\nStep 2: from Step 1, y = 4\n†Answer: 4")
    assert out.steps == ["x = 2", "from Step 1, y = 4"]


def test_split_steps_free_form() -> None:
    text = "First, x = 2.\n\nThen y = 2x = 4.\n\nTherefore, 4"
    out = split_steps(text)
    assert out.fmt == "free"
    assert out.steps == ["First, x = 2.", "Then y = 2x = 4.", "Therefore, 4"]
    assert out.answer == "4"
    assert split_steps("We get $\\boxed{12}$ in the end.").answer == "12"
    assert split_steps("x is two.\n\nDone.") == SolutionSteps(["x is two.", "Done."], None, "free")


def test_format_steps_round_trip() -> None:
    steps, answer = ["a = 1", "b = a + 1\n= 2"], "2"
    text = format_steps(steps, answer)
    assert text == "Step 1: a = 1\nStep 2: b = a + 1\n= 2\n†Answer: 2"
    assert split_steps(text) == SolutionSteps(steps, answer, "ursa")
    assert format_steps(["only"], None) == "Step 1: only"
    # a tag per step, the last before the answer
    assert tag_steps(text).count(STEP_TAG) == 2


# ------------------------------------------------------------------------------------------------- prm_input


def test_prm_prompt_is_ursas() -> None:
    assert prm_prompt() == (
        "You are given a problem and a step-by-step solution. You need to check the correctness of each step."
        "\nQuestion:"
    )


def test_prm_input() -> None:
    text = "Step 1: a\nStep 2: b\n†Answer: 1"
    assert prm_input("What is x?", text) == prm_prompt() + "What is x?\nStep 1: a и\nStep 2: b и\n†Answer: 1"
    # no question: URSA's NaN branch, instruction + newline + response
    assert prm_input("", text).startswith(prm_prompt() + "\nStep 1: a и")
    # the question is tagged too, as in URSA
    assert prm_input("Step 1 of a recipe", "Step 1: a\n†Answer: 1").count(STEP_TAG) == 2
    assert prm_input("q", "no steps here").endswith("no steps here и")


# ----------------------------------------------------------------------------------------------- trace_steps


def _trace(reasoning: str, answer: str) -> Trace:
    return Trace(prompt=[Message(role="user", content="q")], reasoning=reasoning, answer=answer)


def test_trace_steps_ursa_in_answer() -> None:
    out = trace_steps(_trace("", "Step 1: a\nStep 2: b\n†Answer: 7"))
    assert out == SolutionSteps(["a", "b"], "7", "ursa")
    out = trace_steps(_trace("Step 1: a\nStep 2: b", "†Answer: 7"))
    assert out == SolutionSteps(["a", "b"], "7", "ursa")


def test_trace_steps_free_form() -> None:
    out = trace_steps(_trace("Let me think.\n\nWait, 2 + 2 = 4.", "The answer is \\boxed{4}."))
    assert out.fmt == "free"
    assert out.steps == ["Let me think.", "Wait, 2 + 2 = 4.", "The answer is \\boxed{4}."]
    assert out.answer == "4"
    out = trace_steps(_trace("Thinking that never ended", ""))
    assert out == SolutionSteps(["Thinking that never ended"], None, "free")


# ---------------------------------------------------------------------------------------- MathVista, URSA-8B

_HEADER = re.compile(r"Step \d+:")


def test_mathvista_responses_split() -> None:
    items = ursa_mathvista()
    assert len(items) == 200
    no_answer = []
    for it in items:
        out = split_steps(it.response)
        assert out.fmt == "ursa", it.pid
        assert len(out.steps) == len(_HEADER.findall(it.response)), it.pid
        assert all(out.steps), it.pid
        if "†Answer:" in it.response:
            # the answer is URSA's own extraction without its "Answer:" label
            assert out.answer == it.extraction.removeprefix("Answer:").strip(), it.pid
        else:
            no_answer.append(it.pid)
            assert out.answer is None
    assert no_answer == ["79", "678"]  # two responses cut off mid-step


def test_mathvista_tags_one_per_step() -> None:
    for it in ursa_mathvista():
        out = split_steps(it.response)
        if out.answer is None or "Step" in it.question:
            continue
        tagged = prm_input(it.question, it.response)
        # one tag per step, plus one for each in-step reference such as "from Step 2" (URSA's behaviour)
        refs = len(re.findall(r"Step \d+", it.response)) - len(out.steps)
        assert tagged.count(STEP_TAG) == len(out.steps) + refs, it.pid
