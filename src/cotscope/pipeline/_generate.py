"""The generation stage: prompts -> K samples per prompt under one strategy -> traces in the store.

One implementation for ``cotscope generate``, ``cotscope run`` and the Python API. The plan is worked out
before any backend starts (group ids derive from prompt, model and strategy), so a finished set costs
nothing to rerun and a killed run resumes with the missing ``(group, sample)`` pairs only. Requests go
through the engine (concurrency, request cache, fault handling) and traces are written in small batches.
With ``ray=`` the missing groups go in batches to workers that each run their own engine and backend
(:class:`GenerateJob`); their outputs come back here and are written by the same code.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from cotscope._progress import NullProgress, Progress, ProgressTask
from cotscope.traces import PromptItem
from cotscope.traces._rows import make_row
from cotscope.traces._trace import group_id_for

if TYPE_CHECKING:
    from cotscope.models import EngineStats, GenerateConfig, GenerateRequest, Model, ModelOutput, RequestCache
    from cotscope.pipeline._executor import Executor
    from cotscope.store import Store
    from cotscope.thinking import Strategy

#: Errors kept with the stats (all are counted); a few examples are enough to diagnose a failure.
MAX_ERROR_EXAMPLES = 50

#: The source format recorded on every generated trace, whichever entry point generated it.
GENERATED = "generate"


@dataclass
class Sampling:
    """Sampling settings shared by every request of one generation.

    Attributes:
        temperature: sampling temperature.
        top_p: nucleus sampling.
        max_tokens: generation budget per response.
        seed: base seed; sample ``k`` is requested with ``seed + k`` so a rerun on a fresh store reproduces
            the samples where the backend honours seeds (``None``: unseeded).
    """

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 1024
    seed: int | None = None

    def config(self, k: int) -> GenerateConfig:
        """The request settings of sample ``k``."""
        from cotscope.models import GenerateConfig

        return GenerateConfig(temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens,
                              seed=None if self.seed is None else self.seed + k)


@dataclass
class GenerateStats:
    """What one generation did. ``prompts * samples == skipped_existing + new_traces + len(errors)`` up to
    duplicates: identical responses share an id, so ``new_traces`` can be lower than what was generated."""

    model: str
    strategy: str
    prompts: int = 0
    samples: int = 1
    duplicate_prompts: int = 0
    requested: int = 0
    skipped_existing: int = 0
    generated: int = 0
    new_traces: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    error_count: int = 0
    seconds: float = 0.0
    engine: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""
    executor: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The stats as a JSON object (``errors`` is the count, ``error_list`` the examples; ``executor`` only
        when the work was fanned out)."""
        d = asdict(self)
        if d["executor"] is None:  # the in-process path's JSON stays as it was
            del d["executor"]
        d["error_list"] = d.pop("errors")
        d["errors"] = d.pop("error_count")
        d["seconds"] = round(self.seconds, 3)
        return d


def plan_work(store: Store, prompts: Sequence[PromptItem], model: str, strategy: str,
              samples: int) -> tuple[list[tuple[PromptItem, str, int]], int, int, int]:
    """The ``(prompt, group id, sample index)`` pairs still missing from the store.

    Prompts with identical messages share one group (their K samples are generated once).

    Returns:
        ``(work, groups, duplicates, skipped)``.
    """
    gids = [group_id_for(p.messages, model, strategy) for p in prompts]
    have = store.existing_samples(group_id=sorted(set(gids))) if gids else set()
    seen: set[str] = set()
    work: list[tuple[PromptItem, str, int]] = []
    duplicates = 0
    for p, gid in zip(prompts, gids, strict=True):
        if gid in seen:
            duplicates += 1
            continue
        seen.add(gid)
        work.extend((p, gid, k) for k in range(samples) if (gid, k) not in have)
    return work, len(seen), duplicates, len(seen) * samples - len(work)


