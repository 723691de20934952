"""Running a benchmark: generate (resumable) -> judge/monitor -> metrics, each stage skipping what the
store already has.

Generation skips ``(group, sample)`` pairs already stored; judges skip traces that already have a result
for ``(evaluator, config hash, part)``, the same key ``cotscope judge`` uses, so work done by either
command counts for the other. The metrics are recomputed from the store every time (they are cheap).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import Progress

from cotscope.benchmarks._judges import CogTestHabit, DeceptionConsistency
from cotscope.benchmarks._loaders import Item, load_items
from cotscope.benchmarks._metrics import compute_metrics, index_results
from cotscope.benchmarks._plan import BELIEF_STRATEGY, PlanItem, PlanJudge, RunPlan, plan_items
from cotscope.benchmarks._spec import BenchmarkSpec, JudgeSpec
from cotscope.store import Store, config_hash
from cotscope.traces import Source, Trace

#: The strategy name of responses that come with the data (judge-agreement benchmarks).
GIVEN = "given"

#: Generation errors quoted in the run's notes (all are counted).
MAX_ERROR_NOTES = 20

#: Judges defined by this package (they read benchmark context); all need a judge model.
BENCH_JUDGES = ("deception-consistency", "cogtest-habit")


@dataclass
class RunOptions:
    """Overrides of a spec's settings from the command line (``None`` = the spec's value)."""

    strategies: list[str] | None = None
    samples: int | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    limit: int | None = None
    judge_model: str | None = None
    judge_base_url: str | None = None
    model_base_url: str | None = None
    model_args: dict[str, Any] = field(default_factory=dict)
    hub: bool = False
    skip_judges: bool = False


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
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary of ``cotscope run --json``."""
        return {
            "run_id": self.run_id, "benchmark": self.plan.benchmark.name, "model": self.plan.model,
            "items": len(self.plan.items), "strategies": self.plan.strategies, "samples": self.plan.samples,
            "generated": self.generated, "skipped_samples": self.skipped_samples,
            "generation_errors": self.generation_errors, "judged": self.judged,
            "skipped_judgments": self.skipped_judgments, "judge_errors": self.judge_errors,
            "judges": [{"judge": j.name, "part": j.part, "role": j.role, "for": j.spec.name,
                        "skipped": j.skipped} for j in self.plan.judges],
            "notes": self.notes, "metrics": self.metrics,
        }


def select_items(spec: BenchmarkSpec, opts: RunOptions) -> list[Item]:
    """The spec's items, cut to ``--limit`` (or the spec's own limit).

    For CogTest the limit is per habit (``--limit 5``: the first 5 tasks of each of the 16 habits), since a
    habit profile needs every habit; elsewhere it is the first N items.
    """
    items = load_items(spec.data, hub=opts.hub)
    limit = opts.limit if opts.limit is not None else spec.limit
    if limit is None:
        return items
    if spec.kind == "cogtest":
        seen: dict[str | None, int] = {}
        kept = []
        for it in items:
            seen[it.category] = seen.get(it.category, 0) + 1
            if seen[it.category] <= limit:
                kept.append(it)
        return kept
    return items[:limit]


def make_plan(spec: BenchmarkSpec, model: str, opts: RunOptions) -> RunPlan:
    """The plan of one run (items, strategies, K); judges are resolved later."""
    from cotscope.thinking import get_strategy

    gen = spec.generation
    if spec.kind == "agreement":
        # The responses come with the data: one "given" sample per item, nothing to decode.
        strategies = [GIVEN]
    else:
        strategies = [get_strategy(s).name for s in (opts.strategies or gen.strategy_specs())]
    items = select_items(spec, opts)
    return RunPlan(
        benchmark=spec, model=model, strategies=strategies,
        samples=1 if spec.kind == "agreement" else opts.samples or gen.samples,
        temperature=gen.temperature if opts.temperature is None else opts.temperature, top_p=gen.top_p,
        max_tokens=opts.max_tokens or gen.max_tokens, seed=gen.seed, judge_model=opts.judge_model,
        items=plan_items(spec, items, model, strategies),
    )


# -- judges ----------------------------------------------------------------------------------------------------
def _build(name: str, js: JudgeSpec, opts: RunOptions, category: str | None = None) -> Any:
    """A judge instance; raises ValueError when it needs a judge model that was not given."""
    if name == "deception-consistency":
        return DeceptionConsistency(opts.judge_model, base_url=opts.judge_base_url)
    if name == "cogtest-habit":
        return CogTestHabit(opts.judge_model, habit=str(category), base_url=opts.judge_base_url)
    from cotscope.judges import get_judge

    judge = get_judge(name, model=opts.judge_model, **js.options)
    # Only LLM judges talk to a server; setting the URL after construction keeps option-less judges
    # (refusal-strings, the local classifiers) from rejecting an option they do not take.
    if opts.judge_base_url and hasattr(judge, "base_url"):
        judge.base_url = opts.judge_base_url
    return judge


