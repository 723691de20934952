"""The model protocol every backend implements, its request and output types, and the registry.

A backend turns chat messages (and an optional assistant-turn prefix) into outputs whose reasoning and
answer are already split. Backends are named ``provider/model`` (Inspect AI's convention), e.g.
``openai/gpt-4.1``, ``local/HuggingFaceTB/SmolLM2-135M-Instruct``, ``llamacpp/path.gguf``, ``vllm/Qwen/QwQ-32B``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field


class GenerateConfig(BaseModel):
    """Sampling settings of one request."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 1024
    seed: int | None = None
    stop: list[str] = Field(default_factory=list)
    extra: dict[str, Any] = Field(default_factory=dict, description="backend-specific request fields")


class GenerateRequest(BaseModel):
    """One request: prompt messages, an optional assistant-turn prefix (prefill), and sampling settings.

    ``sample_index`` makes K samples of the same prompt distinct requests (and cache keys).
    """

    messages: list[dict[str, Any]]
    prefill: str = ""
    config: GenerateConfig = Field(default_factory=GenerateConfig)
    sample_index: int = 0
    template_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="extra chat-template variables, e.g. enable_thinking=False"
    )


class ModelOutput(BaseModel):
    """What a backend returns for one request. ``error`` is set (and the rest empty) on failure."""

    text: str = ""
    reasoning: str = ""
    answer: str = ""
    reasoning_closed: bool = True
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    model: str | None = None
    error: str | None = None
    cached: bool = False
    latency_s: float | None = None


@runtime_checkable
class Model(Protocol):
    """A text-generation backend."""

    name: str

    async def generate(self, requests: Sequence[GenerateRequest]) -> list[ModelOutput]:
        """Generate one output per request, in order; failures come back as outputs with ``error``."""
        ...

    async def aclose(self) -> None:
        """Release connections, processes and memory."""
        ...


ModelFactory = Callable[..., Model]
_REGISTRY: dict[str, ModelFactory] = {}


def modelapi(provider: str) -> Callable[[ModelFactory], ModelFactory]:
    """Register a backend factory for a provider prefix: ``@modelapi("openai")``.

    The factory is called as ``factory(model_name, base_url=..., **model_args)``.
    """

    def deco(factory: ModelFactory) -> ModelFactory:
        _REGISTRY[provider] = factory
        return factory

    return deco


def model_providers() -> list[str]:
    """Registered provider prefixes."""
    return sorted(_REGISTRY)


def get_model(name: str, *, base_url: str | None = None, **model_args: Any) -> Model:
    """Build a backend from a ``provider/model`` name.

    Raises:
        ValueError: the name has no provider prefix or the provider is unknown.
    """
    provider, sep, model = name.partition("/")
    if not sep or not model:
        raise ValueError(f"model name {name!r} must look like provider/model, e.g. openai/gpt-4.1")
    if provider not in _REGISTRY:
        raise ValueError(f"unknown model provider {provider!r}: expected one of {', '.join(model_providers())}")
    return _REGISTRY[provider](model, base_url=base_url, **model_args)
