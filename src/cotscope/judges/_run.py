"""Running a judge or monitor over traces already in a store: skip what exists, store what is new."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from cotscope.judges._types import Judge, JudgeResult, Part
from cotscope.traces import Trace

if TYPE_CHECKING:
    from cotscope.store import Store

#: Largest remainder fetched with an id list rather than by scanning the store.
_ID_FETCH_MAX = 5000

ScoreBatch = Callable[[Sequence[Trace]], Awaitable[list[JudgeResult]]]


@dataclass
class JudgeRunStats:
    """What one judge/monitor run did. ``total == skipped + stored + errors``."""

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
    seconds: float = 0.0
    error_examples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The stats as the JSON object of ``cotscope judge --json``."""
        d = asdict(self)
        d["seconds"] = round(self.seconds, 3)
        d["traces_per_s"] = round(self.stored / self.seconds, 2) if self.seconds > 0 else None
        return d


def result_row(trace_id: str, evaluator: str, chash: str, part: str, kind: str, r: JudgeResult,
               run_id: str) -> dict[str, Any]:
    """The store row of one result."""
    return {
        "trace_id": trace_id, "evaluator": evaluator, "config_hash": chash, "part": part, "kind": kind,
        "label": r.label, "score": r.score, "parse_error": r.parse_error, "raw": r.raw, "reason": r.reason,
        "evidence": [e.model_dump(exclude_none=True) for e in r.evidence], "details": r.details or None,
        "run_id": run_id,
    }


async def run_evaluator(
    store: Store,
    *,
    evaluator: str,
    config: dict[str, Any],
    part: str,
    kind: str,
    score_batch: ScoreBatch,
    batch_size: int = 64,
    limit: int | None = None,
    on_start: Callable[[int], None] | None = None,
    on_batch: Callable[[int, JudgeRunStats], None] | None = None,
    **filters: Any,
) -> JudgeRunStats:
    """Score every stored trace (matching ``filters``) that has no result for this key yet.

    Results are keyed by ``(trace, evaluator, config hash, part)``; each batch is stored as soon as it is
    scored, so a killed run resumes where it stopped. Backend failures are counted, not stored, so a rerun
    retries them; parse errors are stored (with the raw output) because rerunning would not change them.
    Nothing is ever generated: only stored traces are read.
    """
    from cotscope.store import config_hash

    chash = config_hash(config)
    stats = JudgeRunStats(evaluator=evaluator, kind=kind, part=part, config_hash=chash)
    done = store.done_trace_ids(evaluator, chash, part)
    ids = store.trace_ids(**filters)
    todo = [i for i in ids if i not in done]
    stats.skipped = len(ids) - len(todo)
    if limit is not None:
        todo = todo[:limit]
    stats.total = stats.skipped + len(todo)
    if on_start is not None:
        on_start(stats.total)
    stats.run_id = store.start_run(kind, evaluator, {"config": config, "part": part, "config_hash": chash})
    t0 = time.perf_counter()
    status = "failed"
    try:
        todo_set = set(todo)
        batch: list[Trace] = []

        async def flush() -> None:
            results = await score_batch(batch)
            if len(results) != len(batch):
                raise RuntimeError(f"{evaluator} returned {len(results)} results for {len(batch)} traces")
            rows = []
            for t, r in zip(batch, results, strict=True):
                if r.error:
                    stats.errors += 1
                    if len(stats.error_examples) < 5:
                        stats.error_examples.append(f"{t.id}: {r.error}")
                    continue
                rows.append(result_row(t.id, evaluator, chash, part, kind, r, stats.run_id))
                if r.parse_error:
                    stats.parse_errors += 1
                elif r.label is None:
                    stats.no_label += 1
                elif r.label:
                    stats.label_true += 1
                else:
                    stats.label_false += 1
            stats.stored += store.add_results(rows)
            if on_batch is not None:
                on_batch(len(batch), stats)
            batch.clear()

        # Streams in store order. A small remainder is fetched by id; a large one is filtered here, because an
        # id-list predicate over a big store costs more than reading the rows.
        if todo:
            by_id = len(todo) < len(ids) and len(todo) <= _ID_FETCH_MAX
            for t in store.traces(ids=todo, **filters) if by_id else store.traces(**filters):
                if t.id not in todo_set:
                    continue
                batch.append(t)
                if len(batch) >= batch_size:
                    await flush()
            if batch:
                await flush()
        status = "done"
    finally:
        stats.seconds = time.perf_counter() - t0
        store.finish_run(stats.run_id, status, stats.to_dict())
    return stats


async def run_judge(
    store: Store,
    judge: Judge,
    part: Part,
    *,
    batch_size: int = 64,
    limit: int | None = None,
    on_start: Callable[[int], None] | None = None,
    on_batch: Callable[[int, JudgeRunStats], None] | None = None,
    **filters: Any,
) -> JudgeRunStats:
    """Run ``judge`` on ``part`` of every stored trace without a result yet (see :func:`run_evaluator`)."""

    async def score(batch: Sequence[Trace]) -> list[JudgeResult]:
        return await judge.judge(batch, part)

    cfg = judge.config() | {"label_meaning": judge.label_meaning}
    return await run_evaluator(store, evaluator=judge.name, config=cfg, part=part, kind="judge",
                               score_batch=score, batch_size=batch_size, limit=limit, on_start=on_start,
                               on_batch=on_batch, **filters)
