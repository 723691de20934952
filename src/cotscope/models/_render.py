"""Rendering chat messages to prompt text locally, for backends that continue text (prefill strategies)."""

from __future__ import annotations

from typing import Any

from cotscope.models._prefill import merge_prefill, strategy_strings


def render_chat(tokenizer: Any, messages: list[dict[str, Any]], template_kwargs: dict[str, Any] | None = None) -> str:
    """The prompt text of chat messages with the generation prompt, by the tokenizer's chat template.

    A tokenizer without a chat template (a base model) gets SafeChain's fallback
    ``## Instruction: {instruction}\\n## Response: `` over the last user message.
    """
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, **(template_kwargs or {})
        )
        return str(text)
    return fallback_prompt(messages)


def fallback_prompt(messages: list[dict[str, Any]]) -> str:
    """SafeChain's prompt for models without a chat template, over the last user message."""
    inst = next((str(m.get("content") or "") for m in reversed(messages) if m.get("role") == "user"), "")
    template: str = strategy_strings()["no_chat_template_fallback"]
    return template.format(instruction=inst)


def template_problem(
    tokenizer: Any, messages: list[dict[str, Any]], prefill: str, template_kwargs: dict[str, Any] | None = None
) -> str | None:
    """Whether a server rendering this chat template would change the prefill, rendered locally.

    Renders the prompt two ways with the same template: the way cotscope means it (the generation prompt,
    then the prefill merged by :func:`merge_prefill`) and the way an OpenAI-compatible server continues a
    final assistant message (``continue_final_message=True, add_generation_prompt=False``, as vLLM does
    through transformers' ``apply_chat_template``). Any difference is a template that rewrites the prefill:
    DeepSeek-R1's drops everything up to ``</think>`` from assistant content (transformers then refuses
    to continue the message), Qwen3's puts an empty ``<think>\n\n</think>\n\n`` in front of content that
    has no ``</think>`` (the pitfall of Thought Crime's footnote 6).

    Returns:
        None when both renderings are the same text; otherwise what the template does, in words.
    """
    if not prefill or not getattr(tokenizer, "chat_template", None):
        return None
    kw = dict(template_kwargs or {})
    meant, _ = merge_prefill(render_chat(tokenizer, messages, kw), prefill)
    try:
        served = str(tokenizer.apply_chat_template(
            [*messages, {"role": "assistant", "content": prefill}], tokenize=False,
            add_generation_prompt=False, continue_final_message=True, **kw,
        ))
    except Exception as e:  # transformers' ValueError, or a template that raises on assistant content
        return f"the chat template deletes part of the prefill ({_short(str(e).splitlines()[0])})"
    if served == meant:
        return None
    n = 0
    for a, b in zip(served, meant, strict=False):
        if a != b:
            break
        n += 1
    return (f"the chat template renders the prefill's turn as ...{_short(served[n:])!r} where cotscope "
            f"means ...{_short(meant[n:])!r}")


def _short(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