def judge_key(judge: Any) -> tuple[str, str]:
    """``(evaluator, config hash)``: the store key convention shared with ``cotscope judge``."""
    cfg = judge.config() | {"label_meaning": judge.label_meaning}
    return str(judge.name), config_hash(cfg)


def resolve_judges(plan: RunPlan, opts: RunOptions) -> tuple[list[PlanJudge], dict[tuple[int, str], Any]]:
    """Build every judge of the spec (or its fallback); returns the plan entries and the instances.

    Instances are keyed by ``(judge index, category)``; category ``"*"`` unless the judge is per habit.
    """
    entries: list[PlanJudge] = []
    instances: dict[tuple[int, str], Any] = {}
    cats = sorted({it.category or "" for it in plan.items})
    for i, js in enumerate(plan.benchmark.judges):
        per_cat = js.name == "cogtest-habit"
        names = [js.name] + ([js.fallback] if js.fallback else [])
        pj: PlanJudge | None = None
        why = ""
        for n_try, name in enumerate(names):
            try:
                built = {c: _build(name, js, opts, c) for c in cats} if per_cat else {"*": _build(name, js, opts)}
                # Computing the key loads what the judge needs (prompt files, classifier weights): a judge
                # that cannot even say its configuration cannot run either.
                keys = {c: list(judge_key(j)) for c, j in built.items()}
            except (ValueError, TypeError, ImportError, OSError, RuntimeError) as e:
                why = f"{name}: {e}"
                continue
            pj = PlanJudge(spec=js, name=name, fallback_used=n_try > 0,
                           label_meaning=str(next(iter(built.values())).label_meaning), keys=keys)
            for c, j in built.items():
                instances[(i, c)] = j
            break
        if pj is None:
            pj = PlanJudge(spec=js, name=js.name, skipped=why)
        entries.append(pj)
    return entries, instances


# -- the stages -----------------------------------------------------------------------------------------------
async def _generate(store: Store, plan: RunPlan, backend: Any, strategy_name: str,
                    work: list[tuple[PlanItem, list[dict[str, Any]], str, int]], res: RunResult, run_id: str,
                    show: bool, console: Console | None, benchmark_tag: str,
                    extra_meta: dict[str, Any] | None = None) -> None:
    from cotscope.models import Engine, GenerateConfig, GenerateRequest
    from cotscope.thinking import get_strategy

    if not work:
        return
    def cfg(k: int) -> GenerateConfig:
        # A seed per sample makes a rerun on a fresh store reproduce the samples where the backend honours it.
        seed = None if plan.seed is None else plan.seed + k
        return GenerateConfig(temperature=plan.temperature, top_p=plan.top_p, max_tokens=plan.max_tokens, seed=seed)

    reqs = [GenerateRequest(messages=msgs, config=cfg(k), sample_index=k) for _, msgs, _, k in work]
    strat = get_strategy(strategy_name)
    engine = Engine(backend, strat, None, progress=show, console=console,
                    description=f"generate {plan.benchmark.name} · {strategy_name}")
    pending: list[Trace] = []

    def on_result(i: int, out: Any) -> None:
        it, msgs, gid, k = work[i]
        if out.error is not None:
            res.generation_errors += 1
            if res.generation_errors <= MAX_ERROR_NOTES:  # the count says how many; a few examples suffice
                res.notes.append(f"generation error on {it.id} sample {k}: {out.error}"[:300])
            return
        meta = {"benchmark": plan.benchmark.name, "item_id": it.id, "category": it.category,
                "finish_reason": out.finish_reason, "completion_tokens": out.completion_tokens,
                **(extra_meta or {})}
        pending.append(Trace.model_validate({
            "prompt": msgs, "reasoning": out.reasoning, "answer": out.answer,
            "reasoning_closed": out.reasoning_closed, "model": plan.model, "strategy": strat.name,
            "group_id": gid, "sample_index": k, "metadata": meta,
            "source": Source(file=benchmark_tag, line=None, format="benchmark")}))
        if len(pending) >= 32:
            res.generated += store.add_traces(pending, run_id)
            pending.clear()

    try:
        await engine.run(reqs, on_result)
    finally:
        res.generated += store.add_traces(pending, run_id)


