"""The Python front door: ``cotscope.run`` / ``run_async`` for notebooks and scripts.

Options are named as the CLI's (in snake case): ``cotscope.run("safechain-strongreject", model="local/smollm2",
store="runs/s.duckdb", limit=5, samples=2, strategies=["normal", "zerothink"])`` does what
``cotscope run safechain-strongreject --model local/smollm2 --store runs/s.duckdb --limit 5 -k 2 --strategy
normal,zerothink`` does, through the same stages.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cotscope._sync import run_sync
from cotscope.errors import ConfigError

if TYPE_CHECKING:
    from cotscope.benchmarks import BenchmarkSpec, RunResult
    from cotscope.pipeline import Progress
    from cotscope.store import Store

__all__ = ["run", "run_async", "run_sync"]


def _options(options: dict[str, Any]) -> Any:
    from cotscope.benchmarks import RunOptions

    known = {f.name for f in fields(RunOptions)}
    # CLI spellings that differ from the option object's fields.
    aliases = {"strategy": "strategies", "model_arg": "model_args", "judge_option": "judge_options",
               "no_judge": "skip_judges", "k": "samples", "data_option": "data_options"}
    kw: dict[str, Any] = {}
    for k, v in options.items():
        name = aliases.get(k, k)
        if name not in known:
            raise ConfigError(f"unknown run option {k!r}: expected one of {', '.join(sorted(known))}")
        kw[name] = v
    if isinstance(kw.get("strategies"), str):
        kw["strategies"] = [s.strip() for s in kw["strategies"].split(",") if s.strip()]
    for k in ("data", "cache"):
        if kw.get(k) is not None:
            kw[k] = str(kw[k])
    return RunOptions(**kw)


async def run_async(benchmark: str | Path | BenchmarkSpec, *, model: str | None = None,
                    store: str | Path | Store = ":memory:", progress: Progress | None = None,
                    **options: Any) -> RunResult:
    """Run a benchmark (generate -> judge -> metrics) into a store; the awaitable twin of :func:`run`.

    Args:
        benchmark: a registered name, a spec YAML path, or a :class:`~cotscope.benchmarks.BenchmarkSpec`.
        model: ``provider/model`` of the model under test (judge-agreement benchmarks need none).
        store: a store path (created when missing), an open :class:`~cotscope.store.Store`, or ``":memory:"``.
        progress: where progress goes (default: nowhere).
        **options: the CLI's options in snake case: ``limit``, ``samples``, ``strategies``, ``temperature``,
            ``max_tokens``, ``judge_model``, ``judge_base_url``, ``judge_options``, ``model_base_url``,
            ``model_args``, ``hub``, ``skip_judges``, ``cache``, ``no_cache``, ``data``.

    Raises:
        ConfigError: an unknown option or benchmark.
    """
    from cotscope.benchmarks import BenchmarkSpec, get_benchmark, run_benchmark
    from cotscope.store import Store

    opts = _options(options)
    spec = benchmark if isinstance(benchmark, BenchmarkSpec) else get_benchmark(benchmark)
    own = not isinstance(store, Store)
    st = Store(store) if not isinstance(store, Store) else store
    try:
        return await run_benchmark(st, spec, model, opts, progress=progress)
    finally:
        if own:
            st.close()


def run(benchmark: str | Path | BenchmarkSpec, *, model: str | None = None, store: str | Path | Store = ":memory:",
        progress: Progress | None = None, **options: Any) -> RunResult:
    """Run a benchmark and return its :class:`~cotscope.benchmarks.RunResult` (``.to_frame()`` for pandas).

    Works in a plain script and inside a running event loop (Jupyter): there it runs on a worker thread
    with a loop of its own. Arguments as :func:`run_async`.
    """
    return run_sync(run_async(benchmark, model=model, store=store, progress=progress, **options))

