"""The model protocol every backend implements, its request and output types, and the registry.

A backend turns chat messages (and an optional assistant-turn prefix) into outputs whose reasoning and
answer are already split. Backends are named ``provider/model`` (Inspect AI's convention), e.g.
``openai/gpt-4.1``, ``local/HuggingFaceTB/SmolLM2-135M-Instruct``, ``llamacpp/path.gguf``, ``vllm/Qwen/QwQ-32B``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from cotscope._registry import Registry
from cotscope.errors import ConfigError


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
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "what the request is for (the agent loop sets task id and step); never sent to a server, read by "
            "in-process backends such as the scripted model, and part of the cache key when set"
        ),
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
    #: The top alternatives of the first generated tokens, ``token -> log-probability`` per position, when the
    #: request asked for them (``extra={"logprobs": True, "top_logprobs": 20}``) and the backend returns them;
    #: ``None`` otherwise. The Emergent Misalignment judge scores from the first position.
    top_logprobs: list[dict[str, float]] | None = None
    model: str | None = None
    error: str | None = None
    cached: bool = False
    latency_s: float | None = None
    prefill_applied: str | None = Field(
        default=None,
        description=(
            "how the request's prefill reached the model: 'none' (no prefill), 'chat-continue' (the final "
            "assistant message of a chat request, checked), 'completions' (appended to the chat template "
            "rendered by cotscope, sent to /v1/completions), 'rendered' (the same, in-process: local and "
            "llama.cpp backends), 'template-rewrote' (kept although the server's chat template dropped or "
            "rewrote it); None when the backend did not say (outputs cached before the field existed)"
        ),
    )


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


@runtime_checkable
class DecodingStrategy(Protocol):
    """How the engine turns prompt requests into model calls: the contract ``cotscope.thinking`` implements.

    Defined here, not in ``thinking``, so that the engine depends on a protocol of its own package and
    ``thinking`` may build on ``models`` without an import cycle.

    Attributes:
        name: recorded on every trace generated with it.
        single_round: true when :meth:`generate` sends exactly ``[prepare(r) for r in requests]`` to the
            model, once. The engine then looks all cache hits up before sending anything; a multi-round
            strategy (MoreThink, think-budget) only learns its later requests from earlier outputs, so its
            rounds go through the cache one by one instead.
    """

    name: str
    single_round: bool

    def prepare(self, request: GenerateRequest) -> GenerateRequest:
        """The (first) model request for one prompt request."""
        ...

    async def generate(self, model: Model, requests: Sequence[GenerateRequest]) -> list[ModelOutput]:
        """One output per prompt request, in order."""
        ...


class PlainDecoding:
    """The default decoding: each request goes to the model as it is (the ``normal`` strategy)."""

    name = "normal"
    single_round = True

    def prepare(self, request: GenerateRequest) -> GenerateRequest:
        """The request unchanged."""
        return request

    async def generate(self, model: Model, requests: Sequence[GenerateRequest]) -> list[ModelOutput]:
        """One model call with the requests as they are."""
        return await model.generate(list(requests))


ModelFactory = Callable[..., Model]


def _load_providers() -> None:
    # The backends register themselves when the package imports them.
    import cotscope.models  # noqa: F401


#: Backend factories by provider prefix. A factory is called as ``factory(model, base_url=..., **model_args)``.
MODEL_PROVIDERS: Registry[Model] = Registry("model provider", loader=_load_providers)


def modelapi(provider: str) -> Callable[[ModelFactory], ModelFactory]:
    """Register a backend factory for a provider prefix: ``@modelapi("openai")``.

    The factory is called as ``factory(model_name, base_url=..., **model_args)``.
    """
    return MODEL_PROVIDERS.register(provider)


def model_providers() -> list[str]:
    """Registered provider prefixes."""
    return MODEL_PROVIDERS.names()


def get_model(name: str, *, base_url: str | None = None, **model_args: Any) -> Model:
    """Build a backend from a ``provider/model`` name.

    The backend records what it was built from (``cotscope._registry.registry_info``): the provider and
    the factory's arguments, the model name among them.

    Raises:
        ConfigError: the name has no provider prefix or the provider is unknown (a ``ValueError``).
    """
    provider, sep, model = name.partition("/")
    if not sep or not model:
        raise ConfigError(f"model name {name!r} must look like provider/model, e.g. openai/gpt-4.1")
    return MODEL_PROVIDERS.get(provider, model, base_url=base_url, **model_args)
