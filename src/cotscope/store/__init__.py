"""The DuckDB store of traces, runs and results."""

from cotscope.store._export import export_traces
from cotscope.store._store import IngestReport, Store, config_hash

__all__ = ["IngestReport", "Store", "config_hash", "export_traces"]
