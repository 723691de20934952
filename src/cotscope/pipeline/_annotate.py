"""Process annotation over the store: URSA's labelling engines through the evaluate stage, and training data out.

Annotation is not a stage of its own, for the same reason PRM scoring is not (:mod:`cotscope.pipeline._verify`):
:func:`as_annotation_evaluator` turns an engine (:class:`~cotscope.verify._annotate.BinaryErrorLocator` or
:class:`~cotscope.verify._annotate.MisinterpretationInserter`) into an :class:`~cotscope.pipeline.Evaluator` of kind
``annotation``, so :func:`~cotscope.pipeline.evaluate` stores each trace's step labels keyed by ``(trace, engine,
config hash, part)``, skips what is labelled and resumes a killed run; the completions themselves go through the
engine's request cache, so even a batch killed half-way costs nothing twice. :func:`annotation_examples` reads
the labels back as PRM training examples.

What a result holds: ``label`` is None (a step label is not a verdict on the trace), ``score`` is the share of
steps labelled correct, and ``details`` hold ``step_labels`` (one 0/1 per step), ``first_error`` (from 0; absent
when every step is correct), ``final_correct``, ``calls`` and ``cached`` (completions requested), BEL's
``checks`` (each bisection: prefix, hits, rollouts) and MIE's ``steps``/``answer`` (the rewritten solution, which
is what the labels are about) and ``inserted_at``. A solution that cannot be labelled (no steps, no gold answer,
an MIE rewrite that is unusable) is stored as a parse error with the reason; a backend failure is not stored,
so a rerun retries it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from cotscope.errors import ConfigError
from cotscope.judges import JudgeResult
from cotscope.pipeline._evaluate import Evaluator, evaluate
from cotscope.pipeline._verify import GOLD_KEYS, _choices_of, prm_input_of
from cotscope.traces import Trace
from cotscope.verify._annotate import (
    AnnotateItem,
    Annotation,
    BinaryErrorLocator,
    MisinterpretationInserter,
)
from cotscope.verify._answers import answers_match
from cotscope.verify._prm import scored_steps
from cotscope.verify._train import PRMExample

if TYPE_CHECKING:
    from cotscope._progress import Progress
    from cotscope.models import Model, RequestCache
    from cotscope.store import Store

__all__ = [
    "ANNOTATION_KIND",
    "ANNOTATION_PART",
    "AnnotateStats",
    "annotate",
    "annotate_bel",
    "annotate_mie",
    "annotation_examples",
    "annotation_item",
    "as_annotation_evaluator",
]

#: The evaluator kind of stored step labels.
ANNOTATION_KIND = "annotation"
#: The part step labels are stored under: the engines read the reasoning and the answer.
ANNOTATION_PART = "both"

Method = Literal["bel", "mie"]
Engine = BinaryErrorLocator | MisinterpretationInserter
GoldOf = Callable[[Trace], "str | None"]


def _meta_gold(trace: Trace) -> str | None:
    for k in GOLD_KEYS:
        v = trace.metadata.get(k)
        if isinstance(v, str | int | float) and not isinstance(v, bool) and str(v).strip():
            return str(v)
    return None


def annotation_item(trace: Trace, gold: str | None) -> AnnotateItem:
    """What an engine labels of a trace: the steps a PRM scores (:func:`~cotscope.verify._prm.scored_steps` of
    :func:`~cotscope.pipeline._verify.prm_input_of`), so labels and scores align step for step; the trace's own
    prompt (BEL's completions continue it); its request text as the question."""
    inp = prm_input_of(trace)
    return AnnotateItem(question=inp.question, steps=scored_steps(inp), answer=inp.answer, gold=gold,
                        messages=[m.model_dump() for m in trace.prompt], choices=_choices_of(trace.metadata),
                        key=trace.id)


def _result(a: Annotation) -> JudgeResult:
    if a.error:
        return JudgeResult(error=a.error)
    if a.parse_error:
        return JudgeResult.unparsed(a.raw or "", a.parse_error, **a.to_details(keep_steps=a.method == "mie"))
    n = len(a.labels)
    reason = "every step correct" if a.first_error is None else f"first error at step {a.first_error + 1} of {n}"
    return JudgeResult(label=None, score=sum(a.labels) / n if n else None, raw=a.raw, reason=reason,
                       details=a.to_details(keep_steps=a.method == "mie"))


def as_annotation_evaluator(engine: Engine, *, gold: Mapping[str, str] | GoldOf | None = None) -> Evaluator:
    """An annotation engine as an :class:`~cotscope.pipeline.Evaluator` of kind ``annotation``.

    Args:
        engine: a :class:`~cotscope.verify._annotate.BinaryErrorLocator` or
            :class:`~cotscope.verify._annotate.MisinterpretationInserter`.
        gold: the gold answers: by group id, or a function of the trace; default the trace metadata's ``gold``
            or ``answer`` (:data:`~cotscope.pipeline._verify.GOLD_KEYS`). A mapping or function is recorded in
            the key only as ``given``: keep one gold source per store.
    """
    if gold is None:
        gold_of: GoldOf = _meta_gold
        gold_key = "metadata:" + ",".join(GOLD_KEYS)
    elif callable(gold):
        gold_of, gold_key = gold, "given"
    else:
        table = dict(gold)

        def gold_of(t: Trace) -> str | None:
            return table.get(t.group_id or "") or _meta_gold(t)

        gold_key = "given"

    async def score(batch: Sequence[Trace], ctx: Sequence[Mapping[str, Any]] | None) -> list[JudgeResult]:
        items = [annotation_item(t, gold_of(t)) for t in batch]
        anns = await engine.annotate(items)
        return [_result(a) for a in anns]

    return Evaluator(name=engine.name, kind=ANNOTATION_KIND, part=ANNOTATION_PART, label_meaning=None,
                     config=engine.config() | {"gold": gold_key}, score=score, close=engine.aclose,
                     preferred_batch=64)


@dataclass
class AnnotateStats:
    """What one annotation pass did.

    Attributes:
        method: ``bel`` or ``mie``.
        evaluator: the engine's evaluator name.
        config_hash: its configuration hash (the store key).
        total: traces considered (``skipped + stored + errors``).
        skipped: traces already labelled under this key.
        stored: results stored (labels and parse errors).
        labelled: traces given step labels.
        all_correct: of those, labelled correct throughout.
        first_errors: how many labelled traces have their first error at each step (``"1"``, ``"2"``, ...).
        parse_errors: traces that could not be labelled (stored with the reason).
        errors: backend failures (not stored; a rerun retries them).
        not_correct: MIE only: traces left out because their final answer is wrong (MIE rewrites correct ones).
        calls: completions requested (BEL's rollouts or MIE's rewrites), cached ones included.
        cached: of those, answered by the request cache.
        completion_tokens: tokens generated for them.
        seconds: wall time.
        error_examples: a few backend failures and parse errors.
    """

    method: str
    evaluator: str
    config_hash: str
    total: int = 0
    skipped: int = 0
    stored: int = 0
    labelled: int = 0
    all_correct: int = 0
    first_errors: dict[str, int] = field(default_factory=dict)
    parse_errors: int = 0
    errors: int = 0
    not_correct: int = 0
    calls: int = 0
    cached: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    error_examples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The stats as ``cotscope verify annotate --json`` prints them."""
        d = asdict(self)
        d["seconds"] = round(self.seconds, 3)
        return d


def _engine(method: str, model: Model | str, rollouts: int, temperature: float | None, max_tokens: int | None,
            seed: int, mode: str, cache: RequestCache | bool | None, model_args: dict[str, Any] | None,
            base_url: str | None) -> Engine:
    if method == "bel":
        return BinaryErrorLocator(model, rollouts=rollouts, temperature=0.7 if temperature is None else temperature,
                                  max_tokens=max_tokens or 256, seed=seed, mode=mode, cache=cache,
                                  model_args=model_args, base_url=base_url)
    if method == "mie":
        return MisinterpretationInserter(model, temperature=0.0 if temperature is None else temperature,
                                         max_tokens=max_tokens or 1024, seed=seed, cache=cache,
                                         model_args=model_args, base_url=base_url)
    raise ConfigError(f"unknown annotation method {method!r}: expected bel or mie")


async def annotate(
    store: Store,
    method: Method | str,
    model: Model | str,
    *,
    rollouts: int = 8,
    temperature: float | None = None,
    max_tokens: int | None = None,
    seed: int = 0,
    mode: str = "prefill",
    trace_ids: Sequence[str] | None = None,
    gold: Mapping[str, str] | GoldOf | None = None,
    cache: RequestCache | bool | None = True,
    model_args: dict[str, Any] | None = None,
    base_url: str | None = None,
    batch_size: int | None = None,
    limit: int | None = None,
    progress: Progress | None = None,
    **filters: Any,
) -> AnnotateStats:
    """Label the steps of stored traces with one of URSA's engines; skip what is labelled, store what is new.

    Args:
        store: the open store.
        method: ``bel`` (binary error locating) or ``mie`` (misinterpretation insertion).
        model: BEL's policy (completes prefixes) or MIE's rewriter: a backend (the caller closes it) or a
            ``provider/model`` name (built on first use, closed here).
        rollouts: BEL's completions per checked prefix.
        temperature: sampling temperature (default 0.7 for BEL's rollouts, 0 for MIE's rewrite).
        max_tokens: budget per completion (default 256 for BEL, 1024 for MIE).
        seed: base seed.
        mode: BEL's continuation: ``prefill`` (the trace's own prompt, the prefix as the assistant's turn) or
            ``prompt`` (``verify/prompts/bel_continue.txt``).
        trace_ids: only these traces; default every trace matching ``filters``.
        gold: gold answers by group id or a function of the trace (default: metadata ``gold``/``answer``).
        cache: the request cache (true: the default one; None/false: send everything).
        model_args: backend options when ``model`` is a name.
        base_url: an OpenAI-compatible server URL when ``model`` is a name.
        batch_size: traces per batch (all searches of a batch advance together; the batch is stored at once).
        limit: label at most this many new traces.
        progress: where progress goes.
        **filters: trace filters (``model=``, ``strategy=``, ...).

    Returns:
        What was labelled, skipped and failed, and how many completions it took.

    Raises:
        ConfigError: an unknown method or bad engine settings.
    """
    engine = _engine(method, model, rollouts, temperature, max_tokens, seed, mode, cache, model_args, base_url)
    ev = as_annotation_evaluator(engine, gold=gold)
    stats = AnnotateStats(method=engine.method, evaluator=ev.name, config_hash=ev.config_hash)
    t0 = time.perf_counter()
    ids = list(trace_ids) if trace_ids is not None else None
    if engine.method == "mie":
        # MIE rewrites correct solutions only: the others are left out here rather than stored as parse errors.
        gold_of = _gold_function(gold)
        keep = []
        for t in (store.traces(ids=ids) if ids is not None else store.traces(**filters)):
            item = annotation_item(t, gold_of(t))
            if item.gold is not None and item.answer is not None and answers_match(item.answer, item.gold,
                                                                                    choices=item.choices):
                keep.append(t.id)
            else:
                stats.not_correct += 1
        ids = keep
    try:
        es = await evaluate(store, ev, trace_ids=ids, batch_size=batch_size, limit=limit, progress=progress,
                            description=f"annotate {engine.method} ({engine.model_name})",
                            **({} if ids is not None else filters))
    finally:
        await engine.aclose()
    stats.total, stats.skipped, stats.stored, stats.errors = es.total, es.skipped, es.stored, es.errors
    stats.parse_errors = es.parse_errors
    stats.error_examples = list(es.error_examples)
    stats.calls = engine.engine_stats.requests
    stats.cached = engine.engine_stats.cached
    stats.completion_tokens = engine.engine_stats.completion_tokens
    if es.run_id:
        for r in store.results(ev.name):
            if r.get("run_id") != es.run_id or r["config_hash"] != stats.config_hash:
                continue
            det = r.get("details") or {}
            if r.get("parse_error"):
                if len(stats.error_examples) < 10:
                    stats.error_examples.append(f"{r['trace_id']}: {r['parse_error']}")
                continue
            stats.labelled += 1
            fe = det.get("first_error")
            if fe is None:
                stats.all_correct += 1
            else:
                stats.first_errors[str(int(fe) + 1)] = stats.first_errors.get(str(int(fe) + 1), 0) + 1
    stats.seconds = time.perf_counter() - t0
    return stats


def _gold_function(gold: Mapping[str, str] | GoldOf | None) -> GoldOf:
    if gold is None:
        return _meta_gold
    if callable(gold):
        return gold
    table = dict(gold)
    return lambda t: table.get(t.group_id or "") or _meta_gold(t)


async def annotate_bel(store: Store, model: Model | str, **options: Any) -> AnnotateStats:
    """:func:`annotate` with binary error locating (``rollouts=8`` completions per checked prefix by default)."""
    return await annotate(store, "bel", model, **options)


async def annotate_mie(store: Store, model: Model | str, **options: Any) -> AnnotateStats:
    """:func:`annotate` with misinterpretation insertion (correct traces only)."""
    return await annotate(store, "mie", model, **options)


def annotation_examples(
    store: Store,
    method: Method | str | None = None,
    *,
    config_hash: str | None = None,
    trace_ids: Sequence[str] | None = None,
) -> tuple[list[PRMExample], dict[str, int]]:
    """Step-labelled PRM training examples from stored annotation results.

    BEL examples are the trace's own steps (as a PRM reads them) with the stored labels; MIE examples are the
    stored rewrite. The question is the trace's request text, as the scoring stage gives it to a PRM.

    Args:
        store: the store.
        method: ``bel``, ``mie`` or None for both.
        config_hash: only results under this configuration hash (a prefix is enough); default all.
        trace_ids: only results of these traces.

    Returns:
        ``(examples, skipped)``: ``skipped`` counts results left out by reason (parse errors, a label count that
        no longer matches the trace's steps).

    Raises:
        ConfigError: an unknown method.
    """
    names = {"bel": [BinaryErrorLocator.name], "mie": [MisinterpretationInserter.name],
             None: [BinaryErrorLocator.name, MisinterpretationInserter.name]}
    if method not in names:
        raise ConfigError(f"unknown annotation method {method!r}: expected bel, mie or none for both")
    wanted = set(trace_ids) if trace_ids is not None else None
    rows = []
    skipped: dict[str, int] = {}
    for name in names[method]:
        for r in store.results(name):
            if r["part"] != ANNOTATION_PART or (config_hash and not str(r["config_hash"]).startswith(config_hash)):
                continue
            if wanted is not None and r["trace_id"] not in wanted:
                continue
            if r.get("parse_error"):
                skipped["parse error"] = skipped.get("parse error", 0) + 1
                continue
            rows.append(r)
    traces = {t.id: t for t in store.traces(ids=sorted({r["trace_id"] for r in rows}))} if rows else {}
    out: list[PRMExample] = []
    for r in rows:
        det = r.get("details") or {}
        labels = det.get("step_labels")
        t = traces.get(r["trace_id"])
        if t is None or not isinstance(labels, list):
            skipped["missing trace or labels"] = skipped.get("missing trace or labels", 0) + 1
            continue
        inp = prm_input_of(t)
        if r["evaluator"] == MisinterpretationInserter.name:
            steps, answer, source = list(det.get("steps") or []), det.get("answer"), "mie"
        else:
            steps, answer, source = scored_steps(inp), inp.answer, "bel"
        if len(steps) != len(labels):
            skipped["label count"] = skipped.get("label count", 0) + 1
            continue
        out.append(PRMExample(question=inp.question, steps=steps, answer=answer, labels=[int(x) for x in labels],
                              source=source, id=t.id))
    return out, skipped
