"""The evaluate stage: a judge or monitor over traces already in the store; skip what exists, store what is new.

One implementation for ``cotscope judge``, ``cotscope monitor``, the judge phase of ``cotscope run`` and the
Python API. Results are keyed by ``(trace, evaluator, config hash, part)``; the evaluator is recorded in the
store's evaluators table with its label meaning, so any later command (metrics, report, traces --where)
knows what a ``true`` label means whichever command wrote it. With ``ray=`` the batches (trace rows, not the
store) go to workers that rebuild the judge or monitor by name (:class:`EvaluateJob`); results are stored here.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from cotscope._progress import NullProgress, Progress
from cotscope.judges import PARTS, Judge, JudgeResult, Part
from cotscope.monitors import Monitor
from cotscope.pipeline._outcomes import ANSWER_PARTS, INCOMPLETE, flag_from_reasoning, incomplete_result, is_incomplete
from cotscope.traces import Trace

if TYPE_CHECKING:
    from cotscope.pipeline._executor import Executor
    from cotscope.store import Store

#: Ids per query when an explicit id list is fetched.
_ID_FETCH_MAX = 5000

#: Per-trace context handed to a judge (e.g. DeceptionBench's elicited belief), by trace id.
Contexts = Mapping[str, Mapping[str, Any]]

ScoreBatch = Callable[[Sequence[Trace], Sequence[Mapping[str, Any]] | None], Awaitable[list[JudgeResult]]]


@dataclass
class Evaluator:
    """A judge or a monitor as the evaluate stage sees it: a name, a key and a batch scorer.

    Attributes:
        name: the evaluator name stored with each result.
        kind: ``judge`` or ``monitor``.
        part: the trace part its results are stored under.
        label_meaning: what a true label means (``unsafe``, ``refused``, ``flagged``, ...).
        config: everything that changes its verdicts; hashed into the store key.
        score: scores a batch of traces (with optional per-trace context).
        close: releases its backend.
        preferred_batch: traces per batch (large for local classifiers, 64 for LLM judges).
        rebuild: a picklable factory of the judge or monitor, for workers that build their own
            (:func:`rebuilder`); ``None``: this evaluator runs only in this process.
    """

    name: str
    kind: str
    part: str
    label_meaning: str | None
    config: dict[str, Any]
    score: ScoreBatch
    close: Callable[[], Awaitable[None]]
    preferred_batch: int = 64
    rebuild: Callable[[], Judge | Monitor] | None = None
    #: The reasoning kinds it reads (:func:`with_reasoning_kinds`); ``None``: the whole reasoning.
    reasoning_kinds: tuple[str, ...] | None = None

    @property
    def config_hash(self) -> str:
        """The configuration part of the store key."""
        from cotscope.store import config_hash

        return config_hash(self.config)


def as_evaluator(obj: Judge | Monitor | Evaluator, part: Part | None = None) -> Evaluator:
    """Adapt a judge (which needs ``part``) or a monitor (which has its own part) to an :class:`Evaluator`.

    Raises:
        ValueError: a judge without a part, or an unknown part.
    """
    if isinstance(obj, Evaluator):
        return obj
    # A monitor first: a judge wrapped as a monitor also carries a ``judge`` attribute.
    if isinstance(obj, Monitor):
        mon = obj

        async def score_m(batch: Sequence[Trace], ctx: Sequence[Mapping[str, Any]] | None) -> list[JudgeResult]:
            return list(await mon.monitor(batch))

        return Evaluator(name=mon.name, kind="monitor", part=mon.part, label_meaning=mon.label_meaning,
                         config=mon.config(), score=score_m, close=mon.aclose,
                         preferred_batch=mon.preferred_batch, rebuild=rebuilder(mon))
    jdg = obj
    if part not in PARTS:
        raise ValueError(f"judge {jdg.name} needs a part: {', '.join(PARTS)} (got {part!r})")
    p: Part = part

    async def score_j(batch: Sequence[Trace], ctx: Sequence[Mapping[str, Any]] | None) -> list[JudgeResult]:
        return await jdg.judge(batch, p, ctx)

    # The label meaning is part of the key so that two judges that differ only in what their label means
    # never share results (and so that keys written before this module existed stay the same).
    return Evaluator(name=jdg.name, kind="judge", part=p, label_meaning=jdg.label_meaning,
                     config=jdg.config() | {"label_meaning": jdg.label_meaning}, score=score_j, close=jdg.aclose,
                     preferred_batch=jdg.preferred_batch, rebuild=rebuilder(jdg))


def restrict_reasoning(trace: Trace, kinds: Sequence[str]) -> Trace:
    """The trace as an evaluator told to read only ``kinds`` sees it: its reasoning is
    :func:`cotscope.traces.reasoning_of_kinds` (steps derived from that text), everything else, the id
    included, unchanged."""
    from cotscope.traces import reasoning_of_kinds
    from cotscope.traces._steps import segment_steps

    text = reasoning_of_kinds(trace, kinds)
    if text == trace.reasoning:
        return trace
    return trace.model_copy(update={"reasoning": text, "steps": segment_steps(text), "reasoning_provenance": []})


def map_evidence_back(result: JudgeResult, trace: Trace, kinds: Sequence[str]) -> JudgeResult:
    """``result`` with the offsets of its verified reasoning evidence moved from the restricted text that
    :func:`restrict_reasoning` gave the evaluator to the trace's whole reasoning.

    A quote inside one piece moves by that piece's offset. A quote that runs across the separator between two
    pieces is not verbatim in the reasoning: it is kept, unverified and without offsets, as a quote the
    evaluator could not have found in the trace.
    """
    from cotscope.traces import reasoning_ranges
    from cotscope.traces._provenance import PIECE_SEPARATOR

    if not result.evidence or not any(e.field == "reasoning" and e.start is not None for e in result.evidence):
        return result
    ranges = reasoning_ranges(trace, kinds)
    if ranges == [(0, len(trace.reasoning))]:
        return result
    starts, at = [], 0
    for a, b in ranges:
        starts.append(at)
        at += (b - a) + len(PIECE_SEPARATOR)
    moved = []
    for e in result.evidence:
        if e.field != "reasoning" or e.start is None or e.end is None:
            moved.append(e)
            continue
        for (a, b), off in zip(ranges, starts, strict=True):
            if off <= e.start and e.end <= off + (b - a):
                moved.append(e.model_copy(update={"start": a + e.start - off, "end": a + e.end - off}))
                break
        else:
            moved.append(e.model_copy(update={"start": None, "end": None, "verified": False}))
    return result.model_copy(update={"evidence": moved})


def with_reasoning_kinds(ev: Evaluator, kinds: str | Sequence[str] | None) -> Evaluator:
    """An evaluator that reads only the reasoning of the given provenance kinds (``raw,summary``, ...).

    The kinds are part of its configuration, so of its config hash: results read from different kinds are
    stored under different keys and never mix. A trace with none of those kinds is scored on empty reasoning
    (its provenance is :func:`cotscope.traces.provenance_label`); ``unknown`` selects the whole reasoning of
    traces without provenance. Evidence on the reasoning is mapped back to offsets in the whole reasoning
    (:func:`map_evidence_back`), so the report and the viewer highlight it where it is.

    Raises:
        ValueError: an unknown kind.
    """
    if kinds is None:
        return ev
    from dataclasses import replace

    from cotscope.traces import parse_kinds

    sel = parse_kinds(kinds)
    inner = ev.score

    async def score(batch: Sequence[Trace], ctx: Sequence[Mapping[str, Any]] | None) -> list[JudgeResult]:
        results = await inner([restrict_reasoning(t, sel) for t in batch], ctx)
        return [map_evidence_back(r, t, sel) for r, t in zip(results, batch, strict=True)]

    return replace(ev, config=ev.config | {"reasoning_kinds": list(sel)}, score=score, reasoning_kinds=sel)


@dataclass
class EvaluateStats:
    """What one judge/monitor pass did. ``total == skipped + stored + errors``."""

    evaluator: str
    kind: str
    part: str
    config_hash: str
    run_id: str = ""
    total: int = 0
    skipped: int = 0
    stored: int = 0
    label_true: int = 0
    label_false: int = 0
    no_label: int = 0
    parse_errors: int = 0
    errors: int = 0
    #: Traces whose absent answer was not judged (reasoning that never finished); stored as ``incomplete``.
    incomplete: int = 0
    #: Verdicts on the answer whose verified evidence quotes only the reasoning.
    verdict_from_reasoning: int = 0
    seconds: float = 0.0
    error_examples: list[str] = field(default_factory=list)
    executor: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The stats as the JSON object of ``cotscope judge --json`` (``executor`` only when fanned out)."""
        d = asdict(self)
        if d["executor"] is None:
            del d["executor"]
        d["seconds"] = round(self.seconds, 3)
        d["traces_per_s"] = round(self.stored / self.seconds, 2) if self.seconds > 0 else None
        return d

    def count(self, r: JudgeResult) -> None:
        """Count one stored result."""
        if r.details.get("outcome") == INCOMPLETE:
            self.incomplete += 1
            return
        if r.details.get("verdict_from_reasoning"):
            self.verdict_from_reasoning += 1
        if r.parse_error:
            self.parse_errors += 1
        elif r.label is None:
            self.no_label += 1
        elif r.label:
            self.label_true += 1
        else:
            self.label_false += 1


