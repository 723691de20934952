"""cotscope: evaluate, monitor and harden the chain of thought of reasoning language models."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from cotscope.store import Store
    from cotscope.traces import Trace, read_traces, split_reasoning

# Resolved on first use so that `cotscope --help` does not pay for DuckDB and Arrow.
_LAZY = {
    "Store": "cotscope.store",
    "Trace": "cotscope.traces",
    "read_traces": "cotscope.traces",
    "split_reasoning": "cotscope.traces",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cotscope' has no attribute {name!r}")


__all__ = ["Store", "Trace", "__version__", "read_traces", "split_reasoning"]
