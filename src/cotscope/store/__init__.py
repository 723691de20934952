"""The DuckDB store of traces, runs and results."""

from cotscope.store._export import export_traces
from cotscope.store._labels import Label, LabelExport, label_bool
from cotscope.store._store import IngestReport, Store, config_hash, store_locked
from cotscope.store._where import ResultFilter, parse_where

__all__ = [
    "IngestReport",
    "Label",
    "LabelExport",
    "ResultFilter",
    "Store",
    "config_hash",
    "export_traces",
    "label_bool",
    "parse_where",
    "store_locked",
]
