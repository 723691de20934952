"""The agent loop: a model acts in a sandboxed terminal until it says DONE or FAIL, or runs out of steps.

It follows the CUAHarm terminal agent (``lib_run_single.run_single_example`` and ``mm_agents/agent.py``,
``PromptAgent`` with ``observation_type=action_space="terminal"``, at commit bdaf585 of db-ol/CUAHarm):

- the system message is the paper's terminal prompt followed by the task; each step sends the last
  ``history`` (3) observation/response pairs and the current terminal output;
- actions are the fenced code blocks of the response (:func:`~cotscope.agents.parse_actions`), run one
  after the other in the episode's persistent shell; ``WAIT`` pauses, ``DONE`` and ``FAIL`` end the episode;
- at most ``max_steps`` (15) model calls, sampled at temperature 0.5, top-p 0.9, 1500 tokens;
- the score comes from the task's checker after the episode.

The terminal output the model sees is the tail of the session's transcript (``user@sandbox:~$ command``
lines followed by their output), which stands in for the VM terminal's visible text.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from cotscope.agents._parse import CONTROL_CODES, parse_actions, strip_fences
from cotscope.agents._sandbox import CommandResult, SandboxLimits, SandboxProvider
from cotscope.models import GenerateConfig, GenerateRequest

if TYPE_CHECKING:
    from cotscope.agents._checkers import CheckResult
    from cotscope.agents._tasks import AgentTask
    from cotscope.models import Engine

#: How an episode ended. ``done``: the agent said DONE; ``failed``: it said FAIL or ran out of steps;
#: ``unsupported``: the task needs what the sandbox cannot give (the network); ``error``: setup, the model or
#: the sandbox failed (the episode is not stored, so a rerun retries it).
Status = Literal["done", "failed", "unsupported", "error"]

PROMPT = "$ "


def _prompt(name: str) -> str:
    """A prompt file of ``cotscope/agents/prompts`` (the judges' loader, cached), trailing newline removed."""
    from cotscope.judges._prompts import load_prompt

    return load_prompt(name, "cotscope.agents").rstrip("\n")


class AgentSettings(BaseModel):
    """The agent's defaults are the paper's (``run.py`` and ``PromptAgent``)."""

    max_steps: int = Field(default=15, gt=0, description="model calls per episode")
    history: int = Field(default=3, ge=0, description="past observation/response pairs sent (max_trajectory_length)")
    temperature: float = 0.5
    top_p: float = 0.9
    max_tokens: int = 1500
    seed: int | None = None
    observation_chars: int = Field(default=6000, gt=0, description="tail of the terminal transcript shown per step")
    wait_s: float = Field(default=5.0, ge=0, description="pause for WAIT")

    def config(self, sample_index: int) -> GenerateConfig:
        """The request settings of one episode's calls."""
        return GenerateConfig(temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens,
                              seed=None if self.seed is None else self.seed + sample_index)


class StepAction(BaseModel):
    """One action of a step: a shell command and what it printed, or a control code."""

    kind: Literal["shell", "control"]
    command: str
    output: str = ""
    exit_code: int | None = None
    timed_out: bool = False
    duration_s: float = 0.0


class AgentStep(BaseModel):
    """One model call of an episode: the response, the model's hidden reasoning, and the actions run."""

    index: int
    response: str
    reasoning: str = ""
    actions: list[StepAction] = Field(default_factory=list)

    @property
    def reflection(self) -> str:
        """The response without its code fences: what the agent says about the terminal and its plan."""
        return strip_fences(self.response)


class Episode(BaseModel):
    """One run of one task."""

    task_id: str
    sample_index: int = 0
    messages: list[dict[str, Any]] = Field(default_factory=list, description="the first request's messages")
    steps: list[AgentStep] = Field(default_factory=list)
    status: Status = "error"
    reason: str = ""
    score: float = 0.0
    check: dict[str, Any] | None = None
    seconds: float = 0.0

    @property
    def responses(self) -> list[str]:
        """The raw responses, one per step (what the paper's runtime log records)."""
        return [s.response for s in self.steps]

    @property
    def commands(self) -> list[str]:
        """The shell commands run, in order."""
        return [a.command for s in self.steps for a in s.actions if a.kind == "shell"]

    @property
    def refused(self) -> bool:
        """The agent ran no command at all (it declined, or said FAIL at once)."""
        return self.status in ("done", "failed") and not self.commands

    @property
    def last_action(self) -> str | None:
        """The last action taken (a command or a control code)."""
        for s in reversed(self.steps):
            if s.actions:
                return s.actions[-1].command
        return None


class Transcript:
    """The terminal's text: commands echoed after a prompt, then their output."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.text = PROMPT

    def add(self, result: CommandResult) -> None:
        out = result.output if result.output.endswith("\n") or not result.output else result.output + "\n"
        note = "" if not result.timed_out else "[command stopped: time limit]\n"
        self.text = f"{self.text}{result.command}\n{out}{note}{PROMPT}"
        if len(self.text) > 4 * self.limit:
            self.text = self.text[-2 * self.limit :]

    def tail(self) -> str:
        return self.text[-self.limit :]


def first_messages(task: AgentTask) -> list[dict[str, Any]]:
    """The messages of an episode's first request: the system prompt with the task, and the empty terminal.

    They identify the episode's group in the store (with model and strategy), so a rerun finds it.
    """
    return _messages(task, [], PROMPT)


def _messages(task: AgentTask, history: Sequence[tuple[str, str]], terminal: str) -> list[dict[str, Any]]:
    from cotscope.judges._prompts import render

    msgs: list[dict[str, Any]] = [{"role": "system", "content": render(
        _prompt("terminal_system.txt"), instruction=task.instruction)}]
    obs = _prompt("terminal_observation.txt")
    for past_terminal, past_response in history:
        msgs.append({"role": "user", "content": render(obs, terminal=past_terminal)})
        msgs.append({"role": "assistant",
                     "content": past_response.strip() or _prompt("no_valid_action.txt")})
    msgs.append({"role": "user", "content": render(obs, terminal=terminal)})
    return msgs


async def run_episode(
    task: AgentTask,
    engine: Engine,
    provider: SandboxProvider,
    *,
    settings: AgentSettings | None = None,
    limits: SandboxLimits | None = None,
    sample_index: int = 0,
) -> Episode:
    """Run one episode of ``task``: start a sandbox, set the task up, let the model act, check the result.

    Never raises for a failure of the task, the model or the sandbox: the episode comes back with status
    ``error`` (or ``unsupported``) and the reason; only cancellation propagates, after the sandbox is closed.
    """
    from cotscope.agents._checkers import check_task
    from cotscope.agents._tasks import setup_task

    settings = settings or AgentSettings()
    ep = Episode(task_id=task.id, sample_index=sample_index, messages=first_messages(task))
    if task.unsupported:
        ep.status, ep.reason = "unsupported", task.unsupported
        return ep
    t0 = time.perf_counter()
    try:
        box = await provider.start(limits)
    except Exception as e:
        ep.reason = f"sandbox did not start: {e}"
        return ep
    try:
        try:
            await setup_task(task, box)
        except Exception as e:
            ep.reason = f"setup failed: {e}"
            return ep
        transcript = Transcript(settings.observation_chars)
        history: list[tuple[str, str]] = []
        ended: str | None = None
        for i in range(settings.max_steps):
            terminal = transcript.tail()
            req = GenerateRequest(messages=_messages(task, history[-settings.history:] if settings.history else [],
                                                     terminal),
                                  config=settings.config(sample_index), sample_index=sample_index,
                                  metadata={"task_id": task.id, "step": i})
            out = await engine.submit(req)
            if out.error is not None:
                ep.reason = f"model error at step {i + 1}: {out.error}"
                return ep
            response = out.answer if out.answer or out.reasoning else out.text
            step = AgentStep(index=i, response=response, reasoning=out.reasoning)
            ep.steps.append(step)
            for action in parse_actions(response):
                if action in CONTROL_CODES:
                    step.actions.append(StepAction(kind="control", command=action))
                    if action == "WAIT":
                        await asyncio.sleep(settings.wait_s)
                        continue
                    ended = action
                    break
                res = await box.run(action)
                transcript.add(res)
                step.actions.append(StepAction(kind="shell", command=action, output=res.output,
                                               exit_code=res.exit_code, timed_out=res.timed_out,
                                               duration_s=round(res.duration_s, 3)))
            history.append((terminal, response))
            if ended:
                break
        ep.status = "done" if ended == "DONE" else "failed"
        ep.reason = {"DONE": "the agent said DONE", "FAIL": "the agent said FAIL"}.get(
            ended or "", f"no DONE within {settings.max_steps} steps")
        check: CheckResult = await check_task(task, box, ep.responses, last_action=ep.last_action)
        ep.score = check.score
        ep.check = check.model_dump(mode="json")
        if check.error:
            ep.reason += f"; checker error: {check.error}"
        return ep
    except Exception as e:  # the sandbox failed under the episode
        ep.status, ep.reason = "error", f"{type(e).__name__}: {e}"
        return ep
    finally:
        ep.seconds = round(time.perf_counter() - t0, 3)
        await box.close()
