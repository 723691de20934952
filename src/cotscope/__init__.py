"""cotscope: evaluate, monitor and harden the chain of thought of reasoning language models.

The Python front door::

    import cotscope

    res = cotscope.run("safechain-strongreject", model="local/smollm2", store="runs/s.duckdb", limit=5)
    res.to_frame()                                  # every metric as a pandas DataFrame
    with cotscope.Store("runs/s.duckdb") as st:
        st.traces_df(), st.results_df()             # one row per trace / per judge or monitor result
    judge = cotscope.get_judge("refusal-strings")   # judges, monitors and backends by name
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from cotscope._api import run, run_async
    from cotscope.benchmarks import RunOptions, RunResult, get_benchmark
    from cotscope.errors import ConfigError, CotscopeError, DataError
    from cotscope.judges import get_judge
    from cotscope.models import get_model
    from cotscope.monitors import get_monitor
    from cotscope.store import Store
    from cotscope.thinking import get_strategy
    from cotscope.traces import Trace, read_traces, split_reasoning

# Resolved on first use so that `cotscope --help` does not pay for DuckDB, Arrow or the model SDKs.
_LAZY = {
    "ConfigError": "cotscope.errors",
    "CotscopeError": "cotscope.errors",
    "DataError": "cotscope.errors",
    "RunOptions": "cotscope.benchmarks",
    "RunResult": "cotscope.benchmarks",
    "Store": "cotscope.store",
    "Trace": "cotscope.traces",
    "get_benchmark": "cotscope.benchmarks",
    "get_judge": "cotscope.judges",
    "get_model": "cotscope.models",
    "get_monitor": "cotscope.monitors",
    "get_strategy": "cotscope.thinking",
    "read_traces": "cotscope.traces",
    "run": "cotscope._api",
    "run_async": "cotscope._api",
    "split_reasoning": "cotscope.traces",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cotscope' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*__all__, "__version__"])


__all__ = [
    "ConfigError",
    "CotscopeError",
    "DataError",
    "RunOptions",
    "RunResult",
    "Store",
    "Trace",
    "get_benchmark",
    "get_judge",
    "get_model",
    "get_monitor",
    "get_strategy",
    "read_traces",
    "run",
    "run_async",
    "split_reasoning",
]