async def score_traces(ev: Evaluator, traces: Sequence[Trace],
                       contexts: Sequence[Mapping[str, Any]] | None = None) -> list[JudgeResult]:
    """What the evaluate stage records for ``traces``, without a store: for callers that score traces where they
    are (the Inspect scorers), so that they judge exactly as :func:`evaluate` does.

    A part that reads the answer of reasoning that never finished gets its ``incomplete`` outcome and is not
    sent to the evaluator; the others get the evaluator's results, a verdict on the answer flagged
    ``verdict_from_reasoning`` when its evidence quotes only the reasoning.

    Raises:
        RuntimeError: the evaluator returned a different number of results.
    """
    out: list[JudgeResult | None] = [None] * len(traces)
    todo = []
    for i, t in enumerate(traces):
        if ev.part in ANSWER_PARTS and is_incomplete(t):
            out[i] = incomplete_result(t)
        else:
            todo.append(i)
    if todo:
        ctx = [contexts[i] for i in todo] if contexts is not None else None
        results = await ev.score([traces[i] for i in todo], ctx)
        if len(results) != len(todo):
            raise RuntimeError(f"{ev.name} returned {len(results)} results for {len(todo)} traces")
        for i, r in zip(todo, results, strict=True):
            out[i] = r if r.error else flag_from_reasoning(traces[i], r, ev.part)
    return [r for r in out if r is not None]


