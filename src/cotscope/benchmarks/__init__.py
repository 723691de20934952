"""Benchmarks: declarative specs (data + template + generation + judges + metrics), loaders and the runner.

Shipped benchmarks: ``safechain-strongreject``, ``safechain-strongreject-small``,
``safechain-wildjailbreak``, ``thought-crime``, ``thought-crime-backdoor``, ``deceptionbench`` and
``cogtest`` (specs in ``specs/``, data in ``data/`` with each source and licence). A user's YAML file of
the same shape is a benchmark too: ``cotscope run path/to/spec.yaml``.
"""

from cotscope.benchmarks._judges import CogTestHabit, DeceptionConsistency, habit_verdict, parse_json_object
from cotscope.benchmarks._loaders import (
    Item,
    backdoor_prompt,
    cogtest_habits,
    load_items,
    loader,
    loader_names,
    read_records,
    stratified_small,
)
from cotscope.benchmarks._metrics import compute_metrics
from cotscope.benchmarks._plan import PlanItem, PlanJudge, RunPlan, item_messages
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
    "BenchmarkSpec",
    "CogTestHabit",
    "DataSpec",
    "DeceptionConsistency",
    "GenerationSpec",
    "Item",
    "JudgeSpec",
    "PlanItem",
    "PlanJudge",
    "RunOptions",
    "RunPlan",
    "RunResult",
    "backdoor_prompt",
    "benchmark_names",
    "benchmark_prompts",
    "cogtest_habits",
    "compute_metrics",
    "describe",
    "get_benchmark",
    "habit_verdict",
    "item_messages",
    "list_benchmarks",
    "load_items",
    "load_spec",
    "loader",
    "loader_names",
    "make_plan",
    "parse_json_object",
    "read_records",
    "register_benchmark",
    "run_benchmark",
    "stratified_small",
]
