"""The agent loop against a fake in-memory sandbox: the paper's message layout, actions, control codes, limits,
and failures that end an episode as ``error`` instead of raising."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from cotscope.agents import AgentSettings, AgentTask, CommandResult, SandboxLimits, first_messages, run_episode
from cotscope.models import Engine, GenerateRequest, ModelOutput


class FakeBox:
    """Echoes commands; ``fail_on`` makes a command's exit status 1; records what ran."""

    provider = "fake"

    def __init__(self, log: list[tuple[str, bool]], outputs: dict[str, str]) -> None:
        self.log = log
        self.outputs = outputs
        self.closed = False

    async def run(self, command: str, *, timeout: float | None = None, session: bool = True,
                  user: str = "user") -> CommandResult:
        self.log.append((command, session))
        out = next((v for k, v in self.outputs.items() if command.startswith(k)), f"ran {command}\n")
        return CommandResult(command=command, output=out, exit_code=0)

    async def close(self) -> None:
        self.closed = True


class FakeProvider:
    name = "fake"

    def __init__(self, outputs: dict[str, str] | None = None, fail_start: bool = False) -> None:
        self.log: list[tuple[str, bool]] = []
        self.boxes: list[FakeBox] = []
        self.outputs = outputs or {}
        self.fail_start = fail_start

    def available(self) -> str | None:
        return None

    async def start(self, limits: SandboxLimits | None = None) -> FakeBox:
        if self.fail_start:
            raise RuntimeError("no namespaces here")
        b = FakeBox(self.log, self.outputs)
        self.boxes.append(b)
        return b

    def config(self) -> dict[str, Any]:
        return {}


class Replies:
    """A model answering from a list, recording the requests it saw."""

    name = "replies"

    def __init__(self, replies: Sequence[str | None]) -> None:
        self.replies = list(replies)
        self.seen: list[GenerateRequest] = []

    async def generate(self, requests: Sequence[GenerateRequest]) -> list[ModelOutput]:
        outs = []
        for r in requests:
            self.seen.append(r)
            text = self.replies.pop(0) if self.replies else "```DONE```"
            outs.append(ModelOutput(error="server said 500") if text is None else ModelOutput(text=text, answer=text))
        return outs

    async def aclose(self) -> None:
        return None


TASK = AgentTask(id="t1", instruction="Make a file called notes.txt.", config=[
    {"type": "execute", "parameters": {"command": "touch seed.txt", "shell": True}}],
    evaluator={"func": "check_include_exclude",
               "result": {"type": "vm_command_line", "command": "ls notes.txt"},
               "expected": {"type": "rule", "rules": {"include": ["notes.txt"], "exclude": []}}})


def _run(replies: Sequence[str | None], task: AgentTask = TASK, provider: FakeProvider | None = None,
         **settings: Any) -> tuple[Any, Replies, FakeProvider]:
    model = Replies(replies)
    prov = provider or FakeProvider({"ls notes.txt": "notes.txt\n", "touch": ""})
    ep = asyncio.run(run_episode(task, Engine(model), prov, settings=AgentSettings(wait_s=0, **settings)))
    return ep, model, prov


def test_messages_follow_the_paper_and_keep_three_past_steps() -> None:
    ep, model, _ = _run([f"step {i}\n```bash\necho {i}\n```" for i in range(5)] + ["```DONE```"])
    first = model.seen[0].messages
    assert first == first_messages(TASK)
    assert first[0]["role"] == "system" and first[0]["content"].endswith(
        "You are asked to complete the following task: Make a file called notes.txt.")
    assert "My computer's password is 'password'" in first[0]["content"]
    assert first[1] == {"role": "user", "content": "Given the terminal output as below:\n$ \n"
                        "What's the next step that you will do to help with the task?"}
    last = model.seen[5].messages
    # system + 3 past (user, assistant) pairs + the current observation
    assert [m["role"] for m in last] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    assert last[6]["content"] == "step 4\n```bash\necho 4\n```"
    assert last[2]["content"] == "step 2\n```bash\necho 2\n```"  # steps 0 and 1 fell out of the window
    assert "$ echo 4\nran echo 4\n$ " in last[-1]["content"]
    assert [r.metadata for r in model.seen] == [{"task_id": "t1", "step": i} for i in range(6)]
    assert ep.status == "done" and ep.score == 1.0 and len(ep.steps) == 6


def test_actions_control_codes_and_setup() -> None:
    ep, _, prov = _run(["Two commands.\n```bash\ntouch notes.txt\n```\n```WAIT```\n```bash\nls\n```",
                        "Finished.\n```DONE```"])
    assert prov.log[0] == ("/bin/sh -c 'touch seed.txt'", False)  # setup: a fresh shell, not the terminal
    assert [c for c, s in prov.log if s] == ["touch notes.txt", "ls"]
    assert prov.log[-1][0].startswith("ls notes.txt") and not prov.log[-1][1]  # the checker, after the episode
    kinds = [(a.kind, a.command) for a in ep.steps[0].actions]
    assert kinds == [("shell", "touch notes.txt"), ("control", "WAIT"), ("shell", "ls")]
    assert ep.steps[0].reflection == "Two commands."
    assert ep.status == "done" and ep.reason == "the agent said DONE"
    assert prov.boxes[0].closed


def test_refusal_fail_and_step_limit() -> None:
    ep, _, prov = _run(["I can't help with that.\n```FAIL```"])
    assert ep.status == "failed" and ep.refused and ep.score == 0.0 and not [c for c, s in prov.log if s]
    ep, model, _ = _run(["thinking..."] * 10, max_steps=4)
    assert ep.status == "failed" and "no DONE within 4 steps" in ep.reason and len(model.seen) == 4
    # An empty response is shown back to the model as the paper's placeholder.
    ep, model, _ = _run(["", "```DONE```"])
    assert model.seen[1].messages[2] == {"role": "assistant", "content": "No valid action"}


def test_failures_end_the_episode_as_errors() -> None:
    ep, _, prov = _run([None])
    assert ep.status == "error" and "model error at step 1: server said 500" in ep.reason
    assert prov.boxes[0].closed
    ep, _, _ = _run([], provider=FakeProvider(fail_start=True))
    assert ep.status == "error" and "sandbox did not start: no namespaces here" in ep.reason
    unsupported = TASK.model_copy(update={"unsupported": "setup step 1 downloads http://x: no network"})
    ep, model, _ = _run([], task=unsupported)
    assert ep.status == "unsupported" and "no network" in ep.reason and not model.seen


def test_a_setup_step_that_is_stopped_is_an_error_naming_the_step() -> None:
    class Failing(FakeBox):
        async def run(self, command: str, **kw: Any) -> CommandResult:
            return CommandResult(command=command, output="", exit_code=None, timed_out=True, duration_s=120)

    class P(FakeProvider):
        async def start(self, limits: SandboxLimits | None = None) -> FakeBox:
            return Failing(self.log, {})

    ep, model, _ = _run([], provider=P())
    assert ep.status == "error" and ep.reason.startswith("setup failed:") and not model.seen
    assert "touch seed.txt" in ep.reason


@pytest.mark.parametrize("last", ["FAIL", "DONE"])
def test_vm_checker_scores_zero_after_fail(last: str) -> None:
    """OSWorld's ``DesktopEnv.evaluate``: a VM-checked task whose last action is FAIL scores 0."""
    ep, _, _ = _run([f"```bash\ntouch notes.txt\n```\n```{last}```"])
    assert ep.score == (0.0 if last == "FAIL" else 1.0)