def result_row(trace_id: str, ev: Evaluator, chash: str, r: JudgeResult, run_id: str) -> dict[str, Any]:
    """The store row of one result."""
    return {
        "trace_id": trace_id, "evaluator": ev.name, "config_hash": chash, "part": ev.part, "kind": ev.kind,
        "label": r.label, "score": r.score, "parse_error": r.parse_error, "raw": r.raw, "reason": r.reason,
        "evidence": [e.model_dump(exclude_none=True) for e in r.evidence], "details": r.details or None,
        "run_id": run_id,
    }


async def evaluate(
    store: Store,
    evaluator: Judge | Monitor | Evaluator,
    part: Part | None = None,
    *,
    trace_ids: Sequence[str] | None = None,
    context: Contexts | None = None,
    batch_size: int | None = None,
    limit: int | None = None,
    run_id: str | None = None,
    progress: Progress | None = None,
    description: str | None = None,
    close: bool = False,
    ray: str | Executor | None = None,
    ray_workers: int | None = None,
    reasoning_kinds: str | Sequence[str] | None = None,
    **filters: Any,
) -> EvaluateStats:
    """Score every stored trace that has no result for this evaluator's key yet.

    Each batch is stored as soon as it is scored, so a killed run resumes where it stopped. Backend
    failures are counted, not stored, so a rerun retries them; parse errors are stored with the raw output
    (rerunning would not change them) and never become labels. Nothing is generated: only stored traces
    are read.

    Reasoning that never finished (:func:`cotscope.pipeline.is_incomplete`: a cap hit without an answer) is never
    sent to a judge of the answer (parts ``answer`` and ``both``): its ``incomplete`` outcome is stored instead,
    with no label. A verdict on the answer whose verified evidence quotes only the reasoning is flagged
    ``details.verdict_from_reasoning`` (:func:`cotscope.pipeline.verdict_from_reasoning`).

    Args:
        store: the open store.
        evaluator: a judge (give ``part``), a monitor, or an :class:`Evaluator`.
        part: the part a judge reads.
        trace_ids: only these traces (a benchmark's); default every trace matching ``filters``.
        context: per-trace context by trace id, handed to the judge (DeceptionBench's belief, ...).
        batch_size: traces per batch (default: the evaluator's preferred batch).
        limit: score at most this many new traces.
        run_id: record results under this run; ``None`` starts and finishes a run of the evaluator's kind.
        progress: where progress goes.
        description: the progress label.
        close: close the evaluator's backend at the end.
        ray: fan the batches out: a Ray address (``auto``, ``HOST:PORT``, ``local``) or an executor. Each worker
            rebuilds the judge or monitor from its name and options once and scores the trace rows it is sent;
            this process alone writes the store. ``None``: in this process.
        ray_workers: Ray workers (default: one per node).
        reasoning_kinds: read only the reasoning of these provenance kinds (``"raw,summary"`` or a list; see
            :func:`with_reasoning_kinds`); part of the evaluator's key. ``None``: the whole reasoning.
        **filters: trace filters (``model=``, ``strategy=``, ``group_id=``, ``source_format=``, ...).

    Raises:
        ValueError: an unknown reasoning kind.
    """
    from cotscope.pipeline._executor import get_executor

    ev = with_reasoning_kinds(as_evaluator(evaluator, part), reasoning_kinds)
    chash = ev.config_hash
    stats = EvaluateStats(evaluator=ev.name, kind=ev.kind, part=ev.part, config_hash=chash)
    store.add_evaluator(ev.name, chash, kind=ev.kind, label_meaning=ev.label_meaning, config=ev.config)
    todo = _Todo.plan(store, ev, chash, trace_ids, limit, filters)
    stats.skipped = todo.skipped
    stats.total = stats.skipped + len(todo)
    own_run = run_id is None
    if own_run:
        run_id = store.start_run(ev.kind, ev.name, {"config": ev.config, "part": ev.part, "config_hash": chash})
    assert run_id is not None
    stats.run_id = run_id
    task = (progress or NullProgress()).task(description or f"{ev.kind} {ev.name}:{ev.part}", total=len(todo))
    t0 = time.perf_counter()
    status = "failed"
    try:
        executor = get_executor(ray, ray_workers) if todo else None
        await _score_all(store, ev, chash, todo, context, batch_size or ev.preferred_batch, run_id, stats, task,
                         executor)
        status = "done"
    except BaseException:
        status = "interrupted"
        raise
    finally:
        task.done()
        stats.seconds = time.perf_counter() - t0
        if own_run:
            store.finish_run(run_id, status, stats.to_dict())
        if close:
            await ev.close()
    return stats


