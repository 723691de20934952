"""Inspect's model as a cotscope backend, so that cotscope's strategies (one implementation each) run inside
an Inspect solver: each request's prefill becomes a final assistant message that the provider continues."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cotscope.models import GenerateRequest, ModelOutput
from cotscope.thinking import finish_output

if TYPE_CHECKING:
    from inspect_ai.model import ChatMessage, Model
    from inspect_ai.model import ModelOutput as InspectOutput


def _chat(messages: Sequence[Mapping[str, Any]]) -> list[ChatMessage]:
    from inspect_ai.model import ChatMessageAssistant, ChatMessageSystem, ChatMessageUser

    kinds: dict[str, Any] = {"system": ChatMessageSystem, "user": ChatMessageUser, "assistant": ChatMessageAssistant}
    out: list[ChatMessage] = []
    for m in messages:
        role = str(m.get("role"))
        if role not in kinds:
            raise ValueError(f"a request message has role {role!r}: expected system, user or assistant")
        out.append(kinds[role](content=str(m.get("content") or "")))
    return out


class InspectModel:
    """A :class:`cotscope.models.Model` over one Inspect sample's model and conversation.

    Requests carry the prefill and the sampling limits a strategy sets (``max_tokens``, ``stop``); the prompt is
    the sample's own messages (images, tools and all), so a request's ``messages`` only key the strategy's
    seeded choices. Without sample messages each request's own (text) messages are the prompt: the agent loop's
    requests, a new conversation per step. Temperature, top-p and the rest come from the task's and the command
    line's ``GenerateConfig`` as for any Inspect solver.

    Args:
        model: the Inspect model (``get_model()``, the model under evaluation).
        messages: the conversation the strategy answers; ``None``: each request's messages.
    """

    name = "inspect"

    def __init__(self, model: Model, messages: Sequence[ChatMessage] | None = None) -> None:
        self.model = model
        self.messages = list(messages) if messages is not None else None
        #: The Inspect output of the last request, whose message the solver replaces with the whole turn.
        self.last: InspectOutput | None = None

    async def generate(self, requests: Sequence[GenerateRequest]) -> list[ModelOutput]:
        """One output per request, its text the prefill followed by the continuation (split by cotscope)."""
        return [await self._one(r) for r in requests]

    async def _one(self, request: GenerateRequest) -> ModelOutput:
        from inspect_ai.model import ChatMessageAssistant, ContentReasoning, GenerateConfig

        messages = list(self.messages) if self.messages is not None else _chat(request.messages)
        if request.prefill:
            messages.append(ChatMessageAssistant(content=request.prefill))
        extra: dict[str, Any] = {}
        if request.template_kwargs:
            extra["extra_body"] = {"chat_template_kwargs": dict(request.template_kwargs)}
        config = GenerateConfig(max_tokens=request.config.max_tokens, stop_seqs=list(request.config.stop) or None,
                                **extra)
        out = await self.model.generate(messages, config=config)
        self.last = out
        if out.error:
            return ModelOutput(error=str(out.error), model=out.model)
        text = out.completion
        if out.choices:
            content = out.choices[0].message.content
            reasoning = "\n\n".join(c.reasoning for c in content if isinstance(c, ContentReasoning)
                                    and not c.redacted) if isinstance(content, list) else ""
            if reasoning and "<think>" not in request.prefill:
                # A provider that returns reasoning apart (a reasoning parser) answered a prompt with no open think
                # block: its reasoning goes in front as a block of its own, as cotscope's backends record it.
                text = f"<think>\n{reasoning}\n</think>\n\n{text}"
        stop = out.choices[0].stop_reason if out.choices else None
        raw = ModelOutput(
            text=text,
            finish_reason="length" if stop == "max_tokens" else "stop" if stop else None,
            completion_tokens=out.usage.output_tokens if out.usage else None,
            prompt_tokens=out.usage.input_tokens if out.usage else None,
            model=out.model,
        )
        return finish_output(request.prefill, raw)

    async def aclose(self) -> None:
        """Nothing to release: Inspect owns the model."""
