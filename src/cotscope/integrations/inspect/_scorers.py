"""Every cotscope judge and monitor as an Inspect scorer: ``cotscope/local_refusal``, ``cotscope/llama_guard``,
``cotscope/tc_cot_monitor``, ... and ``cotscope/judge`` for any registered name (a plugin's too).

A scorer reads the sample as a trace (:func:`~cotscope.integrations.inspect._trace.state_trace`: Inspect's
``ContentReasoning`` is the reasoning, the text the answer) and runs the judge exactly as ``cotscope judge`` and
``cotscope run`` do: built by the benchmark runner's own builder and adapted by
:func:`cotscope.pipeline.as_evaluator`, so its evaluator name, part and config hash are the store key those commands
use. The verdict goes into the :class:`~inspect_ai.scorer.Score`: ``value`` is the label as 1/0 (NaN when the judge
gives none, which Inspect leaves out of its metrics), or a ``{part: 1/0}`` dict when several parts are judged;
``answer`` the label in words; ``explanation`` the reason and the evidence quotes; ``metadata["cotscope"]`` one
entry per part with label, score, reason, verified evidence, details and the store key, which ``cotscope ingest``
of the log stores as results. A judge output that cannot be parsed raises :class:`JudgeParseError` (an Inspect
scoring error of the sample, never a score); so does a failed judge backend (:class:`JudgeBackendError`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from inspect_ai.scorer import Score, Scorer, Target, scorer
from inspect_ai.solver import TaskState

from cotscope.errors import ConfigError
from cotscope.integrations.inspect._metrics import default_metrics
from cotscope.integrations.inspect._solvers import CONTEXT_KEY
from cotscope.integrations.inspect._trace import state_trace
from cotscope.judges import PARTS, JudgeResult
from cotscope.pipeline import Evaluator, is_incomplete_result, score_traces
from cotscope.traces import Trace

#: Errors with which building a judge says it cannot run here (no judge model, missing weights): the fallback runs.
_BUILD_ERRORS = (ValueError, TypeError, ImportError, OSError, RuntimeError)


class JudgeParseError(RuntimeError):
    """A judge's output could not be parsed: the sample gets a scoring error, never a label."""


class JudgeBackendError(RuntimeError):
    """The judge's backend failed (timeout, HTTP error) on a sample: a scoring error, retried by a rerun."""


def build_evaluator(name: str, part: str, *, model: str | None = None, base_url: str | None = None,
                    kind: str | None = None, options: Mapping[str, Any] | None = None,
                    extra: Mapping[str, Any] | None = None, spec_name: str | None = None) -> Evaluator:
    """A judge or monitor as ``cotscope run`` builds it for a spec entry: the same builder, so the same key.

    Args:
        name: the judge or monitor to build.
        part: the trace part it reads.
        model: ``provider/model`` of the judge model (LLM judges).
        base_url: the judge model's OpenAI-compatible server.
        kind: ``judge`` or ``monitor``: what its results are recorded as (a judge read as a monitor keeps its key).
        options: the judge's options (given to ``name`` only when it is ``spec_name``, as a spec's are).
        extra: options for every judge built for this entry (CogTest's habit).
        spec_name: the judge the options belong to (default ``name``).

    Raises:
        ValueError, TypeError, ImportError, OSError, RuntimeError: the judge cannot be built (e.g. it needs a
            judge model); ConfigError (a ValueError) for an unknown name.
    """
    from cotscope.benchmarks import JudgeSpec, RunOptions
    from cotscope.benchmarks._runner import _evaluator
    from cotscope.judges import judge_names

    if part not in PARTS:
        raise ConfigError(f"unknown part {part!r}: expected one of {', '.join(PARTS)}")
    if kind not in (None, "judge", "monitor"):
        raise ConfigError(f"kind must be judge or monitor, got {kind!r}")
    # As the CLI records them: a judge's results as a judge's unless asked otherwise, a monitor's as a monitor's.
    role = "monitor" if kind == "monitor" or (kind is None and name not in judge_names()) else "safety"
    js = JudgeSpec(name=spec_name or name, part=part, role=role, options=dict(options or {}))  # type: ignore[arg-type]
    return _evaluator(name, js, RunOptions(judge_model=model, judge_base_url=base_url), dict(extra or {}))


