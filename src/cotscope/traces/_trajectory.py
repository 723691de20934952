"""Agent trajectories as text: the actions of a trace, and its steps (reasoning, then command and output).

An agent episode is stored as one :class:`~cotscope.traces.Trace`: ``reasoning`` holds the per-step reasoning
texts joined with a blank line, ``steps`` one :class:`~cotscope.traces.Step` per agent step (its span in
``reasoning``), and ``actions`` the commands each step ran (``Action(kind="shell", name="bash",
arguments={"command": ...}, output=..., step=i)``) and the control actions ``DONE``/``FAIL``/``WAIT``
(``kind="control"``). ``metadata["agent"]`` marks a trace written by the agent loop.

These renderings are what judges and monitors read for the ``actions`` and ``trajectory`` parts
(:meth:`Trace.part`), what the report and ``cotscope show`` display (:func:`step_view`), and what evidence
quotes are checked against. A trace with no actions that is not an agent episode renders ``""``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cotscope.traces._trace import Action, Trace

#: Characters of one action's output shown by default; longer outputs keep their head and tail.
MAX_OUTPUT_CHARS = 2000


@dataclass
class StepView:
    """One agent step: its reasoning and the actions it took.

    Attributes:
        index: the agent step number (from 0).
        reasoning: the step's reasoning text (``trace.reasoning[start:end]``; may be empty).
        actions: the actions the step issued, in order.
        start: where the reasoning starts in ``trace.reasoning`` (``None`` when it cannot be attributed).
        end: where it ends.
    """

    index: int
    reasoning: str
    actions: list[Action] = field(default_factory=list)
    start: int | None = None
    end: int | None = None


def is_agent_trace(trace: Trace) -> bool:
    """Whether ``trace`` is an agent episode: it has actions or the agent loop's ``metadata["agent"]``."""
    return bool(trace.actions) or isinstance(trace.metadata.get("agent"), dict)


