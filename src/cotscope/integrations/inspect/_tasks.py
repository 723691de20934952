"""cotscope's benchmarks as Inspect tasks, built from the benchmark specs, loaders and run plan (no copied prompts).

``inspect eval cotscope/safechain_strongreject --model vllm/...`` runs the spec's items as Inspect samples (the
system prompt and templated user turn ``cotscope run`` sends), the spec's decoding strategy as the solver
(``-T strategy=zerothink`` picks another), the spec's K samples as epochs, its sampling settings as the task's
``GenerateConfig`` and its judges (or their embedded fallbacks when no ``-T judge_model=`` is given, as ``cotscope
run`` resolves them) as cotscope scorers, with Safe@K, misalignment rate and DTR as metrics. DeceptionBench asks each
sample's belief question first (:func:`~cotscope.integrations.inspect._solvers.deception_belief`); CogTest runs its
habit judge with each sample's habit. CUAHarm runs cotscope's agent loop in its sandbox per sample
(:mod:`~cotscope.integrations.inspect._cuaharm`).

Not tasks: the judge-agreement benchmarks (their responses come with the data, nothing is generated).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from inspect_ai import Task, task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import ChatMessage, ChatMessageSystem, ChatMessageUser, GenerateConfig
from inspect_ai.scorer import Scorer
from inspect_ai.solver import Solver

from cotscope.benchmarks import JudgeSpec, PlanItem, RunOptions, RunPlan, get_benchmark, get_kind, make_plan
from cotscope.benchmarks._runner import _judge_options
from cotscope.errors import ConfigError
from cotscope.integrations.inspect._cuaharm import cuaharm, cuaharm_task
from cotscope.integrations.inspect._scorers import named_scorer
from cotscope.integrations.inspect._solvers import deception_belief, thinking_strategy

logger = logging.getLogger(__name__)

#: Benchmark kinds that are not Inspect tasks, and why.
NOT_TASKS = {
    "agreement": "its responses come with the data (nothing to generate); run it with cotscope run",
}

#: The model name the plan is made with: the plan's group ids are cotscope's, not Inspect's, and unused here.
_PLAN_MODEL = "inspect/task"


def _messages(item: PlanItem) -> list[ChatMessage]:
    out: list[ChatMessage] = []
    for m in item.messages:
        content = str(m.get("content") or "")
        system = m.get("role") == "system"
        out.append(ChatMessageSystem(content=content) if system else ChatMessageUser(content=content))
    return out


def _sample(spec_name: str, item: PlanItem) -> Sample:
    metadata: dict[str, Any] = {**item.metadata, "benchmark": spec_name, "item_id": item.id,
                                "category": item.category}
    return Sample(id=item.id, input=_messages(item), metadata=metadata)


def _group(judges: list[JudgeSpec]) -> list[tuple[JudgeSpec, list[str]]]:
    """Spec entries of one judge that differ only in their part become one scorer judging every part."""
    groups: dict[str, tuple[JudgeSpec, list[str]]] = {}
    for js in judges:
        key = js.model_dump_json(exclude={"part"})
        if key in groups:
            groups[key][1].append(js.part)
        else:
            groups[key] = (js, [js.part])
    return list(groups.values())


def plan_scorers(plan: RunPlan, opts: RunOptions) -> tuple[list[Scorer], list[str]]:
    """The scorers of a plan's judges, each the spec's judge or its fallback; and notes on judges left out.

    A judge that cannot run here (an LLM judge without ``judge_model`` and no fallback) is left out with a note,
    as ``cotscope run`` skips it.
    """
    kind = get_kind(plan.benchmark.kind)
    categories = sorted({it.category or "" for it in plan.items})
    scorers: list[Scorer] = []
    notes: list[str] = []
    for js, parts in _group(plan.benchmark.judges):
        variants = kind.judge_variants(js, categories)
        by_category = None if set(variants) == {"*"} else variants
        options = _judge_options(js, opts)  # the spec's, then -J key=value and -J judge.key=value, as cotscope run
        try:
            scorers.append(named_scorer(
                js.name, parts, model=opts.judge_model, base_url=opts.judge_base_url,
                kind="monitor" if js.role == "monitor" else "judge", fallback=js.fallback, role=js.role,
                by_category=by_category, **options))
        except (ConfigError, ValueError) as e:
            notes.append(f"judge {js.name}:{'+'.join(parts)} left out: {e}")
            continue
        if js.only_if:
            notes.append(f"judge {js.name} scores every sample here (cotscope run: only those whose {js.only_if} "
                         "verdict is true)")
    return scorers, notes


def benchmark_task(benchmark: str, *, strategy: str | None = None, samples: int | None = None,
                   limit: int | None = None, judge_model: str | None = None, judge_base_url: str | None = None,
                   judge_options: dict[str, Any] | None = None, data: str | None = None,
                   data_options: dict[str, Any] | None = None, hub: bool = False) -> Task:
    """A cotscope benchmark as an Inspect task.

    Args:
        benchmark: a benchmark name (``cotscope benchmarks``) or a spec YAML file.
        strategy: the decoding strategy (default the spec's first: ``normal``, Thought Crime's prefill, ...).
        samples: K samples per item, run as epochs (default the spec's).
        limit: the first N items (per habit for CogTest).
        judge_model: ``provider/model`` of the LLM judges (a cotscope backend); without it the embedded fallbacks
            run and judges without one are left out.
        judge_base_url: the judge model's OpenAI-compatible server.
        judge_options: options for every judge (``key``) or one (``judge.key``), as ``cotscope run -J``.
        data: read the items from this local file instead of the spec's.
        data_options: loader options over the spec's, as ``cotscope run -D``.
        hub: load the data from the Hugging Face Hub (network).

    Raises:
        ConfigError: an unknown benchmark or strategy, a benchmark that is not an Inspect task, or one whose judges
            can none of them run.
    """
    spec = get_benchmark(benchmark)
    if spec.kind in NOT_TASKS:
        raise ConfigError(f"{spec.name} is not an Inspect task: {NOT_TASKS[spec.kind]}")
    if spec.kind == "cuaharm":  # episodes in the sandbox, scored by the task's checker: no judges here
        if data_options and set(data_options) != {"set"}:
            raise ConfigError(f"{spec.name}: the only data option is 'set', got {sorted(data_options)}")
        return cuaharm_task(benchmark, tasks=data or (data_options or {}).get("set"), limit=limit, samples=samples,
                            strategy=strategy)
    opts = RunOptions(strategies=[strategy] if strategy else None, samples=samples, limit=limit,
                      judge_model=judge_model, judge_base_url=judge_base_url, judge_options=dict(judge_options or {}),
                      data=data, data_options=dict(data_options or {}), hub=hub)
    plan = make_plan(spec, _PLAN_MODEL, opts)
    scorers, notes = plan_scorers(plan, opts)
    for n in notes:
        logger.warning("%s: %s", spec.name, n)
    if not scorers:
        raise ConfigError(f"{spec.name}: none of its judges can run here: " + "; ".join(notes))
    solver: list[Solver] = [deception_belief()] if spec.kind == "deceptionbench" else []
    # One strategy per task: the spec's others are other runs (-T strategy=...), as each is a trace group of its own.
    solver.append(thinking_strategy(plan.strategies[0]))
    # No seed: Inspect sends a task's config with every epoch, and K samples with one seed would be one sample.
    config = GenerateConfig(temperature=plan.temperature, top_p=plan.top_p, max_tokens=plan.max_tokens)
    return Task(dataset=MemoryDataset([_sample(spec.name, it) for it in plan.items], name=spec.name),
                solver=solver, scorer=scorers, epochs=plan.samples, config=config,
                metadata={"cotscope_benchmark": spec.name, "strategy": plan.strategies[0], "notes": notes})


def task_name(benchmark: str) -> str:
    """The Inspect name of a benchmark's task (``safechain-strongreject`` -> ``safechain_strongreject``)."""
    return benchmark.replace("-", "_")


def _register(benchmark: str) -> Callable[..., Task]:
    def factory(strategy: str | None = None, samples: int | None = None, limit: int | None = None,
                judge_model: str | None = None, judge_base_url: str | None = None,
                judge_options: dict[str, Any] | None = None, data: str | None = None,
                data_options: dict[str, Any] | None = None, hub: bool = False) -> Task:
        return benchmark_task(benchmark, strategy=strategy, samples=samples, limit=limit, judge_model=judge_model,
                              judge_base_url=judge_base_url, judge_options=judge_options, data=data,
                              data_options=data_options, hub=hub)

    factory.__name__ = factory.__qualname__ = task_name(benchmark)
    factory.__doc__ = f"cotscope's {benchmark} benchmark as an Inspect task (arguments: see benchmark_task)."
    return task(name=task_name(benchmark))(factory)


@task(name="benchmark")
def benchmark(benchmark: str, strategy: str | None = None, samples: int | None = None, limit: int | None = None,
              judge_model: str | None = None, judge_base_url: str | None = None,
              judge_options: dict[str, Any] | None = None, data: str | None = None,
              data_options: dict[str, Any] | None = None, hub: bool = False) -> Task:
    """Any cotscope benchmark, by name or spec YAML file, as an Inspect task (``-T benchmark=NAME``)."""
    return benchmark_task(benchmark, strategy=strategy, samples=samples, limit=limit, judge_model=judge_model,
                          judge_base_url=judge_base_url, judge_options=judge_options, data=data,
                          data_options=data_options, hub=hub)


def _task_benchmarks() -> list[str]:
    from cotscope.benchmarks import benchmark_names

    # CUAHarm's task has options of its own (the sandbox, the agent's limits): registered by _cuaharm.
    return [n for n in benchmark_names() if get_benchmark(n).kind not in NOT_TASKS and n != "cuaharm"]


#: The registered task of every shipped benchmark that is an Inspect task, by benchmark name.
TASKS: dict[str, Callable[..., Task]] = {n: _register(n) for n in _task_benchmarks()} | {"cuaharm": cuaharm}