class Batcher:
    """Scores the traces that concurrent samples hand one evaluator together, as batches.

    Inspect scores each sample on its own, while cotscope's judges are batched (an embedded classifier encodes a
    batch in about the time of one trace; an LLM judge hands a batch to the engine). A sample's trace waits at most
    ``wait_s`` for others, or until the evaluator's preferred batch is full; each gets its own result, in order.

    Args:
        evaluator: the judge or monitor as the evaluate stage runs it.
        wait_s: how long the first trace of a batch waits for more.
    """

    def __init__(self, evaluator: Evaluator, wait_s: float = 0.05) -> None:
        self.evaluator = evaluator
        self.wait_s = wait_s
        self._pending: list[tuple[Trace, Mapping[str, Any] | None, asyncio.Future[JudgeResult]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def score(self, trace: Trace, context: Mapping[str, Any] | None) -> JudgeResult:
        """The evaluator's result on one trace, scored in a batch with the traces sent meanwhile."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[JudgeResult] = loop.create_future()
        self._pending.append((trace, context, fut))
        if len(self._pending) >= max(1, self.evaluator.preferred_batch):
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.wait_s, self._flush)
        return await fut

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        if batch:
            task = asyncio.ensure_future(self._run(batch))
            self._running.add(task)  # a reference until it ends: the loop keeps only weak ones
            task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[tuple[Trace, Mapping[str, Any] | None, asyncio.Future[JudgeResult]]]) -> None:
        contexts = None if all(c is None for _, c, _ in batch) else [dict(c or {}) for _, c, _ in batch]
        try:
            # The evaluate stage's own scoring: incomplete reasoning is not judged as an answer, verdicts drawn
            # from the reasoning are flagged, as `cotscope judge` stores them.
            results = await score_traces(self.evaluator, [t for t, _, _ in batch], contexts)
        except BaseException as e:  # every waiting sample gets the failure (a scoring error each)
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(e)
            return
        for (_, _, fut), r in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(r)


class EvaluatorScorer:
    """The scoring of one judge (or its fallback) on one or more parts; built once per scorer, per category when
    the judge's options depend on the sample's category (CogTest's habit)."""

    def __init__(self, name: str, parts: list[str], *, model: str | None, base_url: str | None, kind: str | None,
                 fallback: str | None, role: str | None, by_category: Mapping[str, Mapping[str, Any]] | None,
                 options: Mapping[str, Any]) -> None:
        if not parts:
            raise ConfigError(f"scorer {name}: give at least one part")
        self.name, self.parts, self.model, self.base_url = name, parts, model, base_url
        self.kind, self.fallback, self.role, self.options = kind, fallback, role, dict(options)
        self.by_category = {str(k): dict(v) for k, v in by_category.items()} if by_category is not None else None
        self._built: dict[str, list[Batcher]] = {}
        if self.by_category is None:
            self.evaluators("*")  # fail when the task is built, not on the first sample

    def evaluators(self, category: str) -> list[Batcher]:
        """The evaluators (one per part) for samples of ``category``: the judge, else its fallback."""
        if category in self._built:
            return self._built[category]
        if self.by_category is not None and category not in self.by_category:
            raise ConfigError(f"scorer {self.name}: no options for category {category!r} "
                              f"(known: {', '.join(sorted(self.by_category))})")
        extra = self.by_category.get(category, {}) if self.by_category is not None else {}
        why = []
        for n in [self.name] + ([self.fallback] if self.fallback else []):
            try:
                evs = [build_evaluator(n, p, model=self.model, base_url=self.base_url, kind=self.kind,
                                       options=self.options, extra=extra, spec_name=self.name) for p in self.parts]
            except _BUILD_ERRORS as e:
                why.append(f"{n}: {e}")
                continue
            self._built[category] = [Batcher(ev) for ev in evs]
            return self._built[category]
        raise ConfigError(f"scorer {self.name} cannot run: " + "; ".join(why)
                          + ("" if self.fallback else " (give model=provider/model, or fallback=NAME)"))

    async def __call__(self, state: TaskState, target: Target) -> Score:
        trace = state_trace(state)
        category = str(state.metadata.get("category") or "") if self.by_category is not None else "*"
        ctx = state.store.get(CONTEXT_KEY)
        context = dict(ctx) if isinstance(ctx, Mapping) else None
        batchers = self.evaluators(category)
        # Every part at once: each part's evaluator batches with the other samples' traces.
        results = await asyncio.gather(*(b.score(trace, context) for b in batchers))
        verdicts: list[tuple[Evaluator, JudgeResult]] = []
        for b, r in zip(batchers, results, strict=True):
            ev = b.evaluator
            if r.error:
                raise JudgeBackendError(f"{ev.kind} {ev.name}:{ev.part} failed on sample {state.sample_id!r}: "
                                        f"{r.error}")
            if r.parse_error:
                raw = (r.raw or "")[:500]
                raise JudgeParseError(f"{ev.kind} {ev.name}:{ev.part} output could not be parsed on sample "
                                      f"{state.sample_id!r}: {r.parse_error}; raw output: {raw!r}")
            verdicts.append((ev, r))
        return make_score(verdicts, self.role)


def label_word(label: bool | None, meaning: str | None, details: Mapping[str, Any] | None = None) -> str:
    """A label in words: its meaning (``unsafe``, ``refused``, ...) or ``not`` it; ``no label`` when abstained,
    ``incomplete (not judged)`` for reasoning that never finished."""
    if label is None:
        return "incomplete (not judged)" if is_incomplete_result({"details": details}) else "no label"
    word = (meaning or "true").replace("_", " ")
    return word if label else f"not {word}"


def _value(label: bool | None) -> float:
    return float("nan") if label is None else float(label)


def make_score(verdicts: list[tuple[Evaluator, JudgeResult]], role: str | None = None) -> Score:
    """The Inspect score of one sample's verdicts (one per part), with the results ``cotscope ingest`` keeps."""
    from cotscope.store._store import INSPECT_SCORE_KEY

    results = []
    lines = []
    for ev, r in verdicts:
        evidence = [e.model_dump(exclude_none=True) for e in r.evidence]
        results.append({
            "evaluator": ev.name, "config_hash": ev.config_hash, "part": ev.part, "kind": ev.kind,
            "label_meaning": ev.label_meaning, "config": ev.config, "label": r.label, "score": r.score,
            "parse_error": None, "raw": r.raw, "reason": r.reason, "evidence": evidence,
            "details": r.details or None, "role": role,
        })
        head = f"{ev.name}:{ev.part}: {label_word(r.label, ev.label_meaning, r.details)}"
        if (r.details or {}).get("verdict_from_reasoning"):
            head += " [verdict from reasoning]"
        if r.score is not None:
            head += f" (score {r.score:.3g})"
        lines.append(head + (f": {r.reason}" if r.reason else ""))
        lines += [f"  {'verified' if e.verified else 'NOT verified'} quote from {e.field or 'trace'}: {e.text!r}"
                  for e in r.evidence]
    value: Any = (_value(verdicts[0][1].label) if len(verdicts) == 1
                  else {ev.part: _value(r.label) for ev, r in verdicts})
    answer = "; ".join((f"{ev.part}: " if len(verdicts) > 1 else "") + label_word(r.label, ev.label_meaning, r.details)
                       for ev, r in verdicts)
    return Score(value=value, answer=answer, explanation="\n".join(lines), metadata={INSPECT_SCORE_KEY: results})


def _parts(part: str | list[str] | None, default: str) -> list[str]:
    if part is None:
        return [default]
    return [part] if isinstance(part, str) else list(part)


def evaluator_scorer(name: str, part: str | list[str] | None = None, *, model: str | None = None,
                     base_url: str | None = None, kind: str | None = None, fallback: str | None = None,
                     role: str | None = None, by_category: Mapping[str, Mapping[str, Any]] | None = None,
                     **options: Any) -> Scorer:
    """The scoring function of a judge or monitor by name (what every registered cotscope scorer returns).

    Args:
        name: a judge or monitor name (``cotscope judges`` / ``cotscope monitors`` list them).
        part: the part to judge, or several (the value is then a dict by part); default ``answer`` for a judge,
            the monitor's own part for a monitor.
        model: ``provider/model`` of an LLM judge (a cotscope backend, not Inspect's grader model).
        base_url: the judge model's OpenAI-compatible server.
        kind: ``judge`` or ``monitor``: what the results are stored as (default: ``judge`` for a judge name).
        fallback: a judge to run instead when ``name`` cannot be built here (no ``model``), as a spec's fallback.
        role: what the verdicts mean to the metrics (``misalignment``, ...), as a spec's role.
        by_category: options per sample category (metadata ``category``), e.g. CogTest's ``{habit: {habit: ...}}``.
        **options: the judge's own options (``threshold``, ``mode``, ``scope``, ...).

    Raises:
        ConfigError: unknown name or part, or a judge that cannot run (no model and no fallback).
    """
    from cotscope.judges import judge_names
    from cotscope.monitors import get_monitor

    default = "answer"
    if name not in judge_names() and by_category is None:
        with contextlib.suppress(*_BUILD_ERRORS):
            default = get_monitor(name, model=model, **options).part
    return EvaluatorScorer(name, _parts(part, default), model=model, base_url=base_url, kind=kind, fallback=fallback,
                           role=role, by_category=by_category, options=options)


def scorer_name(name: str) -> str:
    """The Inspect name of a cotscope judge or monitor (``llama-guard`` -> ``llama_guard``)."""
    return name.replace("-", "_").replace(".", "_")


def _register(name: str) -> Callable[..., Scorer]:
    def factory(part: str | list[str] | None = None, model: str | None = None, base_url: str | None = None,
                kind: str | None = None, fallback: str | None = None, role: str | None = None,
                by_category: dict[str, dict[str, Any]] | None = None, **options: Any) -> Scorer:
        return evaluator_scorer(name, part, model=model, base_url=base_url, kind=kind, fallback=fallback, role=role,
                                by_category=by_category, **options)

    factory.__name__ = factory.__qualname__ = scorer_name(name)
    factory.__doc__ = (f"cotscope's {name!r} as an Inspect scorer (see "
                       ":func:`cotscope.integrations.inspect.evaluator_scorer` for the arguments).")
    return scorer(metrics=default_metrics(), name=scorer_name(name))(factory)


@scorer(metrics=default_metrics(), name="judge")
def judge(name: str, part: str | list[str] | None = None, model: str | None = None, base_url: str | None = None,
          kind: str | None = None, fallback: str | None = None, role: str | None = None,
          by_category: dict[str, dict[str, Any]] | None = None, **options: Any) -> Scorer:
    """Any registered cotscope judge or monitor by name (a plugin's too) as an Inspect scorer; the arguments are
    those of :func:`evaluator_scorer`."""
    return evaluator_scorer(name, part, model=model, base_url=base_url, kind=kind, fallback=fallback, role=role,
                            by_category=by_category, **options)


def _builtin_names() -> list[str]:
    from cotscope.judges import judge_names
    from cotscope.monitors import monitor_names

    return sorted(set(judge_names()) | set(monitor_names()))


#: The registered scorer factory of every built-in judge and monitor, by cotscope name.
SCORERS: dict[str, Callable[..., Scorer]] = {n: _register(n) for n in _builtin_names()}


def scorer_for(name: str) -> Callable[..., Scorer]:
    """The registered scorer factory of a judge or monitor (``scorer_for("local-refusal")(part="answer")``).

    Raises:
        ConfigError: no built-in judge or monitor has that name (use :func:`judge` for others).
    """
    if name not in SCORERS:
        raise ConfigError(f"no cotscope scorer for {name!r}: expected one of {', '.join(SCORERS)} "
                          "(cotscope/judge takes any registered name)")
    return SCORERS[name]


def named_scorer(name: str, part: str | list[str] | None = None, **kwargs: Any) -> Scorer:
    """A registered Inspect scorer of a judge or monitor by name: its own (``cotscope/local_refusal``) for a
    built-in, ``cotscope/judge`` for another registered name; the arguments are :func:`evaluator_scorer`'s."""
    if name in SCORERS:
        return SCORERS[name](part, **kwargs)
    return judge(name, part, **kwargs)
