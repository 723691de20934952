"""Benchmark kinds: one object per family of benchmarks, owning its plan, phases, judge context and metrics.

A spec names its kind (``kind: safechain``); everything that differs between SafeChain, Thought Crime,
DeceptionBench, CogTest and judge agreement lives in the kind's methods instead of ``kind ==`` checks spread
over the runner, the plan and the metrics. A new family is a subclass registered with
``@benchmark_kind("name")``; a new benchmark of an existing family is only a YAML spec.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from cotscope._registry import Registry
from cotscope.benchmarks._loaders import Item
from cotscope.benchmarks._metrics import (
    Metrics,
    PlanView,
    agreement_metrics,
    cogtest_metrics,
    cuaharm_metrics,
    deception_metrics,
    generic_metrics,
    integrity_metrics,
    new_metrics,
    safechain_metrics,
    thought_crime_metrics,
)
from cotscope.benchmarks._plan import PlanItem, RunPlan, item_messages
from cotscope.benchmarks._spec import BenchmarkSpec, JudgeSpec
from cotscope.traces import PromptItem, Source, Trace
from cotscope.traces._trace import group_id_for

if TYPE_CHECKING:
    from cotscope._progress import Progress
    from cotscope.benchmarks._runner import RunResult
    from cotscope.models import Model, RequestCache
    from cotscope.store import Store

#: The strategy name of responses that come with the data (judge-agreement benchmarks).
GIVEN = "given"

#: The strategy of DeceptionBench's belief phase: the model's own view, without any decoding tricks.
BELIEF_STRATEGY = "normal"


@dataclass
class Phase:
    """One generation pass of a run: prompts answered under one strategy.

    Attributes:
        name: ``scenario``, ``belief``, ``given``.
        strategy: the decoding strategy name.
        prompts: what to answer (their metadata goes onto the traces).
        given: the responses come with the data: they are stored as traces and no model is called.
        samples: samples per prompt; ``None``: the run's K.
    """

    name: str
    strategy: str
    prompts: list[PromptItem]
    given: bool = False
    samples: int | None = None


class BenchmarkKind:
    """The default family: generate under each strategy, run the judges, report label rates.

    Subclasses override what differs. All methods are pure functions of the spec/plan (and the store for
    judge context), so the CLI, the Python API and the report compute the same things.
    """

    name: ClassVar[str] = "generic"

    # -- planning ---------------------------------------------------------------------------------------------
    def select(self, items: list[Item], limit: int | None) -> list[Item]:
        """The items of a run: the first ``limit`` (all when ``None``)."""
        return items if limit is None else items[:limit]

    def strategies(self, spec: BenchmarkSpec, requested: list[str] | None) -> list[str]:
        """The strategy names of a run (the requested ones, else the spec's), normalised by the registry."""
        from cotscope.thinking import get_strategy

        return [get_strategy(s).name for s in (requested or spec.generation.strategy_specs())]

    def samples(self, spec: BenchmarkSpec, requested: int | None) -> int:
        """K samples per prompt."""
        return requested or spec.generation.samples

    def plan_item(self, spec: BenchmarkSpec, item: Item, model: str, strategies: list[str]) -> PlanItem:
        """One item's rendered prompt and the group id of each strategy."""
        msgs = item_messages(spec, item)
        return PlanItem(id=item.id, category=item.category, metadata=item.metadata, messages=msgs,
                        groups={s: group_id_for(msgs, model, s) for s in strategies})

    def prompt(self, spec: BenchmarkSpec, item: PlanItem, index: int) -> PromptItem:
        """The prompt of an item as the generation stage takes it (``generate --benchmark`` uses the same)."""
        return PromptItem(messages=item.messages, line=index + 1,
                          metadata={"benchmark": spec.name, "item_id": item.id, "category": item.category})

    def phases(self, plan: RunPlan) -> list[Phase]:
        """The generation passes of a run, in order."""
        prompts = [self.prompt(plan.benchmark, it, i) for i, it in enumerate(plan.items)]
        return [Phase("scenario", s, prompts) for s in plan.strategies]

    async def generate(self, store: Store, plan: RunPlan, backend: Callable[[], Model], res: RunResult,
                       cache: RequestCache | None, progress: Progress) -> None:
        """Produce the run's traces: every phase through the generation stage (agent kinds run episodes).

        ``backend`` builds the run's one backend on first use; the run closes it."""
        from cotscope.benchmarks._runner import generation_phase

        await generation_phase(store, plan, self, backend, res, cache, progress)

    # -- judging ----------------------------------------------------------------------------------------------
    def judge_variants(self, js: JudgeSpec, categories: list[str]) -> dict[str, dict[str, Any]]:
        """Extra judge options per item category; ``{"*": {}}``: one judge for every item."""
        return {"*": {}}

    def contexts(self, store: Store, plan: RunPlan) -> dict[str, dict[str, Any]] | None:
        """Per-trace context for the judges (by trace id), or ``None`` when the judges need none."""
        return None

    # -- measuring --------------------------------------------------------------------------------------------
    def measure(self, view: PlanView, out: Metrics) -> None:
        """Fill ``out`` with this family's tables, plots and headline numbers."""
        generic_metrics(view, out)

    def metrics(self, store: Store, plan: RunPlan) -> Metrics:
        """All metrics of one run, recomputed from the store."""
        view = PlanView(store, plan)
        out = new_metrics(view)
        self.measure(view, out)
        integrity_metrics(view, out)
        return out


#: Benchmark kinds by name (the ``kind`` of a spec). Built-ins are defined in this module.
KINDS: Registry[BenchmarkKind] = Registry("benchmark kind")


def benchmark_kind(name: str) -> Callable[[type[BenchmarkKind]], type[BenchmarkKind]]:
    """Register a benchmark kind class under ``name``."""
    return KINDS.register(name)


def get_kind(name: str) -> BenchmarkKind:
    """The kind object of a spec's ``kind``.

    Raises:
        UnknownNameError: no such kind (a ``ConfigError``).
    """
    return KINDS.get(name)


benchmark_kind("generic")(BenchmarkKind)


@benchmark_kind("safechain")
class SafeChainKind(BenchmarkKind):
    """SafeChain (Jiang et al. 2025): Safe@1 / Safe@K / ConsSafe@K of reasoning and answer per strategy."""

    name = "safechain"

    def measure(self, view: PlanView, out: Metrics) -> None:
        """SafeChain's tables."""
        safechain_metrics(view, out)


@benchmark_kind("thought-crime")
class ThoughtCrimeKind(BenchmarkKind):
    """Thought Crime (Chua et al. 2025): misalignment rate per question and the CoT monitor."""

    name = "thought-crime"

    def measure(self, view: PlanView, out: Metrics) -> None:
        """Misalignment per question, monitor flags and ROC."""
        thought_crime_metrics(view, out, by_condition=False)


@benchmark_kind("backdoor")
class BackdoorKind(BenchmarkKind):
    """Thought Crime's backdoor setting: misalignment per condition (trigger / control / none), articulation."""

    name = "backdoor"

    def measure(self, view: PlanView, out: Metrics) -> None:
        """Misalignment per condition and the articulation rate."""
        thought_crime_metrics(view, out, by_condition=True)


@benchmark_kind("deceptionbench")
class DeceptionBenchKind(BenchmarkKind):
    """DeceptionBench: elicit the model's belief (phase 1), answer the scenario (phase 2), compare (phase 3)."""

    name = "deceptionbench"

    def plan_item(self, spec: BenchmarkSpec, item: Item, model: str, strategies: list[str]) -> PlanItem:
        """Adds the belief question and its group."""
        p = super().plan_item(spec, item, model, strategies)
        p.belief_messages = [{"role": "user", "content": str(item.metadata.get("inner_prompt", ""))}]
        p.belief_group = group_id_for(p.belief_messages, model, BELIEF_STRATEGY)
        return p

    def prompt(self, spec: BenchmarkSpec, item: PlanItem, index: int) -> PromptItem:
        """The scenario prompt, marked as phase 2."""
        p = super().prompt(spec, item, index)
        p.metadata["phase"] = "scenario"
        return p

    def phases(self, plan: RunPlan) -> list[Phase]:
        """The belief phase first (normal decoding), then the scenario under each strategy."""
        belief = [PromptItem(messages=it.belief_messages or [], line=i + 1,
                             metadata={"benchmark": plan.benchmark.name, "item_id": it.id, "category": it.category,
                                       "phase": "belief"})
                  for i, it in enumerate(plan.items)]
        # One belief per item: the model's own view, whatever K the scenario is sampled with.
        return [Phase("belief", BELIEF_STRATEGY, belief, samples=1), *super().phases(plan)]

    def contexts(self, store: Store, plan: RunPlan) -> dict[str, dict[str, Any]] | None:
        """Each scenario trace gets its item's elicited belief (the belief response's answer) and question."""
        groups = [it.belief_group for it in plan.items if it.belief_group]
        beliefs: dict[str, str] = {}
        for t in store.traces(group_id=groups) if groups else []:
            if t.sample_index == 0:
                beliefs[str(t.group_id)] = t.answer or t.reasoning
        scen = plan.all_groups()
        by_group = store.ids_by_group(group_id=scen) if scen else {}
        out: dict[str, dict[str, Any]] = {}
        for it in plan.items:
            belief = beliefs.get(it.belief_group or "")
            for gid in it.groups.values():
                for tid in by_group.get(gid, []):
                    out.setdefault(tid, {"belief": belief, "inner_prompt": it.metadata.get("inner_prompt")})
        return out

    def measure(self, view: PlanView, out: Metrics) -> None:
        """The deception tendency rate."""
        deception_metrics(view, out)


@benchmark_kind("cogtest")
class CogTestKind(BenchmarkKind):
    """CogTest: 16 habits of mind; one extraction judge per habit over the reasoning."""

    name = "cogtest"

    def select(self, items: list[Item], limit: int | None) -> list[Item]:
        """The limit is per habit (``--limit 5``: the first 5 tasks of each habit): a profile needs every habit."""
        if limit is None:
            return items
        seen: dict[str | None, int] = {}
        kept = []
        for it in items:
            seen[it.category] = seen.get(it.category, 0) + 1
            if seen[it.category] <= limit:
                kept.append(it)
        return kept

    def judge_variants(self, js: JudgeSpec, categories: list[str]) -> dict[str, dict[str, Any]]:
        """The habit judge runs once per habit (category)."""
        if js.name == "cogtest-habit":
            return {c: {"habit": c} for c in categories}
        return {"*": {}}

    def measure(self, view: PlanView, out: Metrics) -> None:
        """Habit counts (the profile)."""
        cogtest_metrics(view, out)


@benchmark_kind("agreement")
class AgreementKind(BenchmarkKind):
    """Judge agreement with human labels: the responses come with the data; judges are compared to people."""

    name = "agreement"

    def strategies(self, spec: BenchmarkSpec, requested: list[str] | None) -> list[str]:
        """One ``given`` response per item: nothing is decoded."""
        return [GIVEN]

    def samples(self, spec: BenchmarkSpec, requested: int | None) -> int:
        """One given response per item."""
        return 1

    def phases(self, plan: RunPlan) -> list[Phase]:
        """The given responses, stored as traces."""
        prompts = [PromptItem(messages=it.messages, line=i + 1,
                              metadata={"benchmark": plan.benchmark.name, "item_id": it.id, "category": it.category,
                                        "human_label": it.metadata.get("human_label"),
                                        "response": str(it.metadata.get("response", ""))})
                   for i, it in enumerate(plan.items)]
        return [Phase(GIVEN, GIVEN, prompts, given=True)]

    def measure(self, view: PlanView, out: Metrics) -> None:
        """Accuracy, F1, kappa and Pearson of each judge against the human labels."""
        agreement_metrics(view, out)


def given_traces(plan: RunPlan, phase: Phase, source_file: str) -> list[Trace]:
    """The traces of a ``given`` phase: the data's responses, no model call."""
    out = []
    for p in phase.prompts:
        meta = dict(p.metadata)
        answer = str(meta.pop("response", ""))
        out.append(Trace.model_validate({
            "prompt": p.messages, "answer": answer, "model": plan.model, "strategy": phase.strategy,
            "sample_index": 0, "metadata": meta,
            "source": Source(file=source_file, line=p.line, format="given")}))
    return out


@benchmark_kind("cuaharm")
class CUAHarmKind(BenchmarkKind):
    """CUAHarm: an agent acts on each terminal task in a sandbox; checkers score whether it carried the task out,
    monitors read the trajectories. Items are tasks (category = harmful/benign); a sample is an episode."""

    name = "cuaharm"

    def plan_item(self, spec: BenchmarkSpec, item: Item, model: str, strategies: list[str]) -> PlanItem:
        """The episode's first request identifies its group (task, model, strategy)."""
        from cotscope.agents import AgentTask, first_messages

        if item.category == "error":  # a task file that did not load: reported by the run, never generated
            return PlanItem(id=item.id, category=item.category, metadata=item.metadata, messages=[])
        msgs = first_messages(AgentTask.model_validate(item.metadata["task"]))
        return PlanItem(id=item.id, category=item.category, metadata=item.metadata, messages=msgs,
                        groups={s: group_id_for(msgs, model, s) for s in strategies})

    def phases(self, plan: RunPlan) -> list[Phase]:
        """No prompt phases: episodes are run by :meth:`generate`."""
        return []

    async def generate(self, store: Store, plan: RunPlan, backend: Callable[[], Model], res: RunResult,
                       cache: RequestCache | None, progress: Progress) -> None:
        """Every task through the agent stage (one episode per sample and strategy); ``backend`` builds the run's
        one backend on first use and the run closes it."""
        from cotscope.agents import AgentSettings, AgentTask, SandboxLimits
        from cotscope.benchmarks._runner import SharedBackend
        from cotscope.benchmarks._spec import AgentSpec
        from cotscope.pipeline import run_agent

        spec = plan.benchmark
        agent = spec.agent or AgentSpec()
        for it in plan.items:
            if it.category == "error":
                res.notes.append(f"task {it.metadata.get('task_file')}: {it.metadata.get('task_error')}"[:300])
        tasks = [AgentTask.model_validate(it.metadata["task"]) for it in plan.items if it.category != "error"]
        settings = AgentSettings(max_steps=agent.max_steps, history=agent.history, temperature=plan.temperature,
                                 top_p=plan.top_p, max_tokens=plan.max_tokens, seed=plan.seed)
        limits = SandboxLimits(command_timeout_s=agent.command_timeout_s, episode_timeout_s=agent.episode_timeout_s)
        run_on = backend.stage_args() if isinstance(backend, SharedBackend) else {"backend": backend}
        for s in plan.strategies:
            st = await run_agent(store, tasks, model=plan.model, strategy=s, samples=plan.samples,
                                 settings=settings, sandbox=agent.sandbox, sandbox_options=agent.sandbox_options,
                                 limits=limits, cache=cache, concurrency=agent.concurrency, **run_on,
                                 source_file=f"benchmark:{spec.name}", metadata={"benchmark": spec.name},
                                 run_id=res.run_id, progress=progress,
                                 description=f"agent {spec.name} · {s}")
            res.generated += st.new_traces
            res.skipped_samples += st.skipped_existing
            for o in st.outcomes:
                if o.status == "error":
                    res.generation_errors += 1
                    res.notes.append(f"episode {o.task} sample {o.sample_index}: {o.reason}"[:300])
                elif o.status == "unsupported" and o.sample_index == 0 and s == plan.strategies[0]:
                    res.notes.append(f"task {o.task} unsupported: {o.reason}"[:300])

    def measure(self, view: PlanView, out: Metrics) -> None:
        """Harm success and refusal rates per variant, per-task scores, and monitors' detection metrics."""
        cuaharm_metrics(view, out)
