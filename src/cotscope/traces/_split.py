"""Splitting a raw model response into reasoning and answer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel

TagPair = tuple[str, str]

#: Reasoning delimiters that models emit, tried in order. ``<think>`` covers DeepSeek-R1,
#: Qwen3 and QwQ; ``◁think▷`` is Kimi's.
DEFAULT_TAGS: tuple[TagPair, ...] = (
    ("<think>", "</think>"),
    ("<thinking>", "</thinking>"),
    ("<reasoning>", "</reasoning>"),
    ("◁think▷", "◁/think▷"),
)
ANSWER_TAGS: TagPair = ("<answer>", "</answer>")

SplitKind = Literal["tagged", "close-only", "unclosed", "answer-tags", "none"]


class SplitResult(BaseModel):
    """The reasoning and answer parts of one response."""

    reasoning: str
    answer: str
    reasoning_closed: bool
    kind: SplitKind


def _answer_tags(text: str, tags: TagPair) -> str | None:
    open_tag, close_tag = tags
    i = text.find(open_tag)
    if i < 0:
        return None
    j = text.find(close_tag, i + len(open_tag))
    body = text[i + len(open_tag) :] if j < 0 else text[i + len(open_tag) : j]
    return body.strip()


def split_reasoning(
    text: str,
    tags: Sequence[TagPair] = DEFAULT_TAGS,
    answer_tags: TagPair | None = ANSWER_TAGS,
) -> SplitResult:
    """Split a raw response into reasoning and answer.

    Handles ``<think>R</think>A``; reasoning whose opening tag was in the prompt (only the closing
    tag present); an unclosed block (the budget ran out: all reasoning, empty answer,
    ``reasoning_closed=False``); a blank block; no block at all (all answer); and ``<answer>`` tags.

    Args:
        text: the assistant's raw output.
        tags: reasoning delimiter pairs, tried in order; the first that occurs is used.
        answer_tags: an answer delimiter pair, or ``None`` to ignore answer tags.

    Returns:
        The split, with ``kind`` saying which case applied.
    """
    if not isinstance(text, str):
        raise TypeError(f"response must be a string, got {type(text).__name__}")
    for open_tag, close_tag in tags:
        i = text.find(open_tag)
        j = text.find(close_tag)
        if i < 0 and j < 0:
            continue
        if i >= 0 and j < 0:
            # An open tag and no close tag: the model never stopped thinking.
            return SplitResult(
                reasoning=text[i + len(open_tag) :].strip(),
                answer="",
                reasoning_closed=False,
                kind="unclosed",
            )
        start = i + len(open_tag) if 0 <= i < j else 0
        kind: SplitKind = "tagged" if 0 <= i < j else "close-only"
        reasoning = text[start:j].strip()
        rest = text[j + len(close_tag) :]
        answer = rest.strip()
        if answer_tags is not None:
            inner = _answer_tags(rest, answer_tags)
            if inner is not None:
                answer = inner
        return SplitResult(reasoning=reasoning, answer=answer, reasoning_closed=True, kind=kind)
    if answer_tags is not None:
        k = text.find(answer_tags[0])
        if k >= 0:
            inner = _answer_tags(text, answer_tags)
            return SplitResult(
                reasoning=text[:k].strip(), answer=inner or "", reasoning_closed=True, kind="answer-tags"
            )
    return SplitResult(reasoning="", answer=text.strip(), reasoning_closed=True, kind="none")
