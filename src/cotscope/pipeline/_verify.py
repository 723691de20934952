"""Process verification over the store: PRM step scores through the evaluate stage, then best-of-N from them.

Scoring is not a stage of its own: :func:`as_prm_evaluator` turns a process reward model into an
:class:`~cotscope.pipeline.Evaluator`, so :func:`~cotscope.pipeline.evaluate` stores the step scores with the
traces, keyed by ``(trace, PRM, config hash, part)``, skips what is scored and resumes a killed run, exactly as
for judges and monitors. :func:`best_of_n_from_store` reads those results back, groups the traces by
``group_id`` (the K samples of one prompt), checks each sample's answer against the gold answer and hands the
pool to :func:`cotscope.verify._bestofn.best_of_n`.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from cotscope.errors import ConfigError, DataError
from cotscope.judges import JudgeResult
from cotscope.pipeline._evaluate import Evaluator
from cotscope.traces import Trace
from cotscope.verify._aggregate import RULES, aggregate
from cotscope.verify._answers import answers_match, extract_answer, normalize_answer
from cotscope.verify._bestofn import BestOfNRow, Form, Sample, best_of_n
from cotscope.verify._prm import PRMError, PRMInput, ProcessRewardModel, StepScores, scored_steps
from cotscope.verify._steps import trace_steps

if TYPE_CHECKING:
    from cotscope.store import Store
    from cotscope.verify._aggregate import Rule

__all__ = [
    "PRM_KIND",
    "PRM_PART",
    "BestOfNReport",
    "as_prm_evaluator",
    "best_of_n_from_store",
    "prm_input_of",
    "resolve_prm_key",
]

#: The evaluator kind of stored PRM results.
PRM_KIND = "prm"
#: The trace part PRM results are stored under: a PRM reads the reasoning and the answer.
PRM_PART = "both"
#: Characters of each step kept in a result's details (the step texts themselves stay in the trace).
STEP_CHARS = 160
#: Trace metadata keys holding the gold answer, in order of precedence.
GOLD_KEYS = ("gold", "answer")


def prm_input_of(trace: Trace) -> PRMInput:
    """What a PRM reads of a trace: the request (:attr:`Trace.prompt_text`), the steps and answer of
    :func:`~cotscope.verify._steps.trace_steps`, and ``metadata["image"]`` when it is a string."""
    sol = trace_steps(trace)
    image = trace.metadata.get("image")
    return PRMInput(question=trace.prompt_text, steps=list(sol.steps), answer=sol.answer,
                    image=image if isinstance(image, str) and image else None)


def _short(text: str, n: int = STEP_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _result(item: PRMInput, out: list[float] | str, rule: Rule) -> JudgeResult:
    steps = scored_steps(item)
    shown = [_short(s) for s in steps]
    if isinstance(out, str):
        if isinstance(out, PRMError) and out.transient:
            return JudgeResult(error=str(out))
        return JudgeResult.unparsed(getattr(out, "raw", None) or "", str(out), steps=shown)
    scores = [float(v) for v in out]
    notes = dict(out.notes) if isinstance(out, StepScores) else {}
    raw = notes.pop("raw", None)
    if len(scores) != len(steps):
        return JudgeResult.unparsed(raw or "", f"{len(scores)} scores for {len(steps)} steps", steps=shown)
    if any(not (0.0 <= v <= 1.0) for v in scores):
        return JudgeResult.unparsed(raw or "", f"a step score outside [0, 1]: {scores}", steps=shown)
    details: dict[str, Any] = {
        "step_scores": scores, "steps": shown, "rule": rule,
        "aggregates": {r: aggregate(scores, r) for r in RULES},
    }
    if item.answer is not None:
        details["answer"] = _short(item.answer)
    if notes:
        details["notes"] = notes
    return JudgeResult(label=None, score=details["aggregates"][rule], raw=raw, details=details,
                       reason=f"{rule} over {len(scores)} steps")


def as_prm_evaluator(prm: ProcessRewardModel, rule: Rule = "min") -> Evaluator:
    """A PRM as an :class:`~cotscope.pipeline.Evaluator` of kind ``prm`` for the evaluate stage.

    Each result has ``label = None``, ``score = aggregate(step_scores, rule)`` and ``details`` with
    ``step_scores``, ``steps`` (each step's text, shortened), ``rule`` and ``aggregates`` (the value under every
    rule). An item the PRM could not score is stored as a parse error (no score), except a transient backend
    failure, which is not stored so that a rerun retries it.

    The rule is not part of the store key: the key identifies the PRM's step scores, from which every rule's
    value is stored; ``score`` holds the value under the rule of the run that stored the result (``details.rule``
    says which) and :func:`best_of_n_from_store` recomputes any rule from the step scores.

    Args:
        prm: the process reward model.
        rule: the aggregation stored as ``score``: one of :data:`~cotscope.verify._aggregate.RULES`.

    Raises:
        ConfigError: an unknown rule.
    """
    if rule not in RULES:
        raise ConfigError(f"unknown aggregation rule {rule!r}: expected one of {', '.join(RULES)}")

    async def score(batch: Sequence[Trace], ctx: Sequence[Mapping[str, Any]] | None) -> list[JudgeResult]:
        items = [prm_input_of(t) for t in batch]
        outs = await prm.score(items)
        if len(outs) != len(items):
            raise RuntimeError(f"PRM {prm.name} returned {len(outs)} results for {len(items)} items")
        return [_result(it, o, rule) for it, o in zip(items, outs, strict=True)]

    return Evaluator(name=prm.name, kind=PRM_KIND, part=PRM_PART, label_meaning=None, config=prm.config(),
                     score=score, close=prm.aclose, preferred_batch=prm.preferred_batch)


# -- best-of-N from the store -----------------------------------------------------------------------------------
def resolve_prm_key(store: Store, prm: str | Evaluator | ProcessRewardModel) -> tuple[str, str]:
    """``(evaluator name, config hash)`` of stored PRM results.

    Args:
        store: the store.
        prm: an evaluator or PRM (its own key), or a string: ``NAME`` (the one PRM key of that name in the store)
            or ``NAME@HASH`` (``HASH`` may be a prefix of the config hash).

    Raises:
        ConfigError: no stored PRM results under that name, or several keys for a bare name.
    """
    if isinstance(prm, Evaluator):
        return prm.name, prm.config_hash
    if not isinstance(prm, str):
        ev = as_prm_evaluator(prm)
        return ev.name, ev.config_hash
    name, _, prefix = prm.partition("@")
    keys = [e for e in store.evaluators() if e["kind"] == PRM_KIND and e["evaluator"] == name
            and str(e["config_hash"]).startswith(prefix)]
    if not keys:
        known = sorted({f"{e['evaluator']}@{str(e['config_hash'])[:8]}" for e in store.evaluators()
                        if e["kind"] == PRM_KIND})
        raise ConfigError(f"no stored PRM results for {prm!r}: run `cotscope verify score` first"
                          + (f" (stored PRMs: {', '.join(known)})" if known else ""))
    if len(keys) > 1:
        listed = "; ".join(f"{name}@{str(e['config_hash'])[:8]} ({(e['config'] or {}).get('model', '?')})"
                           for e in keys)
        raise ConfigError(f"several PRM keys named {name!r}: {listed}; name one as NAME@HASH")
    return name, str(keys[0]["config_hash"])


@dataclass
class BestOfNReport:
    """Best-of-N over the stored samples and what went into the pool.

    Attributes:
        rows: one row per N and method (PRM rules and baselines) with accuracy and CI.
        evaluator: the PRM evaluator name.
        config_hash: its config hash.
        groups: problems in the pool: groups with a gold answer and at least N scored samples, a group split by
            image and gold answer when its traces differ in them.
        samples: samples in the pool.
        unscored: samples left out because the PRM has no result for them (not scored yet).
        errors: samples left out because the PRM could not score them (stored parse errors).
        no_gold: groups left out because no gold answer was given or found in their traces' metadata.
        no_answer: pooled samples from which no answer could be extracted (they count as wrong).
        short: problems left out because fewer than the largest N of their samples are scored.
        sizes: the number of pooled samples per problem (min, max).
    """

    rows: list[BestOfNRow]
    evaluator: str
    config_hash: str
    groups: int = 0
    samples: int = 0
    unscored: int = 0
    errors: int = 0
    no_gold: int = 0
    no_answer: int = 0
    short: int = 0
    sizes: tuple[int, int] = (0, 0)
    error_examples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The report as ``cotscope verify best-of-n --json`` prints it."""
        d = asdict(self)  # the rows become dicts too
        d["sizes"] = list(self.sizes)
        return d