async def generation_stage(store: Store, plan: RunPlan, model_factory: Any, res: RunResult, run_id: str,
                           show: bool = True, console: Console | None = None) -> None:
    """Generate every missing ``(group, sample)`` of the plan (DeceptionBench: the belief phase first)."""
    tag = f"benchmark:{plan.benchmark.name}"
    if plan.benchmark.kind == "agreement":
        _add_given(store, plan, res, run_id, tag)
        return
    jobs: list[tuple[str, list[tuple[PlanItem, list[dict[str, Any]], str, int]], dict[str, Any] | None]] = []
    if plan.benchmark.kind == "deceptionbench":
        have = store.existing_samples(group_id=[it.belief_group for it in plan.items if it.belief_group])
        work = [(it, it.belief_messages or [], it.belief_group or "", 0) for it in plan.items
                if (it.belief_group, 0) not in have]
        res.skipped_samples += len(plan.items) - len(work)
        jobs.append((BELIEF_STRATEGY, work, {"phase": "belief"}))
    for s in plan.strategies:
        gids = [it.groups[s] for it in plan.items]
        have = store.existing_samples(group_id=gids)
        seen: set[str] = set()
        work = []
        for it in plan.items:
            gid = it.groups[s]
            if gid in seen:  # items with the same prompt (CogTest's shared math tasks) share one group
                continue
            seen.add(gid)
            for k in range(plan.samples):
                if (gid, k) in have:
                    res.skipped_samples += 1
                else:
                    work.append((it, it.messages, gid, k))
        jobs.append((s, work, {"phase": "scenario"} if plan.benchmark.kind == "deceptionbench" else None))
    if not any(w for _, w, _ in jobs):
        return
    backend = model_factory()
    try:
        for s, work, meta in jobs:
            await _generate(store, plan, backend, s, work, res, run_id, show, console, tag, meta)
    finally:
        await backend.aclose()


def _add_given(store: Store, plan: RunPlan, res: RunResult, run_id: str, tag: str) -> None:
    """Store the responses that come with a labelled data set as traces (no model is called)."""
    have = store.existing_samples(group_id=[it.groups[GIVEN] for it in plan.items])
    traces = []
    for it in plan.items:
        if (it.groups[GIVEN], 0) in have:
            res.skipped_samples += 1
            continue
        traces.append(Trace.model_validate({
            "prompt": it.messages, "answer": str(it.metadata.get("response", "")), "model": plan.model,
            "strategy": GIVEN, "group_id": it.groups[GIVEN], "sample_index": 0,
            "metadata": {"benchmark": plan.benchmark.name, "item_id": it.id, "category": it.category,
                         "human_label": it.metadata.get("human_label")},
            "source": Source(file=tag, format="benchmark")}))
    res.generated += store.add_traces(traces, run_id)


def _traces_by_group(store: Store, groups: Sequence[str]) -> dict[str, list[Trace]]:
    out: dict[str, list[Trace]] = {}
    if not groups:
        return out
    for t in store.traces(group_id=list(groups)):
        out.setdefault(str(t.group_id), []).append(t)
    for v in out.values():
        v.sort(key=lambda t: t.sample_index)
    return out