@dataclass
class _Todo:
    """The traces one evaluation scores, read from the store batch by batch as they are needed.

    Either an explicit id list (a benchmark's traces, fetched by id), or every trace matching the filters that
    has no result for the key yet: the store finds those with one anti-join in DuckDB and streams them, so
    neither the ids of a 100M-trace corpus (an attached Parquet dataset) nor the set already done are ever
    held in Python.
    """

    store: Store
    count: int
    skipped: int
    ids: list[str] | None = None
    key: tuple[str, str, str] = ("", "", "")
    limit: int | None = None
    filters: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def plan(cls, store: Store, ev: Evaluator, chash: str, trace_ids: Sequence[str] | None, limit: int | None,
             filters: dict[str, Any]) -> _Todo:
        """What is left to score, and how many were skipped because they have a result."""
        if trace_ids is not None:
            done = store.done_trace_ids(ev.name, chash, ev.part)
            ids = list(dict.fromkeys(trace_ids))
            todo = [i for i in ids if i not in done]
            skipped = len(ids) - len(todo)
            todo = todo if limit is None else todo[:limit]
            return cls(store, len(todo), skipped, ids=todo)
        key = (ev.name, chash, ev.part)
        pending = store.count_pending(*key, **filters)
        return cls(store, pending if limit is None else min(pending, limit), store.count(**filters) - pending,
                   key=key, limit=limit, filters=filters)

    def __len__(self) -> int:
        return self.count

    def batches(self, batch_size: int) -> Iterator[list[Trace]]:
        """The traces in batches of ``batch_size``, in store order."""
        source: Iterator[Trace]
        if self.ids is not None:
            ids, step = self.ids, _ID_FETCH_MAX
            source = (t for i in range(0, len(ids), step) for t in self.store.traces(ids=ids[i:i + step]))
        else:
            source = self.store.pending_traces(*self.key, limit=self.limit, **self.filters)
        batch: list[Trace] = []
        for t in source:
            batch.append(t)
            if len(batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch


async def _score_all(store: Store, ev: Evaluator, chash: str, todo: _Todo, context: Contexts | None,
                     batch_size: int, run_id: str, stats: EvaluateStats, task: Any,
                     executor: Executor | None = None) -> None:
    if not todo:
        return

    def contexts(batch: Sequence[Trace]) -> list[Mapping[str, Any]] | None:
        return [context.get(t.id, {}) for t in batch] if context is not None else None

    def store_batch(batch: Sequence[Trace], results: Sequence[JudgeResult]) -> None:
        if len(results) != len(batch):
            raise RuntimeError(f"{ev.name} returned {len(results)} results for {len(batch)} traces")
        rows = []
        for t, r in zip(batch, results, strict=True):
            if r.error:
                stats.errors += 1
                if len(stats.error_examples) < 5:
                    stats.error_examples.append(f"{t.id}: {r.error}")
                continue
            r = flag_from_reasoning(t, r, ev.part)
            rows.append(result_row(t.id, ev, chash, r, run_id))
            stats.count(r)
        stats.stored += store.add_results(rows)
        task.advance(len(batch), f"{stats.label_true} true · {stats.parse_errors} parse errors")

    def to_score(batches: Iterator[list[Trace]]) -> Iterator[list[Trace]]:
        # Reasoning that never finished has no answer to judge: a judge of the answer would call the empty
        # part "nothing unsafe, no refusal". Its outcome is stored here and only the rest is sent on.
        for batch in batches:
            if ev.part in ANSWER_PARTS:
                cut = [t for t in batch if is_incomplete(t)]
                if cut:
                    store_batch(cut, [incomplete_result(t) for t in cut])
                    batch = [t for t in batch if not is_incomplete(t)]
            if batch:
                yield batch

    if executor is not None:
        await _score_fanout(ev, to_score(todo.batches(max(1, min(batch_size,
                                                                 -(-len(todo) // (executor.workers * 4)))))),
                            contexts, store_batch, executor, stats)
        return
    for batch in to_score(todo.batches(batch_size)):
        store_batch(batch, await ev.score(batch, contexts(batch)))


def rebuilder(obj: Judge | Monitor) -> Callable[[], Judge | Monitor] | None:
    """A picklable factory that builds ``obj`` again elsewhere (a Ray worker), or ``None`` when it cannot.

    Judges and monitors built by name record their arguments (``cotscope._registry``); a judge wrapped as a
    monitor is the judge rebuilt and wrapped again. A judge model's server set after building (``base_url``,
    as ``cotscope run --judge-base-url`` does) is carried over.
    """
    from cotscope._registry import registry_info

    info = registry_info(obj)
    if info is not None and info.kind in ("judge", "monitor"):
        return _Rebuild(info.kind, info.name, dict(info.args), getattr(obj, "base_url", None))
    inner = getattr(obj, "judge", None)
    if inner is not None and isinstance(obj, Monitor):
        from cotscope.monitors._adapt import JudgeMonitor

        judge = rebuilder(inner)
        if isinstance(obj, JudgeMonitor) and judge is not None:
            return _RebuildJudgeMonitor(judge, obj.part, obj.name)
    return None


@dataclass(frozen=True)
class _Rebuild:
    kind: str
    name: str
    args: dict[str, Any]
    base_url: str | None

    def __call__(self) -> Judge | Monitor:
        from cotscope.judges._types import JUDGES
        from cotscope.monitors._types import MONITORS

        obj: Judge | Monitor = (JUDGES if self.kind == "judge" else MONITORS).get(self.name, **self.args)
        if self.base_url is not None and hasattr(obj, "base_url"):
            obj.base_url = self.base_url
        inner = getattr(obj, "judge", None)
        if self.base_url is not None and inner is not None and hasattr(inner, "base_url"):
            inner.base_url = self.base_url
        return obj


@dataclass(frozen=True)
class _RebuildJudgeMonitor:
    judge: Callable[[], Judge | Monitor]
    part: str
    name: str

    def __call__(self) -> Monitor:
        from cotscope.monitors._adapt import JudgeMonitor

        judge = self.judge()
        assert isinstance(judge, Judge)
        return JudgeMonitor(judge, part=self.part, name=self.name)  # type: ignore[arg-type]


@dataclass
class EvaluateJob:
    """What each worker of a fanned-out evaluation does: rebuild the judge or monitor once, then score batches.

    A unit's payload is ``(traces, contexts)``: the rows travel, not the store. The rebuilt evaluator must
    have the driver's key (config hash), or its results would be stored under a key they do not belong to.
    """

    rebuild: Callable[[], Judge | Monitor]
    part: str
    config_hash: str
    evaluator: Evaluator | None = field(default=None, repr=False)
    reasoning_kinds: tuple[str, ...] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "evaluator": None}

    async def start(self) -> None:
        """Rebuild the evaluator and check its key."""
        from cotscope.errors import ConfigError

        ev = with_reasoning_kinds(as_evaluator(self.rebuild(), self.part),  # type: ignore[arg-type]
                                  self.reasoning_kinds)
        if ev.config_hash != self.config_hash:
            await ev.close()
            raise ConfigError(f"{ev.name} rebuilt on a worker has config hash {ev.config_hash}, not the driver's "
                              f"{self.config_hash}: its settings do not all come from its name and options")
        self.evaluator = ev

    async def run(self, payload: tuple[list[Trace], list[Mapping[str, Any]] | None]) -> list[JudgeResult]:
        """One batch's results."""
        assert self.evaluator is not None
        traces, ctx = payload
        return await self.evaluator.score(traces, ctx)

    async def close(self) -> None:
        """Close the evaluator's backend."""
        if self.evaluator is not None:
            await self.evaluator.close()
            self.evaluator = None


async def _score_fanout(ev: Evaluator, source: Iterator[list[Trace]],
                        contexts: Callable[[Sequence[Trace]], list[Mapping[str, Any]] | None],
                        store_batch: Callable[[Sequence[Trace], Sequence[JudgeResult]], None], executor: Executor,
                        stats: EvaluateStats) -> None:
    from cotscope.errors import ConfigError

    if ev.rebuild is None:
        raise ConfigError(f"{ev.kind} {ev.name} cannot be sent to workers: only judges and monitors built by name "
                          "(get_judge, get_monitor) can be rebuilt there; run it without ray")
    job = EvaluateJob(ev.rebuild, ev.part, ev.config_hash, reasoning_kinds=ev.reasoning_kinds)
    sent: dict[int, list[Trace]] = {}

    def units() -> Iterator[tuple[int, tuple[list[Trace], list[Mapping[str, Any]] | None]]]:
        for i, batch in enumerate(source):
            sent[i] = batch  # until its results are stored: only the batches in flight are held
            yield i, (batch, contexts(batch))

    def on_result(key: int, results: list[JudgeResult]) -> None:
        store_batch(sent.pop(key), results)

    ex = await executor.map(job, units(), on_result)
    stats.executor = {"name": executor.name, **ex.to_dict()}
