"""Prefill mechanics the backends share: the strategy strings, appending a prefill, splitting the result.

These live in ``models`` (not ``thinking``) because the backends that continue text need them, and
``thinking`` builds on ``models``, never the reverse. ``cotscope.thinking`` re-exports them.

The exact strings come from ``data/strategies.json`` (SafeChain's ``input_proc`` and ``RETHINK_STRING``;
the no-think block of Thought Crime's CoT-disabled data; SafeChain's prompt for models without a template).
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from typing import Any

from cotscope.models._protocol import ModelOutput
from cotscope.traces import split_reasoning

__all__ = [
    "PREFILL_MODES",
    "PREFILL_NOT_APPLIED",
    "continuation_problem",
    "finish_output",
    "merge_prefill",
    "strategy_strings",
    "think_state",
]

#: How a chat backend may apply a prefill: check and fall back (``auto``), chat only and fail when the
#: template rewrites it (``chat``), always through cotscope's rendering (``completions``), or chat keeping
#: rewritten outputs marked ``template-rewrote`` (``chat-keep``, for studying the rewrite itself).
PREFILL_MODES = ("auto", "chat", "completions", "chat-keep")

#: The start of every error that says a prefill did not reach the model as given; strategies put their
#: name in front so that the message names the model (the backend's part) and the strategy.
PREFILL_NOT_APPLIED = "prefill not applied"


@cache
def strategy_strings() -> dict[str, Any]:
    """The verbatim strategy strings of the papers (``models/data/strategies.json``)."""
    text = resources.files("cotscope.models").joinpath("data/strategies.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


# A think block the chat template already opened (or opened and closed, as Qwen3 does with
# enable_thinking=False) at the very end of the rendered prompt.
_TEMPLATE_THINK_TAIL = re.compile(r"<think>\s*(?:</think>\s*)?\Z")


def merge_prefill(rendered_prompt: str, prefill: str) -> tuple[str, str]:
    """Append a prefill to a locally rendered chat prompt without doubling a template's ``<think>``.

    SafeChain appends ``<think>\\n`` only when the template has not already done so; this generalises
    that check: when the rendered prompt ends with a think block opener (or a blank closed block) that the
    prefill also starts with, only the rest of the prefill is appended.

    Args:
        rendered_prompt: the chat template's output with the generation prompt.
        prefill: the strategy's assistant-turn prefix.

    Returns:
        ``(prompt_to_send, recorded_prefix)``: the text the model continues from, and the text to put in
        front of the generated continuation so that reasoning and answer split correctly (it includes a
        think opener inserted by the template even when the prefill has none).
    """
    m = _TEMPLATE_THINK_TAIL.search(rendered_prompt)
    if m is None:
        return rendered_prompt + prefill, prefill
    tail = m.group(0)
    if prefill.startswith(tail):
        return rendered_prompt + prefill[len(tail) :], prefill
    stripped = prefill.lstrip()
    if prefill and stripped.startswith("<think>"):
        # The prefill opens its own block; keep the template's opener and continue inside it.
        body = stripped[len("<think>") :].lstrip("\n")
        return rendered_prompt + body, tail + body
    return rendered_prompt + prefill, tail + prefill


def finish_output(prefix: str, out: ModelOutput) -> ModelOutput:
    """Put the recorded prefix in front of a raw continuation and split it into reasoning and answer.

    Backends that continue text call this so that the prefill counts as reasoning where it is reasoning
    (LessThink's fake thought is recorded reasoning; ZeroThink's blank block gives empty reasoning).
    """
    if out.error is not None:
        return out
    text = prefix + out.text
    s = split_reasoning(text)
    return out.model_copy(
        update={"text": text, "reasoning": s.reasoning, "answer": s.answer, "reasoning_closed": s.reasoning_closed}
    )


def think_state(text: str) -> str:
    """Where a text leaves the think block: ``open`` (inside one), ``closed`` (after one) or ``none``."""
    o, c = text.rfind("<think>"), text.rfind("</think>")
    if o < 0 and c < 0:
        return "none"
    return "open" if o > c else "closed"


def continuation_problem(prefill: str, content: str, reasoning: str | None = None) -> str | None:
    """Why a chat reply cannot be the continuation of its prefill, or None when it can be.

    The reply of a chat request holds only what the model generated after the (continued) final
    assistant message, so it shows a dropped prefill only by what the model did next:

    * after a closed think block (ZeroThink, LessThink, no-think) the model answers; a reply that closes
      or opens a think block (in the text, or a server's reasoning parser that found a ``</think>`` and
      returned both reasoning and content) thought on its own, so the block was not in its prompt;
    * inside an open block (``<think>\nOkay.``, MoreThink's rounds) the model goes on thinking; a reply
      that opens a new block was not inside one.

    A template that keeps the prefill but puts something in front of it (Qwen3's empty think block) is
    invisible here; only rendering the template locally shows it (:func:`cotscope.models._render.template_problem`).

    Args:
        prefill: the assistant-turn prefix sent as the final message.
        content: the reply's message content.
        reasoning: the reply's ``reasoning_content``/``reasoning`` field, if the server has a parser.
    """
    state = think_state(prefill)
    head = content.lstrip()
    if state == "closed":
        if "</think>" in content or head.startswith("<think>"):
            return "the reply thinks again after the prefill's closed think block"
        if reasoning and content.strip():
            # A parser only splits off reasoning when the generated text closed a block of its own.
            return "the server's reasoning parser found a think block in the reply after the prefill's closed one"
    elif state == "open" and head.startswith("<think>"):
        return "the reply opens a new think block although the prefill left one open"
    return None
