"""Model backends: one protocol, a registry by provider, reasoning and answer split on the way out."""

from cotscope.models._protocol import (
    GenerateConfig,
    GenerateRequest,
    Model,
    ModelOutput,
    get_model,
    model_providers,
    modelapi,
)

__all__ = [
    "GenerateConfig",
    "GenerateRequest",
    "Model",
    "ModelOutput",
    "get_model",
    "model_providers",
    "modelapi",
]
