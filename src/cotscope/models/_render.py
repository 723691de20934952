"""Rendering chat messages to prompt text locally, for backends that continue text (prefill strategies)."""

from __future__ import annotations

from typing import Any

from cotscope.models._prefill import strategy_strings


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