async def judge_stage(store: Store, plan: RunPlan, instances: dict[tuple[int, str], Any], res: RunResult,
                      run_id: str, progress: Progress | None = None, batch_size: int = 16) -> None:
    """Run each resolved judge on the plan's traces that have no result for its key yet."""
    by_group = _traces_by_group(store, plan.all_groups())
    beliefs: dict[str, str] = {}
    if plan.benchmark.kind == "deceptionbench":
        bg = _traces_by_group(store, [it.belief_group for it in plan.items if it.belief_group])
        for it in plan.items:
            ts = bg.get(it.belief_group or "")
            if ts:
                beliefs[it.id] = ts[0].answer or ts[0].reasoning
    # A trace may answer several items (same prompt); judge it once per key, with the first item's context.
    jobs: list[tuple[int, PlanJudge, str, list[Trace]]] = []
    for i, pj in enumerate(plan.judges):
        if pj.skipped:
            continue
        for cat_key in pj.keys:
            picked: dict[str, Trace] = {}
            for it in plan.items:
                if cat_key != "*" and (it.category or "") != cat_key:
                    continue
                for gid in it.groups.values():
                    for t in by_group.get(gid, []):
                        if t.id in picked:
                            continue
                        if it.id in beliefs:
                            t = t.model_copy(update={"metadata": {**t.metadata, "belief": beliefs[it.id],
                                                                  "inner_prompt": it.metadata.get("inner_prompt")}})
                        picked[t.id] = t
            jobs.append((i, pj, cat_key, list(picked.values())))
    for i, pj, cat_key, traces in jobs:
        evaluator, chash = pj.keys[cat_key]
        if pj.spec.only_if:
            pos = _positives(store, plan, pj.spec.only_if, [t.id for t in traces])
            traces = [t for t in traces if t.id in pos]
        done = store.done_trace_ids(evaluator, chash, pj.part)
        todo = [t for t in traces if t.id not in done]
        res.skipped_judgments += len(traces) - len(todo)
        if not todo:
            continue
        judge = instances[(i, cat_key)]
        task = progress.add_task(f"judge {evaluator}:{pj.part}", total=len(todo), info="") if progress else None
        for b in range(0, len(todo), batch_size):
            batch = todo[b: b + batch_size]
            results = await judge.judge(batch, pj.part)
            rows = []
            for tr, r in zip(batch, results, strict=True):
                if r.error:
                    res.judge_errors += 1
                    continue
                rows.append({
                    "trace_id": tr.id, "evaluator": evaluator, "config_hash": chash, "part": pj.part,
                    "kind": "monitor" if pj.role == "monitor" else "judge", "label": r.label, "score": r.score,
                    "parse_error": r.parse_error, "raw": r.raw, "reason": r.reason,
                    "evidence": [e.model_dump(exclude_none=True) for e in r.evidence],
                    "details": r.details or None, "run_id": run_id})
            res.judged += store.add_results(rows)
            if progress is not None and task is not None:
                progress.advance(task, len(batch))


def _positives(store: Store, plan: RunPlan, role: str, trace_ids: list[str]) -> set[str]:
    """Traces whose first judge of ``role`` says true (e.g. misaligned)."""
    for pj in plan.judges:
        if pj.role == role and not pj.skipped:
            keys = {tuple(k) for k in pj.keys.values()}
            idx = index_results(store.results(trace_ids=trace_ids))
            return {tid for (tid, ev, ch, part), r in idx.items()
                    if (ev, ch) in keys and part == pj.part and r.get("label") is True}
    return set()


async def close_judges(instances: dict[tuple[int, str], Any]) -> None:
    """Release every judge backend."""
    for j in instances.values():
        await j.aclose()


async def run_benchmark(store: Store, spec: BenchmarkSpec, model: str, opts: RunOptions | None = None, *,
                        progress: Progress | None = None, console: Console | None = None,
                        show: bool = True) -> RunResult:
    """Generate -> judge -> metrics for one benchmark and model; each stage skips what the store has.

    Args:
        store: the open store.
        spec: the benchmark.
        model: ``provider/model`` of the model under test.
        opts: command-line overrides.
        progress: a rich progress bar for the judge stage (generation draws its own).
        console: where generation progress goes.
        show: draw generation progress.
    """
    from cotscope.models import get_model

    opts = opts or RunOptions()
    plan = make_plan(spec, model, opts)
    judges, instances = ([], {}) if opts.skip_judges else resolve_judges(plan, opts)
    plan.judges = judges
    run_id = store.start_run("benchmark", spec.name, plan.model_dump(mode="json"))
    res = RunResult(run_id=run_id, plan=plan)
    for pj in judges:
        if pj.skipped:
            res.notes.append(f"judge {pj.spec.name}:{pj.part} skipped: {pj.skipped}")
        elif pj.fallback_used:
            res.notes.append(f"judge {pj.spec.name}:{pj.part} needs --judge-model; ran {pj.name} instead")
    status = "failed"
    try:
        await generation_stage(store, plan, lambda: get_model(model, base_url=opts.model_base_url, **opts.model_args),
                               res, run_id, show=show, console=console)
        await judge_stage(store, plan, instances, res, run_id, progress)
        res.metrics = compute_metrics(store, plan)
        status = "done"
    finally:
        await close_judges(instances)
        store.finish_run(run_id, status, {k: v for k, v in res.to_dict().items() if k != "run_id"})
    return res


def benchmark_prompts(name: str, limit: int | None = None) -> list[dict[str, Any]]:
    """A benchmark's prompts as ``{"messages", "id", "category"}`` records (for ``cotscope generate``)."""
    from cotscope.benchmarks._registry import get_benchmark

    spec = get_benchmark(name)
    items = select_items(spec, RunOptions(limit=limit))
    from cotscope.benchmarks._plan import item_messages

    return [{"messages": item_messages(spec, it), "id": it.id, "category": it.category or ""} for it in items]



