"""Model backends: one protocol, a registry by provider, reasoning and answer split on the way out.

Providers: ``openai`` (and the alias ``openai-api``) for any OpenAI-compatible server, ``local``
(transformers), ``llamacpp`` (llama-cpp-python in-process), ``vllm`` (a managed ``vllm serve``) and ``script``
(replays agent actions from a JSONL file).
Heavy libraries (torch, transformers, llama_cpp) are imported only when a backend is built.
"""

from cotscope.models import _llamacpp, _local, _openai, _script, _vllm  # noqa: F401  (register the providers)
from cotscope.models._cache import CachedModel, RequestCache, default_cache_dir, request_key
from cotscope.models._engine import Engine, EngineStats, generate_all
from cotscope.models._openai import OpenAIModel
from cotscope.models._prefill import finish_output, merge_prefill, strategy_strings
from cotscope.models._protocol import (
    DecodingStrategy,
    GenerateConfig,
    GenerateRequest,
    Model,
    ModelOutput,
    PlainDecoding,
    get_model,
    model_providers,
    modelapi,
)
from cotscope.models._script import ScriptedModel

__all__ = [
    "CachedModel",
    "DecodingStrategy",
    "Engine",
    "EngineStats",
    "GenerateConfig",
    "GenerateRequest",
    "Model",
    "ModelOutput",
    "OpenAIModel",
    "PlainDecoding",
    "RequestCache",
    "ScriptedModel",
    "default_cache_dir",
    "finish_output",
    "generate_all",
    "get_model",
    "merge_prefill",
    "model_providers",
    "modelapi",
    "request_key",
    "strategy_strings",
]
