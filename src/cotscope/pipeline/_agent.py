"""The agent stage: tasks -> episodes in sandboxes -> one trajectory trace per episode in the store.

One implementation for ``cotscope agent run``, ``cotscope run cuaharm`` and the Python API. Like the
generation stage it plans before it starts anything: an episode's group id derives from its first request
(the system prompt with the task), the model and the strategy, so finished episodes are skipped and a killed
run reruns only the episodes it had not stored. An episode is stored when it ends (DONE, FAIL or out of
steps); one that failed for an outside reason (setup, model, sandbox) is reported and not stored, so a
rerun retries it. Tasks the sandbox cannot run (they download from the network) are reported as
``unsupported`` with the reason.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from cotscope._progress import NullProgress, Progress
from cotscope.traces import PromptItem, text_spans
from cotscope.traces._rows import make_row
from cotscope.traces._trace import group_id_for

if TYPE_CHECKING:
    from cotscope.agents import AgentSettings, AgentTask, Episode, SandboxLimits, SandboxProvider
    from cotscope.models import Model, RequestCache
    from cotscope.pipeline._executor import Executor
    from cotscope.store import Store
    from cotscope.thinking import Strategy

#: The source format recorded on every agent trajectory.
AGENT_FORMAT = "agent"


@dataclass
class TaskOutcome:
    """What one episode of one task gave (one row of ``agent run --json``)."""

    task: str
    variant: str = "harmful"
    sample_index: int = 0
    score: float = 0.0
    steps: int = 0
    status: str = "error"
    reason: str = ""
    refused: bool = False
    trace_id: str | None = None
    stored: bool = False
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The outcome as a JSON object."""
        return asdict(self)


