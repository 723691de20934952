"""The Trace data model: one model response to one prompt, reasoning kept apart from the answer."""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cotscope.traces._provenance import ProvenanceSpan

StepKind = Literal["paragraph", "header", "reflection"]
#: The parts of a trace a judge or monitor can read (:meth:`Trace.part`).
TracePart = Literal["reasoning", "answer", "both", "actions", "trajectory", "monitor"]
TRACE_PARTS: tuple[TracePart, ...] = ("reasoning", "answer", "both", "actions", "trajectory", "monitor")


class Message(BaseModel):
    """One chat message of a prompt."""

    model_config = ConfigDict(extra="allow")

    role: str
    content: str


class Step(BaseModel):
    """One step of the reasoning with its character span ``reasoning[start:end]``."""

    index: int
    start: int
    end: int
    kind: StepKind = "paragraph"
    text: str = ""


class Action(BaseModel):
    """One action of an agent trajectory (a tool call or a shell command) and what it returned."""

    model_config = ConfigDict(extra="allow")

    kind: str = "tool_call"
    name: str | None = None
    arguments: Any = None
    output: str | None = None
    step: int | None = Field(default=None, description="index of the assistant turn that issued it")


class Source(BaseModel):
    """Where a trace came from: a file and line (or record), and the format it was read as."""

    file: str | None = None
    line: int | None = None
    format: str | None = None


class Trace(BaseModel):
    """One model response to one prompt.

    Reasoning and answer are kept apart and never merged back together. ``reasoning_closed`` is
    false when the model opened a reasoning block and never closed it (the budget ran out).
    ``reasoning_provenance`` says what kind of text each part of the reasoning is (raw thinking, a provider's
    summary, redacted or encrypted content, prefill, where it was truncated; empty: unknown); see
    :mod:`cotscope.traces._provenance`. It is not part of the id.
    """

    id: str = ""
    prompt: list[Message] = Field(default_factory=list)
    reasoning: str = ""
    answer: str = ""
    reasoning_closed: bool = True
    reasoning_provenance: list[ProvenanceSpan] = Field(default_factory=list)
    steps: list[Step] = Field(default_factory=list)
    actions: list[Action] = Field(default_factory=list)
    model: str | None = None
    strategy: str | None = None
    group_id: str | None = None
    sample_index: int = 0
    source: Source | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    def model_post_init(self, __context: Any) -> None:
        if not self.group_id:
            self.group_id = group_id_for(
                [m.model_dump() for m in self.prompt], self.model, self.strategy
            )
        if not self.id:
            self.id = trace_id_for(
                [m.model_dump() for m in self.prompt],
                self.reasoning,
                self.answer,
                self.model,
                self.strategy,
                self.group_id,
                self.sample_index,
            )
        if not self.steps and self.reasoning:
            from cotscope.traces._steps import segment_steps

            self.steps = segment_steps(self.reasoning)

    @property
    def prompt_text(self) -> str:
        """What the model was asked: the last user message, or all prompt messages joined when there is no user
        turn; for an agent episode, its task (``metadata["agent"]["instruction"]``: the episode's last user turn
        is a terminal observation, not the request)."""
        agent = self.metadata.get("agent")
        if isinstance(agent, dict) and isinstance(agent.get("instruction"), str):
            return str(agent["instruction"])
        for m in reversed(self.prompt):
            if m.role == "user":
                return m.content
        return "\n\n".join(m.content for m in self.prompt)

    def part(self, part: TracePart) -> str:
        """The text of one part of the trace.

        ``reasoning``, ``answer``, ``both`` (reasoning then answer); for agent trajectories ``actions`` (the
        commands with their outputs, step by step) and ``trajectory`` (per step: reasoning, then command
        and output), rendered by :func:`cotscope.traces.render_actions` and
        :func:`cotscope.traces.render_trajectory` with their defaults. A trace that is not an agent episode
        has empty ``actions`` and ``trajectory`` parts. ``monitor`` is the inner text of the trace's first
        complete ``<monitor>`` segment (a self-monitoring model's assessment of its own reasoning, see
        :func:`cotscope.traces.parse_monitor`), ``""`` when it has none.
        """
        if part == "reasoning":
            return self.reasoning
        if part == "answer":
            return self.answer
        if part == "both":
            if self.reasoning and self.answer:
                return f"{self.reasoning}\n\n{self.answer}"
            return self.reasoning or self.answer
        if part == "actions":
            from cotscope.traces._trajectory import render_actions

            return render_actions(self)
        if part == "trajectory":
            from cotscope.traces._trajectory import render_trajectory

            return render_trajectory(self)
        if part == "monitor":
            from cotscope.traces._monitor import parse_monitor

            seg = parse_monitor(self.reasoning, self.answer)
            return seg.text if seg is not None else ""
        raise ValueError(f"unknown trace part {part!r}: expected one of {', '.join(TRACE_PARTS)}")


def prompt_canon(prompt: list[dict[str, Any]]) -> str:
    """The canonical text of a prompt used in ids: role and content of each message, separated."""
    return "\x1e".join(f"{m.get('role') or ''}\x1d{m.get('content') or ''}" for m in prompt)


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8", "surrogatepass"), usedforsecurity=False).hexdigest()[:24]


def group_id_for(prompt: list[dict[str, Any]], model: str | None, strategy: str | None) -> str:
    """Content-derived id of the group of samples answering one prompt with one model and strategy.

    Defined as ``"g-" + md5(model US strategy US prompt)[:24]`` (US = ``\x1f``) so that the store's
    bulk SQL path computes the same value.
    """
    return group_id_of_canon(prompt_canon(prompt), model, strategy)


def group_id_of_canon(canon: str, model: str | None, strategy: str | None) -> str:
    """:func:`group_id_for` of a prompt already in its canonical text (:func:`prompt_canon`)."""
    return "g-" + _md5(f"{model or ''}\x1f{strategy or ''}\x1f{canon}")


def trace_id_for(
    prompt: list[dict[str, Any]],
    reasoning: str,
    answer: str,
    model: str | None,
    strategy: str | None,
    group_id: str | None,
    sample_index: int,
) -> str:
    """Stable content-derived trace id: the same response to the same prompt gets the same id.

    ``md5(model US strategy US group_id US sample_index US prompt US reasoning US answer)[:24]``.
    """
    return trace_id_of_canon(prompt_canon(prompt), reasoning, answer, model, strategy, group_id, sample_index)


def trace_id_of_canon(
    canon: str,
    reasoning: str,
    answer: str,
    model: str | None,
    strategy: str | None,
    group_id: str | None,
    sample_index: int,
) -> str:
    """:func:`trace_id_for` of a prompt already in its canonical text (:func:`prompt_canon`)."""
    return _md5(
        f"{model or ''}\x1f{strategy or ''}\x1f{group_id or ''}\x1f{sample_index}\x1f{canon}\x1f{reasoning}\x1f{answer}"
    )