async def generate(
    store: Store,
    prompts: Sequence[PromptItem],
    *,
    model: str,
    strategy: str | Strategy = "normal",
    samples: int = 1,
    sampling: Sampling | None = None,
    backend: Model | Callable[[], Model] | None = None,
    model_base_url: str | None = None,
    model_args: dict[str, Any] | None = None,
    cache: RequestCache | None = None,
    source_file: str | None = None,
    run_id: str | None = None,
    run_config: dict[str, Any] | None = None,
    progress: Progress | None = None,
    description: str | None = None,
    flush_every: int = 64,
    ray: str | Executor | None = None,
    ray_workers: int | None = None,
) -> GenerateStats:
    """Generate the missing samples of ``prompts`` into ``store``.

    Args:
        store: the open store.
        prompts: what to answer; each prompt's ``metadata`` goes onto its traces.
        model: ``provider/model`` of the model under test (recorded on every trace).
        strategy: a decoding strategy or its name (``normal``, ``zerothink``, ``think-budget:64``, ...).
        samples: K samples per prompt.
        sampling: temperature, top-p, budget and seed.
        backend: the backend, or a factory called only when something is left to generate (the caller owns
            what either gives and closes it); default ``get_model(model, base_url=model_base_url,
            **model_args)``, built and closed here.
        model_base_url: an OpenAI-compatible server URL for the default backend.
        model_args: backend options for the default backend.
        cache: the request cache (``None``: send every request).
        source_file: recorded as each trace's source (a prompt file path, or ``benchmark:NAME``).
        run_id: record the traces under this run (a benchmark run); ``None`` starts and finishes a
            ``generate`` run of its own.
        run_config: extra configuration recorded with a run of its own.
        progress: where progress goes (default: nowhere).
        description: the progress label.
        flush_every: traces per store write (a killed run loses at most this many, or a second of work).
        ray: fan the work out: a Ray address (``auto``, ``HOST:PORT``, ``local``) or an executor. Groups (all K
            samples of a prompt) go to the workers in batches; each worker builds its own backend from ``model``,
            ``model_base_url`` (``{node_ip}``: the worker's node) and ``model_args`` (``backend`` and ``cache``
            are not used: a backend object cannot travel, and workers on other nodes share no cache file; the
            store's resume covers a rerun). ``None``: in this process.
        ray_workers: Ray workers (default: one per node).

    Returns:
        What was generated, skipped and failed. Failed requests are not stored: a rerun retries them.
    """
    from cotscope.pipeline._executor import get_executor
    from cotscope.thinking import get_strategy

    strat = get_strategy(strategy) if isinstance(strategy, str) else strategy
    sampling = sampling or Sampling()
    progress = progress or NullProgress()
    stats = GenerateStats(model=model, strategy=strat.name, samples=samples)
    work, stats.prompts, stats.duplicate_prompts, stats.skipped_existing = plan_work(
        store, prompts, model, strat.name, samples)
    stats.requested = len(work)
    executor = get_executor(ray, ray_workers) if work else None
    own_run = run_id is None
    if own_run:
        run_id = store.start_run("generate", model, {
            "model": model, "strategy": strat.name, "samples": samples, **asdict(sampling),
            "source": source_file, **(run_config or {})})
    assert run_id is not None
    stats.run_id = run_id
    t0 = time.perf_counter()
    status = "failed"
    try:
        if work and executor is not None:
            await _run_fanout(store, work, model, strat, sampling, model_base_url, model_args, executor, source_file,
                              run_id, progress, description or f"{model} · {strat.name}", flush_every, stats)
        elif work:
            await _run_engine(store, work, model, strat, sampling, backend, model_base_url, model_args, cache,
                              source_file, run_id, progress, description or f"{model} · {strat.name}", flush_every,
                              stats)
        status = "done"
    except BaseException:
        status = "interrupted"
        raise
    finally:
        stats.seconds = time.perf_counter() - t0
        if own_run:
            store.finish_run(run_id, status, stats.to_dict())
    return stats


