"""Benchmarks: declarative specs (data + template + generation + judges + metrics), their kinds and the runner.

Shipped benchmarks: ``safechain-strongreject``, ``safechain-strongreject-small``,
``safechain-wildjailbreak``, ``thought-crime``, ``thought-crime-backdoor``, ``deceptionbench``, ``cogtest`` and
the judge-agreement sets (specs in ``specs/``, data in ``data/`` with each source and licence). A user's YAML
file of the same shape is a benchmark too: ``cotscope run path/to/spec.yaml``. A new family of metrics is a
:class:`BenchmarkKind` registered with :func:`benchmark_kind`.
"""

from cotscope.benchmarks._kinds import BenchmarkKind, Phase, benchmark_kind, get_kind
from cotscope.benchmarks._loaders import (
    BACKDOOR_POSITIONS,
    Item,
    backdoor_prompt,
    backdoor_training_options,
    load_items,
    loader,
    loader_names,
)
from cotscope.benchmarks._metrics import Column, Metrics, MetricTable
from cotscope.benchmarks._plan import PlanItem, PlanJudge, RunPlan
from cotscope.benchmarks._registry import (
    benchmark_names,
    describe,
    get_benchmark,
    list_benchmarks,
    register_benchmark,
)
from cotscope.benchmarks._runner import RunOptions, RunResult, benchmark_prompts, make_plan, run_benchmark
from cotscope.benchmarks._spec import BenchmarkSpec, DataSpec, GenerationSpec, JudgeSpec, load_spec

__all__ = [
    "BACKDOOR_POSITIONS",
    "BenchmarkKind",
    "BenchmarkSpec",
    "Column",
    "DataSpec",
    "GenerationSpec",
    "Item",
    "JudgeSpec",
    "MetricTable",
    "Metrics",
    "Phase",
    "PlanItem",
    "PlanJudge",
    "RunOptions",
    "RunPlan",
    "RunResult",
    "backdoor_prompt",
    "backdoor_training_options",
    "benchmark_kind",
    "benchmark_names",
    "benchmark_prompts",
    "describe",
    "get_benchmark",
    "get_kind",
    "list_benchmarks",
    "load_items",
    "load_spec",
    "loader",
    "loader_names",
    "make_plan",
    "register_benchmark",
    "run_benchmark",
]
