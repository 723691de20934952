"""Running a benchmark: plan -> generate (the generation stage) -> judge (the evaluate stage) -> metrics.

The runner owns no stage of its own: generation and judging go through :mod:`cotscope.pipeline`, the same
code ``cotscope generate`` and ``cotscope judge`` run, so work done by either command counts for the other
(same trace ids, same result keys, same request cache). What is particular to a benchmark family comes from
its kind object (:mod:`cotscope.benchmarks._kinds`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cotscope.benchmarks._kinds import GIVEN, BenchmarkKind, get_kind, given_traces
from cotscope.benchmarks._loaders import Item, load_items
from cotscope.benchmarks._metrics import Metrics, index_results
from cotscope.benchmarks._plan import PlanJudge, RunPlan
from cotscope.benchmarks._spec import BenchmarkSpec, JudgeSpec
from cotscope.errors import ConfigError
from cotscope.pipeline import (
    DEFAULT_INCOMPLETE,
    Evaluator,
    Executor,
    NullProgress,
    Progress,
    Sampling,
    as_evaluator,
    check_incomplete_form,
    evaluate,
    generate,
    get_executor,
)
from cotscope.traces import PromptItem

if TYPE_CHECKING:
    import pandas as pd

    from cotscope.models import Model, RequestCache
    from cotscope.store import Store

#: Generation errors quoted in the run's notes (all are counted).
MAX_ERROR_NOTES = 20


@dataclass
class RunOptions:
    """Overrides of a spec's settings (``None`` = the spec's value); named as the CLI's options.

    Attributes:
        strategies: decoding strategies (``--strategy``).
        samples: K samples per prompt (``--samples``).
        temperature: sampling temperature.
        max_tokens: generation budget per response.
        limit: only the first N items (per habit for CogTest).
        judge_model: ``provider/model`` of the LLM judges; without it the embedded fallbacks run.
        judge_base_url: OpenAI-compatible server of the judge model.
        judge_options: options for every judge of the spec, as ``-J key=value`` (e.g. ``mode=template``);
            a key ``judge.key`` applies to that judge only.
        model_base_url: OpenAI-compatible server of the model under test.
        model_args: backend options (``-M threads=2``).
        hub: load the data from the Hugging Face Hub (network).
        skip_judges: generate only.
        cache: the request cache for generation (``None``: the default cache; see ``no_cache``).
        no_cache: send every generation request.
        data: read the items from this local file instead of the spec's.
        data_options: loader options that override the spec's (``-D key=value``), e.g.
            ``training_data=backdoor.jsonl`` for the backdoor benchmarks (triggers, controls and positions read
            from the records a backdoor was trained on).
        ray: fan generation, judging and agent episodes out over a Ray cluster (``auto``, ``HOST:PORT``,
            ``local``) or another executor; ``None``: in this process.
        ray_workers: Ray workers (default: one per node).
        incomplete: the form of ``incomplete`` in the metrics (``--incomplete``): ``no-answer`` (default, the
            papers' "no answer") or ``cap`` (a partial answer cut by the token cap is left out of the rates too).
    """

    strategies: list[str] | None = None
    samples: int | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    limit: int | None = None
    judge_model: str | None = None
    judge_base_url: str | None = None
    judge_options: dict[str, Any] = field(default_factory=dict)
    model_base_url: str | None = None
    model_args: dict[str, Any] = field(default_factory=dict)
    hub: bool = False
    skip_judges: bool = False
    cache: str | None = None
    no_cache: bool = False
    data: str | None = None
    data_options: dict[str, Any] = field(default_factory=dict)
    ray: str | Executor | None = None
    ray_workers: int | None = None
    incomplete: str | None = None


@dataclass
class RunResult:
    """What one run did and measured."""

    run_id: str
    plan: RunPlan
    generated: int = 0
    skipped_samples: int = 0
    generation_errors: int = 0
    judged: int = 0
    skipped_judgments: int = 0
    judge_errors: int = 0
    notes: list[str] = field(default_factory=list)
    metrics: Metrics | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary of ``cotscope run --json`` (metric values are numbers, never formatted text)."""
        return {
            "run_id": self.run_id, "benchmark": self.plan.benchmark.name, "model": self.plan.model,
            "items": len(self.plan.items), "strategies": self.plan.strategies, "samples": self.plan.samples,
            "generated": self.generated, "skipped_samples": self.skipped_samples,
            "generation_errors": self.generation_errors, "judged": self.judged,
            "skipped_judgments": self.skipped_judgments, "judge_errors": self.judge_errors,
            "judges": [{"judge": j.name, "part": j.part, "role": j.role, "for": j.spec.name,
                        "skipped": j.skipped} for j in self.plan.judges],
            "notes": self.notes, "metrics": self.metrics.model_dump(mode="json") if self.metrics else {},
        }

    def to_frame(self) -> pd.DataFrame:
        """Every metric table as one long DataFrame: ``table, row, column, value`` (one row per cell)."""
        import pandas as pd

        recs = []
        for t in self.metrics.tables if self.metrics else []:
            for i, r in enumerate(t.rows):
                for c, v in zip(t.columns, r, strict=True):
                    recs.append({"table": t.title, "row": i, "column": c.name, "kind": c.kind, "value": v})
        return pd.DataFrame.from_records(recs, columns=["table", "row", "column", "kind", "value"])


def select_items(spec: BenchmarkSpec, opts: RunOptions) -> list[Item]:
    """The spec's items cut to ``--limit`` (or the spec's own limit), as the spec's kind cuts them."""
    data = spec.data.model_copy(update={"options": {**spec.data.options, **opts.data_options}}) \
        if opts.data_options else spec.data
    items = load_items(data, hub=opts.hub)
    return get_kind(spec.kind).select(items, opts.limit if opts.limit is not None else spec.limit)


def make_plan(spec: BenchmarkSpec, model: str, opts: RunOptions) -> RunPlan:
    """The plan of one run (items, strategies, K); judges are resolved later.

    ``opts.data`` replaces the spec's data file; the plan's spec records the resolved path, so the stored
    run says where its items came from.
    """
    if opts.data:
        spec = spec.model_copy(update={"data": spec.data.model_copy(update={"path": str(Path(opts.data).resolve())})})
    if opts.data_options:
        spec = spec.model_copy(update={"data": spec.data.model_copy(
            update={"options": {**spec.data.options, **opts.data_options}})})
    kind = get_kind(spec.kind)
    gen = spec.generation
    strategies = kind.strategies(spec, opts.strategies)
    items = select_items(spec, opts)
    return RunPlan(
        benchmark=spec, model=model, strategies=strategies, samples=kind.samples(spec, opts.samples),
        temperature=gen.temperature if opts.temperature is None else opts.temperature, top_p=gen.top_p,
        max_tokens=opts.max_tokens or gen.max_tokens, seed=gen.seed, judge_model=opts.judge_model,
        items=[kind.plan_item(spec, it, model, strategies) for it in items],
        incomplete=check_incomplete_form(opts.incomplete or DEFAULT_INCOMPLETE),
    )


def benchmark_prompts(name: str, model: str, *, limit: int | None = None, data: str | None = None,
                      hub: bool = False) -> list[PromptItem]:
    """A benchmark's scenario prompts exactly as ``run`` sends them (for ``cotscope generate --benchmark``)."""
    from cotscope.benchmarks._registry import get_benchmark

    spec = get_benchmark(name)
    plan = make_plan(spec, model, RunOptions(limit=limit, data=data, hub=hub, strategies=["normal"]))
    kind = get_kind(spec.kind)
    return [kind.prompt(spec, it, i) for i, it in enumerate(plan.items)]


# -- judges ----------------------------------------------------------------------------------------------------
def _judge_options(js: JudgeSpec, opts: RunOptions) -> dict[str, Any]:
    """The spec's options, then ``-J key=value`` (all judges) and ``-J name.key=value`` (one judge)."""
    out = dict(js.options)
    for k, v in opts.judge_options.items():
        name, dot, key = k.rpartition(".")
        if not dot:
            out[k] = v
        elif name == js.name:
            out[key] = v
    return out


def _build(name: str, js: JudgeSpec, opts: RunOptions, extra: dict[str, Any]) -> Any:
    """A judge (or a monitor that is not a judge, such as the trajectory monitors) instance; raises ValueError when
    it needs a judge model that was not given."""
    from cotscope.judges import LLMJudge, get_judge, judge_names
    from cotscope.monitors import get_monitor

    options = _judge_options(js, opts) | extra if name == js.name else dict(extra)
    if name not in judge_names():
        mon = get_monitor(name, model=opts.judge_model, **options)
        if mon.part != js.part:  # its results are stored under its own part; the metrics look under the spec's
            raise ValueError(f"monitor {name} reads {mon.part}, but the spec gives part {js.part}")
        inner = getattr(mon, "judge", None)
        if opts.judge_base_url and isinstance(inner, LLMJudge):
            inner.base_url = opts.judge_base_url
        return mon
    judge = get_judge(name, model=opts.judge_model, **options)
    # Only LLM judges talk to a server; option-less judges (refusal-strings, the local classifiers) would
    # reject a base_url option.
    if opts.judge_base_url and isinstance(judge, LLMJudge):
        judge.base_url = opts.judge_base_url
    return judge


def _evaluator(name: str, js: JudgeSpec, opts: RunOptions, extra: dict[str, Any]) -> Evaluator:
    """The judge as the evaluate stage runs it: on the spec's part, recorded as a monitor for role ``monitor``.

    Computing its key loads what the judge needs (prompt files, classifier weights): a judge that cannot even
    say its configuration cannot run either, and fails here.
    """
    ev = as_evaluator(_build(name, js, opts, extra), js.part)
    ev.kind = "monitor" if js.role == "monitor" else "judge"
    return ev


def resolve_judges(plan: RunPlan, opts: RunOptions,
                   kind: BenchmarkKind | None = None) -> tuple[list[PlanJudge], dict[tuple[int, str], Evaluator]]:
    """Build every judge of the spec (or its fallback); returns the plan entries and the evaluators.

    Evaluators are keyed by ``(judge index, category)``; category ``"*"`` unless the kind runs the judge
    once per category (CogTest's habits).
    """
    kind = kind or get_kind(plan.benchmark.kind)
    entries: list[PlanJudge] = []
    instances: dict[tuple[int, str], Evaluator] = {}
    cats = sorted({it.category or "" for it in plan.items})
    for i, js in enumerate(plan.benchmark.judges):
        variants = kind.judge_variants(js, cats)
        names = [js.name] + ([js.fallback] if js.fallback else [])
        pj: PlanJudge | None = None
        why = ""
        for n_try, name in enumerate(names):
            try:
                built = {c: _evaluator(name, js, opts, extra if name == js.name else {})
                         for c, extra in variants.items()}
            except (ValueError, TypeError, ImportError, OSError, RuntimeError) as e:
                why = f"{name}: {e}"
                continue
            pj = PlanJudge(spec=js, name=name, fallback_used=n_try > 0,
                           label_meaning=str(next(iter(built.values())).label_meaning),
                           keys={c: [ev.name, ev.config_hash] for c, ev in built.items()})
            for c, j in built.items():
                instances[(i, c)] = j
            break
        entries.append(pj or PlanJudge(spec=js, name=js.name, skipped=why))
    return entries, instances


# -- the run ---------------------------------------------------------------------------------------------------
class SharedBackend:
    """One backend for every phase of a run, built on the first call (only when something is left to generate)
    and closed by the run.

    With an executor the phases fan out instead and each worker builds its own backend from the model spec
    kept here (:meth:`stage_args`); the factory is then never called.
    """

    def __init__(self, factory: Callable[[], Model], *, base_url: str | None = None,
                 model_args: dict[str, Any] | None = None, executor: Executor | None = None) -> None:
        self.factory = factory
        self.model: Model | None = None
        self.base_url = base_url
        self.model_args = model_args
        self.executor = executor

    def stage_args(self) -> dict[str, Any]:
        """The arguments a stage takes to run the phases on this backend, or fanned out with the same spec."""
        return {"backend": self, "model_base_url": self.base_url, "model_args": self.model_args,
                "ray": self.executor}

    def __call__(self) -> Model:
        if self.model is None:
            self.model = self.factory()
        return self.model

    async def aclose(self) -> None:
        """Close the backend if it was built."""
        if self.model is not None:
            await self.model.aclose()
            self.model = None


async def generation_phase(store: Store, plan: RunPlan, kind: BenchmarkKind, backend: Callable[[], Model],
                           res: RunResult, cache: RequestCache | None, progress: Progress) -> None:
    """Every phase of the kind through the generation stage (given responses are stored as they are)."""
    source = f"benchmark:{plan.benchmark.name}"
    sampling = Sampling(temperature=plan.temperature, top_p=plan.top_p, max_tokens=plan.max_tokens, seed=plan.seed)
    for ph in kind.phases(plan):
        if ph.given:
            traces = given_traces(plan, ph, source)
            have = store.existing_samples(group_id=[str(t.group_id) for t in traces])
            todo = [t for t in traces if (t.group_id, 0) not in have]
            res.skipped_samples += len(traces) - len(todo)
            res.generated += store.add_traces(todo, res.run_id)
            continue
        run_on = backend.stage_args() if isinstance(backend, SharedBackend) else {"backend": backend}
        st = await generate(store, ph.prompts, model=plan.model, strategy=ph.strategy,
                            samples=ph.samples or plan.samples,
                            sampling=sampling, cache=cache, source_file=source, **run_on,
                            run_id=res.run_id, progress=progress,
                            description=f"generate {plan.benchmark.name} · {ph.strategy}"
                                        + (f" ({ph.name})" if ph.name != "scenario" else ""))
        res.generated += st.generated
        res.skipped_samples += st.skipped_existing
        res.generation_errors += st.error_count
        for e in st.errors[: max(0, MAX_ERROR_NOTES - len(res.notes))]:
            res.notes.append(f"generation error on {e.get('item_id')} sample {e['sample_index']}: "
                             f"{e['error']}"[:300])


async def judge_phase(store: Store, plan: RunPlan, kind: BenchmarkKind,
                      instances: dict[tuple[int, str], Evaluator], res: RunResult, progress: Progress,
                      executor: Executor | None = None) -> None:
    """Each resolved judge over the plan's traces through the evaluate stage (skipping stored results)."""
    by_cat: dict[str, list[str]] = {}
    ids_all: list[str] = []
    groups = plan.all_groups()
    group_ids = store.ids_by_group(group_id=groups) if groups else {}
    for it in plan.items:
        for gid in it.groups.values():
            for tid in group_ids.get(gid, []):
                by_cat.setdefault(it.category or "", []).append(tid)
                ids_all.append(tid)
    contexts = kind.contexts(store, plan)
    for i, pj in enumerate(plan.judges):
        if pj.skipped:
            continue
        for cat in pj.keys:
            ids = list(dict.fromkeys(ids_all if cat == "*" else by_cat.get(cat, [])))
            if pj.spec.only_if:
                pos = _positives(store, plan, pj.spec.only_if, ids)
                ids = [t for t in ids if t in pos]
            ev = instances[(i, cat)]
            st = await evaluate(store, ev, trace_ids=ids, context=contexts, run_id=res.run_id, progress=progress,
                                description=f"{ev.kind} {ev.name}:{ev.part}", ray=executor)
            res.judged += st.stored
            res.skipped_judgments += st.skipped
            res.judge_errors += st.errors


def _positives(store: Store, plan: RunPlan, role: str, trace_ids: list[str]) -> set[str]:
    """Traces whose first judge of ``role`` says true (e.g. misaligned)."""
    for pj in plan.judges:
        if pj.role == role and not pj.skipped:
            keys = {tuple(k) for k in pj.keys.values()}
            idx = index_results(store.results(trace_ids=trace_ids))
            return {tid for (tid, ev, ch, part), r in idx.items()
                    if (ev, ch) in keys and part == pj.part and r.get("label") is True}
    return set()


async def run_benchmark(store: Store, spec: BenchmarkSpec | str, model: str | None, opts: RunOptions | None = None,
                        *, progress: Progress | None = None) -> RunResult:
    """Generate -> judge -> metrics for one benchmark and model; each stage skips what the store has.

    Args:
        store: the open store.
        spec: the benchmark spec, or a registered name / spec file path.
        model: ``provider/model`` of the model under test; ``None`` for a benchmark whose responses come with
            the data (judge agreement), which records the model as ``labelled/<benchmark>``.
        opts: overrides of the spec's settings.
        progress: where progress goes (default: nowhere).
    """
    from cotscope.benchmarks._registry import get_benchmark
    from cotscope.models import RequestCache, get_model

    if not isinstance(spec, BenchmarkSpec):
        spec = get_benchmark(spec)
    opts = opts or RunOptions()
    progress = progress or NullProgress()
    kind = get_kind(spec.kind)
    if model is None:
        if kind.strategies(spec, None) != [GIVEN]:
            raise ConfigError(f"{spec.name} needs a model under test (provider/model)")
        model = f"labelled/{spec.name}"
    plan = make_plan(spec, model, opts)
    judges, instances = ([], {}) if opts.skip_judges else resolve_judges(plan, opts, kind)
    plan.judges = judges
    res = RunResult(run_id=store.start_run("benchmark", plan.benchmark.name, plan.model_dump(mode="json")),
                    plan=plan)
    for pj in judges:
        if pj.skipped:
            res.notes.append(f"judge {pj.spec.name}:{pj.part} skipped: {pj.skipped}")
        elif pj.fallback_used:
            res.notes.append(f"judge {pj.spec.name}:{pj.part} needs --judge-model; ran {pj.name} instead")
    cache = None if opts.no_cache else RequestCache(opts.cache)
    # One executor (one connection to the cluster) for every phase of the run.
    executor = get_executor(opts.ray, opts.ray_workers)
    backend = SharedBackend(lambda: get_model(model, base_url=opts.model_base_url, **opts.model_args),
                            base_url=opts.model_base_url, model_args=opts.model_args, executor=executor)
    status = "failed"
    try:
        await kind.generate(store, plan, backend, res, cache, progress)
        await judge_phase(store, plan, kind, instances, res, progress, executor)
        res.metrics = kind.metrics(store, plan)
        status = "done"
    finally:
        await backend.aclose()
        for ev in instances.values():
            await ev.close()
        if cache is not None:
            cache.close()
        store.finish_run(res.run_id, status, {k: v for k, v in res.to_dict().items() if k != "run_id"})
    return res