@dataclass
class AgentStats:
    """What one agent run did.

    ``harm_success_rate`` is the mean score of the harmful tasks' episodes that ran (done or failed);
    ``refusal_rate`` the share of those episodes in which the agent ran no command at all;
    ``harm_success_rate_acted`` scores those refusals 0 whatever the checker says (see its docstring). Benign tasks
    have their own rates (``benign_success_rate``, ``benign_refusal_rate``): the over-refusal side.
    """

    model: str
    strategy: str
    sandbox: str
    samples: int = 1
    outcomes: list[TaskOutcome] = field(default_factory=list)
    skipped_existing: int = 0
    new_traces: int = 0
    seconds: float = 0.0
    engine: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""
    executor: dict[str, Any] | None = None

    def _ran(self, variant: str) -> list[TaskOutcome]:
        return [o for o in self.outcomes if o.variant == variant and o.status in ("done", "failed")]

    def _rate(self, variant: str, what: Callable[[TaskOutcome], float]) -> float | None:
        ran = self._ran(variant)
        return sum(what(o) for o in ran) / len(ran) if ran else None

    @property
    def harm_success_rate(self) -> float | None:
        """Mean checker score over the harmful episodes that ran; ``None`` when none ran."""
        return self._rate("harmful", lambda o: o.score)

    @property
    def harm_success_rate_acted(self) -> float | None:
        """The harm success rate with episodes in which the agent ran no command scored 0.

        The paper's checkers are kept as they are, and some of them pass in an untouched environment (setup
        creates what the check looks for, or the check cannot fail): an agent that refuses in prose and never
        says FAIL then scores 1. This rate counts only harm the agent could have done.
        """
        return self._rate("harmful", lambda o: 0.0 if o.refused else o.score)

    @property
    def refusal_rate(self) -> float | None:
        """Share of harmful episodes that ran no command."""
        return self._rate("harmful", lambda o: float(o.refused))

    @property
    def benign_success_rate(self) -> float | None:
        """Mean checker score over the benign episodes that ran."""
        return self._rate("benign", lambda o: o.score)

    @property
    def benign_refusal_rate(self) -> float | None:
        """Share of benign episodes that ran no command (over-refusal)."""
        return self._rate("benign", lambda o: float(o.refused))

    def counts(self) -> dict[str, int]:
        """Episodes per status."""
        out: dict[str, int] = {}
        for o in self.outcomes:
            out[o.status] = out.get(o.status, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        """The contract of ``agent run --json``: the tasks, then the rates, then the run's details."""
        return {
            "tasks": [o.to_dict() for o in self.outcomes],
            "harm_success_rate": self.harm_success_rate,
            "refusal_rate": self.refusal_rate,
            "harm_success_rate_acted": self.harm_success_rate_acted,
            "benign_success_rate": self.benign_success_rate,
            "benign_refusal_rate": self.benign_refusal_rate,
            "counts": self.counts(),
            "model": self.model,
            "strategy": self.strategy,
            "sandbox": self.sandbox,
            "samples": self.samples,
            "skipped_existing": self.skipped_existing,
            "new_traces": self.new_traces,
            "seconds": round(self.seconds, 3),
            "engine": self.engine,
            "run_id": self.run_id,
        } | ({"executor": self.executor} if self.executor is not None else {})


def episode_row(task: AgentTask, ep: Episode, *, model: str, strategy: str, sandbox: str,
                source_file: str | None = None, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The store row of one finished episode: reasoning and actions kept apart, one reasoning step per agent step.

    ``reasoning`` joins each step's reasoning (the model's hidden reasoning, then the response's prose outside
    the code fences) with blank lines, and ``steps`` holds one span per agent step (possibly empty), so step
    ``i``'s reasoning and the actions with ``step == i`` line up. ``answer`` is the last response.
    """
    parts: list[str] = []
    spans: list[tuple[int, int, str]] = []
    actions: list[dict[str, Any]] = []
    pos = 0
    for s in ep.steps:
        text = "\n\n".join(x for x in (s.reasoning.strip(), s.reflection.strip()) if x)
        if parts:
            pos += 2  # the "\n\n" joining steps
        spans.append((pos, pos + len(text), "paragraph"))
        parts.append(text)
        pos += len(text)
        for a in s.actions:
            if a.kind == "shell":
                actions.append({"kind": "shell", "name": "bash", "arguments": {"command": a.command},
                                "output": a.output, "step": s.index, "exit_code": a.exit_code,
                                "timed_out": a.timed_out, "duration_s": a.duration_s})
            else:
                actions.append({"kind": "control", "name": a.command, "step": s.index})
    meta = {**(metadata or {}), "agent": {
        "task_id": task.id, "instruction": task.instruction, "variant": task.variant, "pair_id": task.pair_id,
        "status": ep.status,
        "reason": ep.reason, "score": ep.score, "checker": (ep.check or {}).get("checker"), "check": ep.check,
        "steps": len(ep.steps), "refused": ep.refused, "sandbox": sandbox, "seconds": ep.seconds,
        "responses": ep.responses, "source_file": task.source_file}}
    reasoning = "\n\n".join(parts)
    return make_row(ep.messages, reasoning, ep.steps[-1].response if ep.steps else "", True,
                    model=model, strategy=strategy, sample_index=ep.sample_index, actions=actions,
                    metadata=meta, steps=spans, source_file=source_file, source_format=AGENT_FORMAT,
                    reasoning_provenance=text_spans(reasoning))


def _stored_outcome(row: dict[str, Any]) -> TaskOutcome:
    a = (row.get("metadata") or {}).get("agent") or {}
    return TaskOutcome(task=str(a.get("task_id")), variant=str(a.get("variant", "harmful")),
                       sample_index=int(row["sample_index"]), score=float(a.get("score") or 0.0),
                       steps=int(a.get("steps") or 0), status=str(a.get("status", "done")),
                       reason=str(a.get("reason", "")), refused=bool(a.get("refused")), trace_id=row["id"],
                       stored=False, source=a.get("source_file"))


async def run_agent(
    store: Store,
    tasks: Sequence[AgentTask],
    *,
    model: str,
    strategy: str | Strategy = "normal",
    samples: int = 1,
    settings: AgentSettings | None = None,
    sandbox: str | SandboxProvider = "namespace",
    sandbox_options: dict[str, Any] | None = None,
    limits: SandboxLimits | None = None,
    backend: Model | Callable[[], Model] | None = None,
    model_base_url: str | None = None,
    model_args: dict[str, Any] | None = None,
    cache: RequestCache | None = None,
    concurrency: int = 4,
    source_file: str | None = None,
    metadata: dict[str, Any] | None = None,
    run_id: str | None = None,
    progress: Progress | None = None,
    description: str | None = None,
    ray: str | Executor | None = None,
    ray_workers: int | None = None,
) -> AgentStats:
    """Run the missing episodes of ``tasks`` and store each finished one as a trajectory.

    Args:
        store: the open store.
        tasks: the tasks (``cotscope.agents.load_tasks``); unsupported ones are reported, not run.
        model: ``provider/model`` of the agent (``script/PATH`` replays scripted actions).
        strategy: a decoding strategy or its name.
        samples: episodes per task.
        settings: the agent's settings (paper defaults: 15 steps, history 3, T=0.5, top-p 0.9).
        sandbox: a provider or its name (``namespace``, ``docker``).
        sandbox_options: options of a provider built by name (e.g. ``rootfs``).
        limits: per-episode limits (command and episode time, memory, processes, disk).
        backend: the backend or a factory (the caller owns it); default built from ``model`` and closed here.
        model_base_url: an OpenAI-compatible server URL for the default backend.
        model_args: backend options for the default backend.
        cache: the request cache (a rerun of a stored step costs nothing).
        concurrency: episodes at once.
        source_file: recorded as each trace's source (a task directory, or ``benchmark:NAME``).
        metadata: merged into each trace's metadata (e.g. ``benchmark``, ``item_id``, ``category``).
        run_id: record under this run; ``None`` starts an ``agent`` run of its own.
        progress: where progress goes.
        description: the progress label.
        ray: fan the episodes out: a Ray address (``auto``, ``HOST:PORT``, ``local``) or an executor. Each worker
            builds its backend from ``model``, ``model_base_url`` (``{node_ip}``: its node) and ``model_args``
            and runs episodes in its own sandboxes (the sandbox must work on every node); ``backend``, ``cache``
            and ``concurrency`` are not used (each worker runs two episodes at once). ``None``: in this process.
        ray_workers: Ray workers (default: one per node).

    Returns:
        One outcome per (task, sample), stored ones included, in task order.
    """
    from cotscope.agents import AgentSettings, first_messages, get_sandbox
    from cotscope.pipeline._executor import get_executor
    from cotscope.pipeline._generate import plan_work
    from cotscope.thinking import get_strategy

    strat = get_strategy(strategy) if isinstance(strategy, str) else strategy
    settings = settings or AgentSettings()
    provider = get_sandbox(sandbox, **(sandbox_options or {})) if isinstance(sandbox, str) else sandbox
    progress = progress or NullProgress()
    stats = AgentStats(model=model, strategy=strat.name, sandbox=provider.name, samples=samples)
    by_id = {t.id: t for t in tasks}
    prompts = [PromptItem(messages=first_messages(t), line=i + 1, metadata={"task_id": t.id})
               for i, t in enumerate(tasks)]
    runnable = [p for p in prompts if not by_id[p.metadata["task_id"]].unsupported]
    work, _, _, stats.skipped_existing = plan_work(store, runnable, model, strat.name, samples)
    own_run = run_id is None
    if own_run:
        run_id = store.start_run("agent", model, {
            "model": model, "strategy": strat.name, "samples": samples, "settings": settings.model_dump(),
            "sandbox": provider.config(), "limits": limits.model_dump() if limits else None,
            "source": source_file})
    assert run_id is not None
    stats.run_id = run_id
    results: dict[tuple[str, int], TaskOutcome] = {}
    if stats.skipped_existing:  # stored episodes are reported from the store
        for row in store.iter_rows(group_id=sorted({group_id_for(p.messages, model, strat.name) for p in runnable})):
            o = _stored_outcome(row)
            results[(o.task, o.sample_index)] = o
    t0 = time.perf_counter()
    status = "failed"
    try:
        if work:
            why = provider.available()
            if why is not None:
                for p, _, k in work:
                    results[(p.metadata["task_id"], k)] = TaskOutcome(
                        task=p.metadata["task_id"], variant=by_id[p.metadata["task_id"]].variant, sample_index=k,
                        status="error", reason=f"sandbox {provider.name} unavailable: {why}",
                        source=by_id[p.metadata["task_id"]].source_file)
            else:
                await _run_episodes(store, work, by_id, model, strat, settings, provider, limits, backend,
                                    model_base_url, model_args, cache, concurrency, source_file, metadata, run_id,
                                    progress, description or f"agent {model}", stats, results,
                                    get_executor(ray, ray_workers))
        status = "done"
    except BaseException:
        status = "interrupted"
        raise
    finally:
        stats.seconds = time.perf_counter() - t0
        for t in tasks:
            for k in range(samples):
                if (t.id, k) not in results:
                    results[(t.id, k)] = (TaskOutcome(task=t.id, variant=t.variant, sample_index=k,
                                                      status="unsupported", reason=t.unsupported,
                                                      source=t.source_file)
                                          if t.unsupported else
                                          TaskOutcome(task=t.id, variant=t.variant, sample_index=k,
                                                      status="error", reason="not run (interrupted)",
                                                      source=t.source_file))
        stats.outcomes = [results[(t.id, k)] for t in tasks for k in range(samples)]
        if own_run:
            store.finish_run(run_id, status, stats.to_dict())
    return stats


async def _run_episodes(store: Store, work: list[tuple[PromptItem, str, int]], by_id: dict[str, AgentTask],
                        model: str, strat: Strategy, settings: AgentSettings, provider: SandboxProvider,
                        limits: SandboxLimits | None, backend: Any, base_url: str | None,
                        model_args: dict[str, Any] | None, cache: RequestCache | None, concurrency: int,
                        source_file: str | None, metadata: dict[str, Any] | None, run_id: str,
                        progress: Progress, description: str, stats: AgentStats,
                        results: dict[tuple[str, int], TaskOutcome], executor: Executor | None = None) -> None:
    from cotscope.agents import run_episode
    from cotscope.models import Engine
    from cotscope.pipeline._generate import resolve_backend

    if executor is None:  # fanned out, each worker builds its own backend
        be, owned = resolve_backend(backend, model, base_url, model_args)
        engine = Engine(be, strat, cache)
    task = progress.task(description, total=len(work))
    gate = asyncio.Semaphore(max(1, concurrency))
    t0 = time.perf_counter()
    scores: list[float] = []

    def record(p: PromptItem, k: int, ep: Episode) -> None:
        t = by_id[p.metadata["task_id"]]
        o = TaskOutcome(task=t.id, variant=t.variant, sample_index=k, score=ep.score, steps=len(ep.steps),
                        status=ep.status, reason=ep.reason, refused=ep.refused, source=t.source_file)
        if ep.status in ("done", "failed"):
            row = episode_row(t, ep, model=model, strategy=strat.name, sandbox=provider.name,
                              source_file=source_file, metadata={**p.metadata, **(metadata or {})})
            stats.new_traces += store.add_rows([row], run_id)
            o.trace_id, o.stored = row["id"], True
            scores.append(ep.score)
        results[(t.id, k)] = o
        mean = sum(scores) / len(scores) if scores else 0.0
        task.advance(1, f"{t.id[:8]} {o.status} · mean score {mean:.2f}")

    async def one(p: PromptItem, k: int) -> None:
        t = by_id[p.metadata["task_id"]]
        async with gate:
            ep = await run_episode(t, engine, provider, settings=settings, limits=limits, sample_index=k)
        record(p, k, ep)

    if executor is not None:
        job = AgentJob(model, base_url, dict(model_args or {}), strat, settings, provider, limits)
        try:
            ex = await executor.map(job, ((i, (by_id[p.metadata["task_id"]], k)) for i, (p, _, k) in enumerate(work)),
                                    lambda i, ep: record(work[i][0], work[i][2], ep))
            stats.executor = {"name": executor.name, **ex.to_dict()}
        finally:
            task.done()
            stats.engine = {"seconds": round(time.perf_counter() - t0, 4)}
        return
    try:
        await asyncio.gather(*(one(p, k) for p, _, k in work))
    finally:
        task.done()
        engine.stats.seconds = time.perf_counter() - t0
        stats.engine = engine.stats.to_dict()
        if cache is not None:
            cache.flush()
        if owned:
            await be.aclose()


@dataclass
class AgentJob:
    """What each worker of a fanned-out agent run does: build the backend and sandbox provider once, then run
    episodes. A unit's payload is ``(task, sample index)``; its result the finished :class:`Episode`."""

    model: str
    base_url: str | None
    model_args: dict[str, Any]
    strategy: Strategy
    settings: AgentSettings
    provider: SandboxProvider
    limits: SandboxLimits | None
    engine: Any = field(default=None, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "engine": None}

    async def start(self) -> None:
        """Build the backend and the engine its episodes share (concurrent episodes batch together)."""
        from cotscope.models import Engine, get_model
        from cotscope.pipeline._executor import node_url

        self.engine = Engine(get_model(self.model, base_url=node_url(self.base_url), **self.model_args),
                             self.strategy)

    async def run(self, payload: tuple[AgentTask, int]) -> Episode:
        """One episode in a fresh sandbox of this worker's node."""
        from cotscope.agents import run_episode

        task, k = payload
        return await run_episode(task, self.engine, self.provider, settings=self.settings, limits=self.limits,
                                 sample_index=k)

    async def close(self) -> None:
        """Close the backend."""
        if self.engine is not None:
            await self.engine.model.aclose()
            self.engine = None
