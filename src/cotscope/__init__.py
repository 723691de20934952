"""cotscope: evaluate, monitor and harden the chain of thought of reasoning language models."""

from cotscope.store import Store
from cotscope.traces import Trace, read_traces, split_reasoning

__version__ = "0.1.0"

__all__ = ["Store", "Trace", "__version__", "read_traces", "split_reasoning"]