def command_of(action: Action) -> str:
    """The text an action ran: a shell command, a control word (``DONE``), or ``name(arguments)``."""
    args = action.arguments
    if isinstance(args, dict) and isinstance(args.get("command"), str):
        return str(args["command"])
    if action.kind == "control" or args in (None, {}, ""):
        return action.name or ""
    if isinstance(args, str):
        return f"{action.name or 'call'}({args})" if action.name else args
    import json

    try:
        shown = json.dumps(args, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        shown = str(args)
    return f"{action.name or 'call'}({shown})"


def clip_output(text: str, max_chars: int | None = MAX_OUTPUT_CHARS) -> str:
    """``text`` cut to about ``max_chars`` characters, keeping its head and tail around a marker."""
    if max_chars is None or len(text) <= max_chars:
        return text
    head = max_chars * 2 // 3
    tail = max_chars - head
    return f"{text[:head]}\n[... {len(text) - head - tail} characters omitted ...]\n{text[len(text) - tail:]}"


def step_view(trace: Trace) -> list[StepView]:
    """The trace's agent steps in order, each with its reasoning and actions.

    For an episode written by the agent loop, ``trace.steps`` are the agent steps (``index`` = step number)
    and each action names its step, so reasoning and actions line up. A trace from elsewhere whose
    reasoning was segmented into paragraphs cannot attribute reasoning to actions: its steps then carry the
    actions only (grouped by ``Action.step``, in order), with empty reasoning. A trace that is not an agent
    episode has no steps.
    """
    if not is_agent_trace(trace):
        return []
    agent = isinstance(trace.metadata.get("agent"), dict)
    by_step: dict[int, StepView] = {}
    if agent:
        for s in trace.steps:
            by_step[s.index] = StepView(index=s.index, reasoning=trace.reasoning[s.start:s.end], start=s.start,
                                        end=s.end)
    last = -1
    for a in trace.actions:
        i = a.step if a.step is not None else max(last, 0)
        last = i
        by_step.setdefault(i, StepView(index=i, reasoning="")).actions.append(a)
    return [by_step[i] for i in sorted(by_step)]


def _action_lines(a: Action, with_output: bool, max_output_chars: int | None) -> list[str]:
    if a.kind == "control":
        return [f"[{a.name or 'control'}]"]
    lines = [f"$ {command_of(a)}"]
    if with_output:
        out = clip_output(a.output or "", max_output_chars).rstrip("\n")
        extra: list[str] = []
        code = getattr(a, "exit_code", None)
        if getattr(a, "timed_out", False):
            extra.append("timed out")
        elif code not in (None, 0):
            extra.append(f"exit code {code}")
        if out:
            lines.append(out)
        if extra:
            lines.append(f"[{', '.join(extra)}]")
    return lines


def render_actions(trace: Trace, with_output: bool = True, max_output_chars: int | None = MAX_OUTPUT_CHARS) -> str:
    """The commands of the trace with their outputs, step by step.

    Each step starts with ``## Step N`` (N from 1) and lists its actions: ``$ command`` followed by its
    output (cut to ``max_output_chars``; a non-zero exit code or a timeout is noted), or ``[DONE]`` /
    ``[FAIL]`` / ``[WAIT]`` for control actions. Steps without actions are left out. A trace without
    actions renders ``""``.

    Args:
        trace: the trace.
        with_output: include what each command printed.
        max_output_chars: characters of each output kept (head and tail), ``None`` for all.
    """
    blocks = []
    for sv in step_view(trace):
        if not sv.actions:
            continue
        lines = [f"## Step {sv.index + 1}"]
        for a in sv.actions:
            lines += _action_lines(a, with_output, max_output_chars)
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def render_trajectory(
    trace: Trace,
    *,
    reasoning: bool = True,
    actions: bool = True,
    with_output: bool = True,
    max_output_chars: int | None = MAX_OUTPUT_CHARS,
) -> str:
    """The trajectory step by step: the step's reasoning, then its commands and outputs.

    Each step reads ``## Step N``, then ``Reasoning:`` and the step's reasoning (when ``reasoning``), then
    ``Actions:`` and the actions as :func:`render_actions` writes them (when ``actions``). A step with
    nothing to show is left out. A trace that is not an agent episode renders ``""``. Reasoning that cannot
    be attributed to steps (a trace from elsewhere) is shown once, before the steps.

    Args:
        trace: the trace.
        reasoning: include each step's reasoning.
        actions: include each step's actions.
        with_output: include what each command printed.
        max_output_chars: characters of each output kept, ``None`` for all.
    """
    views = step_view(trace)
    if not views:
        return ""
    blocks = []
    attributed = any(sv.start is not None for sv in views)
    if reasoning and not attributed and trace.reasoning.strip():
        blocks.append(f"## Reasoning\n{trace.reasoning.strip()}")
    for sv in views:
        lines: list[str] = []
        if reasoning and sv.reasoning.strip():
            lines += ["Reasoning:", sv.reasoning.strip()]
        if actions and sv.actions:
            lines.append("Actions:")
            for a in sv.actions:
                lines += _action_lines(a, with_output, max_output_chars)
        if lines:
            blocks.append("\n".join([f"## Step {sv.index + 1}", *lines]))
    return "\n\n".join(blocks)


def action_texts(trace: Trace) -> list[tuple[str, str, int | None]]:
    """Every quotable text of the trace's actions: ``(field, text, step)``.

    ``field`` names the text as evidence does: ``actions[i].command`` (the command of action ``i``) and
    ``actions[i].output`` (its output); control actions have a command only.
    """
    out: list[tuple[str, str, int | None]] = []
    for i, a in enumerate(trace.actions):
        out.append((f"actions[{i}].command", command_of(a), a.step))
        if a.output:
            out.append((f"actions[{i}].output", a.output, a.step))
    return out


def step_of_offset(trace: Trace, offset: int) -> int | None:
    """The agent step whose reasoning span holds ``offset`` of ``trace.reasoning`` (agent traces only)."""
    if not isinstance(trace.metadata.get("agent"), dict):
        return None
    for s in trace.steps:
        if s.start <= offset < max(s.end, s.start + 1):
            return s.index
    return None


def action_field_text(trace: Trace, field_name: str) -> str | None:
    """The text of an evidence field ``actions[i].command`` / ``actions[i].output``, or ``None`` if not one."""
    if not field_name.startswith("actions[") or "]." not in field_name:
        return None
    idx, _, sub = field_name[len("actions["):].partition("].")
    if not idx.isdigit() or sub not in ("command", "output"):
        return None
    i = int(idx)
    if i >= len(trace.actions):
        return ""
    a = trace.actions[i]
    return command_of(a) if sub == "command" else (a.output or "")