def resolve_backend(backend: Model | Callable[[], Model] | None, model: str, base_url: str | None,
                    model_args: dict[str, Any] | None) -> tuple[Model, bool]:
    """The backend a stage runs on, and whether the stage owns it (closes it when done).

    Only a backend built here from the model name is owned: a caller that passes a backend or a factory may
    share it across several stages (the phases of a benchmark run).
    """
    from cotscope.models import Model, get_model

    if backend is None:
        return get_model(model, base_url=base_url, **(model_args or {})), True
    if isinstance(backend, Model):
        return backend, False
    return backend(), False


class _TraceSink:
    """Turns finished requests into stored traces, in small batches; shared by the in-process and fan-out paths."""

    def __init__(self, store: Store, model: str, strat: Strategy, source_file: str | None, run_id: str,
                 flush_every: int, stats: GenerateStats, task: ProgressTask, total: int,
                 engine_stats: Callable[[], EngineStats]) -> None:
        self.store, self.model, self.strat, self.source_file, self.run_id = store, model, strat, source_file, run_id
        self.flush_every, self.stats, self.task, self.total = flush_every, stats, task, total
        self.engine_stats = engine_stats
        self.base_model: str | None = None
        self.pending: list[dict[str, Any]] = []
        self.last_info = 0.0
        self.t0 = self.last_flush = time.perf_counter()

    def flush(self) -> None:
        if self.pending:
            self.stats.new_traces += self.store.add_rows(self.pending, self.run_id)
            self.pending.clear()
        self.last_flush = time.perf_counter()

    def add(self, item: tuple[PromptItem, str, int], out: ModelOutput) -> None:
        p, gid, k = item
        stats = self.stats
        now = time.perf_counter()
        info = ""
        es = self.engine_stats()  # already counts this result
        # Rendering the status text per request costs more than a fast request: a few times a second (and for
        # the last result) suffices.
        if now - self.last_info > 0.2 or es.completed + es.errors == self.total:
            self.last_info = now
            elapsed = now - self.t0
            info = (f"{es.completion_tokens / elapsed if elapsed else 0:,.0f} tok/s · {es.cached} cached"
                    f" · {es.errors} errors")
        self.task.advance(1, info)
        if out.error is not None:
            stats.error_count += 1
            if len(stats.errors) < MAX_ERROR_EXAMPLES:
                stats.errors.append({"prompt_line": p.line, "item_id": p.metadata.get("item_id"),
                                     "sample_index": k, "error": out.error[:500]})
            return
        stats.generated += 1
        meta = {**p.metadata, "finish_reason": out.finish_reason, "prompt_tokens": out.prompt_tokens,
                "completion_tokens": out.completion_tokens, "cached": out.cached, "served_by": out.model,
                "prefill_applied": out.prefill_applied}
        if self.base_model:
            meta["base_model"] = self.base_model
        self.pending.append(make_row(p.messages, out.reasoning, out.answer, out.reasoning_closed, model=self.model,
                                     strategy=self.strat.name, group_id=gid, sample_index=k, metadata=meta,
                                     source_file=self.source_file, source_line=p.line, source_format=GENERATED,
                                     reasoning_provenance=self.strat.provenance(out)))
        # Small batches: a killed run loses at most a batch or a second of work.
        if len(self.pending) >= self.flush_every or time.perf_counter() - self.last_flush > 1.0:
            self.flush()