def _gold_of(meta: Mapping[str, Any]) -> str | None:
    for k in GOLD_KEYS:
        v = meta.get(k)
        if isinstance(v, str | int | float) and not isinstance(v, bool) and str(v).strip():
            return str(v)
    return None


def _choices_of(meta: Mapping[str, Any]) -> list[str] | None:
    """A multiple-choice question's options: a list, or the list's text (URSA's CSV-born ``"['3', '4']"``)."""
    v = meta.get("choices")
    if isinstance(v, str) and v.strip().startswith("["):
        try:
            v = ast.literal_eval(v.strip())
        except (ValueError, SyntaxError):
            return None
    if isinstance(v, list | tuple) and v and all(isinstance(c, str | int | float) for c in v):
        return [str(c) for c in v]
    return None


def best_of_n_from_store(
    store: Store,
    prm: str | Evaluator | ProcessRewardModel,
    *,
    gold: Mapping[str, str] | None = None,
    ns: Sequence[int] = (1, 2, 4, 8, 16),
    rules: Sequence[Rule] = ("min", "mean"),
    baselines: Sequence[str] = ("majority", "random"),
    resamples: int = 1000,
    seed: int = 0,
    form: Form = "resampled",
    **filters: Any,
) -> BestOfNReport:
    """Best-of-N accuracy of the stored samples, chosen by stored PRM step scores, against the baselines.

    The pool holds one problem per ``group_id`` (the K samples of one prompt) among the traces matching
    ``filters``, split by ``metadata["image"]`` and gold answer where a group's traces differ in them (MathVista
    asks one question of several figures); a problem with fewer scored samples than the largest N is left out and
    counted (``short``), so that every row averages the same problems. A sample's answer is
    ``extract_answer(trace.answer)``; it is correct when ``answers_match(answer, gold, choices)`` with the problem's
    gold answer (``gold[group_id]``, else the trace metadata's ``gold`` or ``answer``, as ``cotscope ingest`` keeps
    a record's ``answer`` next to its response) and ``metadata["choices"]`` when present. Step scores come from
    the PRM's stored results; samples without a result or with a stored error are left out and counted, never
    given a default score.

    Args:
        store: the store.
        prm: whose results to read: see :func:`resolve_prm_key`.
        gold: gold answers by group id (override the metadata).
        ns: the N values.
        rules: aggregation rules to select by.
        baselines: ``majority`` (self-consistency) and/or ``random``.
        resamples: bootstrap replicates over problems behind the resampled form's intervals (the accuracy itself is
            exact: the mean over all draws of N).
        seed: random seed.
        form: ``resampled`` (N drawn from each problem's pool, repeated) or ``paper`` (the first N samples).
        **filters: trace filters (``model=``, ``strategy=``, ``source_format=``, ...).

    Raises:
        ConfigError: unknown rule or PRM key.
        DataError: no problem has both a gold answer and a scored sample.
    """
    for rule in rules:
        if rule not in RULES:
            raise ConfigError(f"unknown aggregation rule {rule!r}: expected one of {', '.join(RULES)}")
    name, chash = resolve_prm_key(store, prm)
    scores: dict[str, list[float] | None] = {}
    rep = BestOfNReport(rows=[], evaluator=name, config_hash=chash)
    for r in store.results(name):
        if r["config_hash"] != chash or r["part"] != PRM_PART:
            continue
        det = r.get("details") or {}
        ss = det.get("step_scores") if isinstance(det, dict) else None
        if r.get("parse_error") or not isinstance(ss, list):
            scores[r["trace_id"]] = None
            if len(rep.error_examples) < 5:
                rep.error_examples.append(f"{r['trace_id']}: {r.get('parse_error')}")
        else:
            scores[r["trace_id"]] = [float(v) for v in ss]
    # A problem is a group (the K samples of one prompt) and, within it, one image and one gold answer: MathVista
    # asks the same question of different figures, and such rows share a prompt, so a group id alone would merge
    # problems whose gold answers differ.
    problems: dict[tuple[str, str, str], list[tuple[int, str, Sample]]] = {}
    no_gold: set[str] = set()
    for row in store.iter_rows(**filters):
        gid = str(row["group_id"])
        meta = row.get("metadata") or {}
        g = (gold or {}).get(gid) or _gold_of(meta)
        if g is None:
            no_gold.add(gid)
            continue
        image = meta.get("image") if isinstance(meta.get("image"), str) else ""
        tid = row["id"]
        if tid not in scores:
            rep.unscored += 1
            continue
        ss = scores[tid]
        if ss is None:
            rep.errors += 1
            continue
        pred = extract_answer(row.get("answer") or "")
        if not pred:
            rep.no_answer += 1
        choices = _choices_of(meta)
        ok = bool(pred) and answers_match(pred, g, choices=choices)
        # Majority vote groups answers by normalize_answer; with choices a letter and its option's text are one.
        key = normalize_answer(pred, choices=choices) if (pred and choices) else pred
        problems.setdefault((str(gid), str(image), str(g)), []).append(
            (int(row.get("sample_index") or 0), tid, Sample(answer=key, correct=bool(ok), step_scores=ss)))
    rep.no_gold = len(no_gold - {k[0] for k in problems})
    need = max(ns) if ns else 1
    # Samples in sample order (the paper form takes the first N), whatever order the store returns them in.
    usable = [[smp for _, _, smp in sorted(v, key=lambda x: (x[0], x[1]))] for v in problems.values()]
    pool = [v for v in usable if len(v) >= need]
    rep.short = len(usable) - len(pool)
    if not pool:
        most = max((len(v) for v in usable), default=0)
        raise DataError(
            f"no problem to select among for PRM {name}@{chash[:8]}: {rep.no_gold} group(s) without a gold answer "
            f"(metadata gold/answer), {rep.unscored} unscored and {rep.errors} unscorable sample(s), "
            f"{rep.short} problem(s) with fewer than N={need} scored samples (the largest has {most})")
    rep.groups = len(pool)
    rep.samples = sum(len(p) for p in pool)
    rep.sizes = (min(len(p) for p in pool), max(len(p) for p in pool))
    rep.rows = best_of_n(pool, ns=list(ns), rules=list(rules), baselines=list(baselines), resamples=resamples,
                         seed=seed, form=form)
    return rep