async def _run_engine(store: Store, work: list[tuple[PromptItem, str, int]], model: str, strat: Strategy,
                      sampling: Sampling, backend: Any, base_url: str | None, model_args: dict[str, Any] | None,
                      cache: RequestCache | None, source_file: str | None, run_id: str, progress: Progress,
                      description: str, flush_every: int, stats: GenerateStats) -> None:
    from cotscope.models import Engine, GenerateRequest

    be, owned = resolve_backend(backend, model, base_url, model_args)
    requests = [GenerateRequest(messages=p.messages, config=sampling.config(k), sample_index=k) for p, _, k in work]
    engine = Engine(be, strat, cache)
    task = progress.task(description, total=len(requests))
    sink = _TraceSink(store, model, strat, source_file, run_id, flush_every, stats, task, len(work),
                      lambda: engine.stats)
    # An adapter backend (``local/ADAPTER_DIR``) names the base it runs on; every trace records it so that a
    # store says which base produced it even after the adapter folder is gone. Plain backends have none.
    sink.base_model = getattr(be, "base_model", None)

    try:
        await engine.run(requests, lambda i, out: sink.add(work[i], out))
    finally:
        sink.flush()
        task.done()
        stats.engine = engine.stats.to_dict()  # the engine has flushed the cache itself
        if owned:
            await be.aclose()


@dataclass
class GenerateJob:
    """What each worker of a fanned-out generation does: build the backend once, then answer whole groups.

    Only plain data travels: the model spec (``{node_ip}`` in ``base_url`` becomes the worker's node) and the
    strategy. A unit's payload is its requests; its result is ``(outputs, base model)``.
    """

    model: str
    base_url: str | None
    model_args: dict[str, Any]
    strategy: Strategy
    backend: Any = field(default=None, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "backend": None}  # a started worker's backend never travels

    async def start(self) -> None:
        """Build the backend."""
        from cotscope.models import get_model
        from cotscope.pipeline._executor import node_url

        self.backend = get_model(self.model, base_url=node_url(self.base_url), **self.model_args)

    async def run(self, payload: list[GenerateRequest]) -> tuple[list[ModelOutput], str | None]:
        """One group's (or a few groups') outputs, in request order, through the engine."""
        from cotscope.models import Engine

        outs = await Engine(self.backend, self.strategy).run(payload)
        return outs, getattr(self.backend, "base_model", None)

    async def close(self) -> None:
        """Close the backend."""
        if self.backend is not None:
            await self.backend.aclose()
            self.backend = None


async def _run_fanout(store: Store, work: list[tuple[PromptItem, str, int]], model: str, strat: Strategy,
                      sampling: Sampling, base_url: str | None, model_args: dict[str, Any] | None,
                      executor: Executor, source_file: str | None, run_id: str, progress: Progress,
                      description: str, flush_every: int, stats: GenerateStats) -> None:
    """The work in batches of whole groups over the executor's workers; the driver stores every result."""
    from cotscope.models import EngineStats, GenerateRequest
    from cotscope.pipeline._executor import batches

    es = EngineStats(requests=len(work))
    task = progress.task(description, total=len(work))
    sink = _TraceSink(store, model, strat, source_file, run_id, flush_every, stats, task, len(work), lambda: es)
    idx = batches(list(range(len(work))), lambda i: work[i][1], executor.workers, flush_every)
    job = GenerateJob(model, base_url, dict(model_args or {}), strat)

    def units() -> Iterator[tuple[int, list[GenerateRequest]]]:
        for u, chunk in enumerate(idx):
            yield u, [GenerateRequest(messages=work[i][0].messages, config=sampling.config(work[i][2]),
                                      sample_index=work[i][2]) for i in chunk]

    def on_result(u: int, result: tuple[list[ModelOutput], str | None]) -> None:
        outs, sink.base_model = result
        for i, out in zip(idx[u], outs, strict=True):
            es.add(out)
            sink.add(work[i], out)
        # A unit comes back whole and the next may take a while: stored now, a killed driver loses only the
        # units in flight (the in-process path's timer flushes on the next result, which here can be far off).
        sink.flush()

    t0 = time.perf_counter()
    try:
        ex = await executor.map(job, units(), on_result)
        stats.executor = {"name": executor.name, **ex.to_dict()}
    finally:
        sink.flush()
        task.done()
        es.seconds = time.perf_counter() - t0
        stats.engine = es.to_dict()
