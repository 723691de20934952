"""URSA's two process-annotation engines: binary error locating (BEL) and misinterpretation insertion (MIE).

Both turn solutions into step labels (``1`` correct, ``0`` incorrect) for training a process reward model.
Neither needs a human: BEL asks the policy model itself whether the right answer is still reachable from a
prefix of a solution; MIE asks an LLM to rewrite a correct solution with a misreading of the problem.

**Binary error locating** (URSA, arXiv:2501.04686, the logic view of its dual-view data, after the
Monte-Carlo labelling of Math-Shepherd and the binary search of OmegaPRM). A prefix of ``k`` steps is
*correct* when at least one of ``rollouts`` sampled completions from it reaches the gold answer. A solution
whose final answer is right is labelled correct throughout, with no model call. For a wrong solution, prefix
``0`` (the question alone) is taken as correct and prefix ``n`` (the whole solution) as incorrect, and a binary
search over ``k`` finds the first step ``e`` whose prefix ``1..e`` no completion rescues: steps before ``e`` are
labelled ``1``, ``e`` and every later step ``0``. The search assumes that correctness of prefixes is monotone
(once lost, the answer stays out of reach), which Monte Carlo can violate; it checks ``ceil(log2 n)`` prefixes
at most, each with ``rollouts`` completions, so a wrong ``n``-step solution costs at most
``ceil(log2 n) * rollouts`` model calls (8 steps, 8 rollouts: 24 calls instead of 56 for checking every prefix).
The searches of all solutions of a batch advance together, one round per bisection, so each round's completions
go to the backend as one engine run (batches, concurrency, request cache).

Completions continue the solution in the policy's own words: by default the request is the solution's original
prompt with the prefix, in URSA's format, as the assistant-turn prefill, followed by ``Step k+1:``
(``mode="prefill"``); ``mode="prompt"`` instead sends ``prompts/bel_continue.txt`` (the question, the prefix,
and a request to continue from ``Step k+1``) for backends that cannot continue a prefill. Completion ``r`` of a
prefix uses ``sample_index=r`` and ``seed + r``, so a rerun meets the request cache.

**Misinterpretation insertion** (URSA's perception view): an LLM rewrites a *correct* solution from a chosen
step on with a misreading of the problem, then continues consistently (``prompts/mie_rewrite.txt``). The step
where the rewrite first departs from the original is the insertion point; steps before it are labelled ``1``,
from it on ``0``. A rewrite that has no ``Step k:`` lines or no final answer, changes nothing, only appends steps
to the original ones, departs before the chosen step, or still reaches the gold answer is rejected with a reason
(a parse error, never a label). The labelled solution is the rewrite, so its
steps are kept with the labels.

The engines work on :class:`AnnotateItem` objects and draw nothing; the store-level stage
(:func:`cotscope.pipeline.annotate`) runs them over stored traces through the evaluate stage, so results are
keyed by ``(trace, engine, config hash)`` and a rerun skips what is stored.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from cotscope.errors import ConfigError
from cotscope.judges._prompts import load_prompt, prompt_hash, render
from cotscope.models import Engine, EngineStats, GenerateConfig, GenerateRequest, Model, ModelOutput, RequestCache
from cotscope.verify._answers import answers_match, extract_answer
from cotscope.verify._steps import format_steps, split_steps

__all__ = [
    "BEL_TEMPLATE",
    "MIE_TEMPLATE",
    "AnnotateItem",
    "Annotation",
    "BinaryErrorLocator",
    "MisinterpretationInserter",
    "bel_max_calls",
    "labels_from_first_error",
]

_PACKAGE = "cotscope.verify"
#: The continuation prompt of BEL's ``prompt`` mode (``verify/prompts``).
BEL_TEMPLATE = "bel_continue.txt"
#: The rewrite prompt of MIE (``verify/prompts``).
MIE_TEMPLATE = "mie_rewrite.txt"

ContinuationMode = Literal["prefill", "prompt"]


@dataclass
class AnnotateItem:
    """One solution to label.

    Attributes:
        question: the problem text (what MIE's prompt and BEL's ``prompt`` mode show).
        steps: the solution's steps, without ``Step k:`` headers.
        answer: the solution's final answer, or None.
        gold: the gold answer.
        messages: the prompt the solution answered (BEL's ``prefill`` mode continues it); default: the question as
            one user turn.
        choices: a multiple-choice question's options, for answer checking.
        key: an id (a trace id): seeds MIE's choice of the insertion step.
    """

    question: str
    steps: list[str]
    answer: str | None
    gold: str | None
    messages: list[dict[str, Any]] | None = None
    choices: list[str] | None = None
    key: str = ""


@dataclass
class Annotation:
    """The labels of one solution, or why it has none.

    Attributes:
        method: ``bel`` or ``mie``.
        labels: one label per step (``1`` correct, ``0`` incorrect); empty when there is an error.
        first_error: the index (from 0) of the first incorrect step, None when every step is correct.
        steps: the labelled steps (MIE: the rewrite's; BEL: the solution's own).
        answer: the labelled solution's final answer.
        final_correct: whether the labelled solution's final answer matches the gold answer.
        calls: completions requested for this solution (cached ones included).
        cached: how many of them came from the request cache.
        checks: BEL's prefix checks in order: ``{"prefix": k, "reached": hits, "rollouts": r}``.
        inserted_at: MIE's requested insertion step (from 0).
        raw: MIE's raw rewrite.
        parse_error: why the solution cannot be labelled (stored; a rerun would not change it).
        error: a backend failure (not stored, so that a rerun retries it).
    """

    method: str
    labels: list[int] = field(default_factory=list)
    first_error: int | None = None
    steps: list[str] = field(default_factory=list)
    answer: str | None = None
    final_correct: bool | None = None
    calls: int = 0
    cached: int = 0
    checks: list[dict[str, int]] = field(default_factory=list)
    inserted_at: int | None = None
    raw: str | None = None
    parse_error: str | None = None
    error: str | None = None

    def to_details(self, *, keep_steps: bool) -> dict[str, Any]:
        """The result details stored with a trace (``step_labels`` and ``first_error`` first)."""
        d = asdict(self)
        d["step_labels"] = d.pop("labels")
        for k in ("parse_error", "error", "raw"):
            d.pop(k)
        if not keep_steps:
            d.pop("steps")
            d["n_steps"] = len(self.labels)
        return {k: v for k, v in d.items() if v is not None and v != []}


def labels_from_first_error(n: int, first_error: int | None) -> list[int]:
    """``n`` step labels: ``1`` before the first error, ``0`` from it on (all ``1`` when there is none)."""
    if first_error is None:
        return [1] * n
    if not 0 <= first_error < n:
        raise ValueError(f"first error {first_error} outside 0..{n - 1}")
    return [1] * first_error + [0] * (n - first_error)


def bel_max_calls(n_steps: int, rollouts: int) -> int:
    """The most completions BEL requests for a wrong ``n_steps``-step solution: ``ceil(log2 n) * rollouts``."""
    return math.ceil(math.log2(n_steps)) * rollouts if n_steps > 1 else 0


def _check_mode(mode: str) -> ContinuationMode:
    if mode not in ("prefill", "prompt"):
        raise ConfigError(f"continuation mode must be prefill or prompt, got {mode!r}")
    return "prefill" if mode == "prefill" else "prompt"


class _EngineUser:
    """Shared plumbing: a backend built on first use, an engine with the request cache, summed stats."""

    def __init__(self, model: Model | str, model_args: dict[str, Any] | None, cache: RequestCache | bool | None,
                 base_url: str | None) -> None:
        self._given = model if not isinstance(model, str) else None
        self.model_name = model if isinstance(model, str) else str(getattr(model, "name", type(model).__name__))
        self.model_args = dict(model_args or {})
        self.base_url = base_url
        self._backend: Model | None = self._given
        self._owned = False
        self.cache: RequestCache | None = RequestCache() if cache is True else (cache or None)
        self.engine_stats = EngineStats()

    def backend(self) -> Model:
        if self._backend is None:
            from cotscope.models import get_model

            self._backend = get_model(self.model_name, base_url=self.base_url, **self.model_args)
            self._owned = True
        return self._backend

    async def _run(self, requests: Sequence[GenerateRequest]) -> list[ModelOutput]:
        if not requests:
            return []
        engine = Engine(self.backend(), None, self.cache)
        outs = await engine.run(requests)
        s, t = self.engine_stats, engine.stats
        s.requests += t.requests
        s.completed += t.completed
        s.cached += t.cached
        s.errors += t.errors
        s.prompt_tokens += t.prompt_tokens
        s.completion_tokens += t.completion_tokens
        s.seconds += t.seconds
        for k, v in t.error_causes.items():
            s.error_causes[k] = s.error_causes.get(k, 0) + v
        return outs

    async def aclose(self) -> None:
        """Close a backend built here (a backend passed in belongs to the caller)."""
        if self._owned and self._backend is not None:
            await self._backend.aclose()
            self._backend = None
            self._owned = False


def _reaches(out: ModelOutput, gold: str, choices: list[str] | None) -> bool:
    text = out.text or out.answer
    pred = extract_answer(text)
    return bool(pred) and answers_match(pred, gold, choices=choices)


class BinaryErrorLocator(_EngineUser):
    """URSA's binary error locating engine: Monte-Carlo completions from prefixes, binary search for the first error.

    Args:
        model: the policy that completes prefixes: a backend, or a ``provider/model`` name built on first use.
        rollouts: completions per checked prefix.
        temperature: sampling temperature of the completions.
        max_tokens: budget per completion.
        seed: base seed; completion ``r`` uses ``seed + r``.
        mode: ``prefill`` (continue the original prompt's assistant turn) or ``prompt`` (``bel_continue.txt``).
        trust_correct: a solution whose final answer is right is labelled correct without rollouts (URSA labels
            the steps of wrong solutions); false runs the search on every solution (a right one then costs
            nothing either, because its full prefix reaches the answer by definition: it is labelled ``1``
            throughout).
        cache: the request cache: a cache, true for the default one, or None/false for none.
        model_args: backend options when ``model`` is a name.
        base_url: an OpenAI-compatible server URL when ``model`` is a name.
    """

    name = "ursa-bel"
    method = "bel"

    def __init__(
        self,
        model: Model | str,
        *,
        rollouts: int = 8,
        temperature: float = 0.7,
        max_tokens: int = 256,
        seed: int = 0,
        mode: str = "prefill",
        trust_correct: bool = True,
        cache: RequestCache | bool | None = True,
        model_args: dict[str, Any] | None = None,
        base_url: str | None = None,
    ) -> None:
        if rollouts < 1:
            raise ConfigError(f"rollouts must be at least 1, got {rollouts}")
        super().__init__(model, model_args, cache, base_url)
        self.rollouts = int(rollouts)
        self.temperature = float(temperature)
        self.max_tokens = int(max_tokens)
        self.seed = int(seed)
        self.mode = _check_mode(mode)
        self.trust_correct = bool(trust_correct)

    def config(self) -> dict[str, Any]:
        """Everything that changes the labels: hashed into the store key."""
        return {"method": self.method, "model": self.model_name, "rollouts": self.rollouts,
                "temperature": self.temperature, "max_tokens": self.max_tokens, "seed": self.seed,
                "mode": self.mode, "trust_correct": self.trust_correct,
                "template": prompt_hash(BEL_TEMPLATE, package=_PACKAGE) if self.mode == "prompt" else None}

    def requests(self, item: AnnotateItem, k: int) -> list[GenerateRequest]:
        """The ``rollouts`` completion requests from the prefix of the first ``k`` steps of ``item``."""
        prefix = format_steps(item.steps[:k], None)
        nxt = f"Step {k + 1}:"
        if self.mode == "prefill":
            messages = item.messages or [{"role": "user", "content": item.question}]
            prefill = (prefix + "\n" if prefix else "") + nxt
        else:
            text = render(load_prompt(BEL_TEMPLATE, _PACKAGE), question=item.question,
                          prefix=prefix or "(no steps yet)", next_step=str(k + 1))
            messages, prefill = [{"role": "user", "content": text}], ""
        return [GenerateRequest(messages=messages, prefill=prefill, sample_index=r,
                                config=GenerateConfig(temperature=self.temperature, max_tokens=self.max_tokens,
                                                      seed=self.seed + r))
                for r in range(self.rollouts)]

    async def annotate(self, items: Sequence[AnnotateItem]) -> list[Annotation]:
        """Label every item's steps; one annotation per item, in order."""
        res = [Annotation(method=self.method, steps=list(it.steps), answer=it.answer) for it in items]
        bounds: dict[int, list[int]] = {}  # item -> [lo, hi]: prefix lo reaches the answer, prefix hi does not
        for i, it in enumerate(items):
            a = res[i]
            if not it.steps:
                a.parse_error = "no steps to label"
                continue
            if it.gold is None or not str(it.gold).strip():
                a.parse_error = "no gold answer"
                continue
            right = it.answer is not None and bool(it.answer.strip()) and answers_match(
                it.answer, it.gold, choices=it.choices)
            a.final_correct = right
            if right:
                # A right final answer: the whole prefix reaches the gold answer, so no step is wrong.
                a.labels, a.first_error = [1] * len(it.steps), None
                continue
            bounds[i] = [0, len(it.steps)]
        while True:
            todo = [(i, (lo + hi) // 2) for i, (lo, hi) in bounds.items() if hi - lo > 1]
            if not todo:
                break
            reqs: list[GenerateRequest] = []
            for i, k in todo:
                reqs += self.requests(items[i], k)
            outs = await self._run(reqs)
            for j, (i, k) in enumerate(todo):
                chunk = outs[j * self.rollouts : (j + 1) * self.rollouts]
                a = res[i]
                a.calls += len(chunk)
                a.cached += sum(bool(o.cached) for o in chunk)
                failed = next((o.error for o in chunk if o.error), None)
                if failed:
                    a.error = f"completion from prefix {k} failed: {failed}"
                    del bounds[i]
                    continue
                gold = str(items[i].gold)
                hits = sum(_reaches(o, gold, items[i].choices) for o in chunk)
                a.checks.append({"prefix": k, "reached": hits, "rollouts": len(chunk)})
                if hits:
                    bounds[i][0] = k
                else:
                    bounds[i][1] = k
        for i, (_, hi) in bounds.items():
            a = res[i]
            a.first_error = hi - 1
            a.labels = labels_from_first_error(len(items[i].steps), hi - 1)
        return res


def _norm(s: str) -> str:
    return " ".join(s.split()).lower()


class MisinterpretationInserter(_EngineUser):
    """URSA's misinterpretation insertion engine: an LLM rewrites a correct solution with a misreading.

    The insertion step is drawn (seeded by the item's key) among the solution's steps; the rewrite is asked to
    keep the steps before it verbatim. The labels come from where the rewrite actually departs from the original
    (compared with whitespace and case ignored), which must not be before the requested step.

    Args:
        model: the rewriting LLM: a backend or a ``provider/model`` name built on first use.
        temperature: sampling temperature of the rewrite.
        max_tokens: budget of the rewrite.
        seed: seeds the choice of the insertion step and the request.
        first_step: the earliest step (from 0) a misreading may be inserted at.
        cache: the request cache: a cache, true for the default one, or None/false for none.
        model_args: backend options when ``model`` is a name.
        base_url: an OpenAI-compatible server URL when ``model`` is a name.
    """

    name = "ursa-mie"
    method = "mie"

    def __init__(
        self,
        model: Model | str,
        *,
        temperature: float = 0.0,
        max_tokens: int = 1024,
        seed: int = 0,
        first_step: int = 0,
        cache: RequestCache | bool | None = True,
        model_args: dict[str, Any] | None = None,
        base_url: str | None = None,
    ) -> None:
        super().__init__(model, model_args, cache, base_url)
        self.temperature = float(temperature)
        self.max_tokens = int(max_tokens)
        self.seed = int(seed)
        if first_step < 0:
            raise ConfigError(f"first_step must be >= 0, got {first_step}")
        self.first_step = int(first_step)

    def config(self) -> dict[str, Any]:
        """Everything that changes the labels: hashed into the store key."""
        return {"method": self.method, "model": self.model_name, "temperature": self.temperature,
                "max_tokens": self.max_tokens, "seed": self.seed, "first_step": self.first_step,
                "template": prompt_hash(MIE_TEMPLATE, package=_PACKAGE), "checks": 2}

    def insertion_step(self, item: AnnotateItem) -> int:
        """Where the misreading is asked for (from 0): seeded by the item's key (or its question)."""
        lo = min(self.first_step, len(item.steps) - 1)
        h = hashlib.md5(f"{self.seed}\x1f{item.key or item.question}".encode(), usedforsecurity=False).hexdigest()
        return random.Random(int(h[:12], 16)).randint(lo, len(item.steps) - 1)

    def request(self, item: AnnotateItem, at: int) -> GenerateRequest:
        """The rewrite request for inserting the misreading at step ``at`` (from 0)."""
        text = render(load_prompt(MIE_TEMPLATE, _PACKAGE), question=item.question,
                      solution=format_steps(item.steps, item.answer), step=str(at + 1), keep=str(at))
        return GenerateRequest(messages=[{"role": "user", "content": text}],
                               config=GenerateConfig(temperature=self.temperature, max_tokens=self.max_tokens,
                                                     seed=self.seed))

    async def annotate(self, items: Sequence[AnnotateItem]) -> list[Annotation]:
        """Rewrite and label every item; items whose solution is not correct get a parse error."""
        res = [Annotation(method=self.method) for _ in items]
        todo: list[tuple[int, int]] = []
        for i, it in enumerate(items):
            a = res[i]
            if not it.steps:
                a.parse_error = "no steps to rewrite"
            elif it.gold is None or not str(it.gold).strip():
                a.parse_error = "no gold answer"
            elif it.answer is None or not answers_match(it.answer, it.gold, choices=it.choices):
                a.parse_error = "not a correct solution: misinterpretation insertion rewrites correct solutions"
            else:
                a.inserted_at = self.insertion_step(it)
                todo.append((i, a.inserted_at))
        outs = await self._run([self.request(items[i], at) for i, at in todo])
        for (i, at), out in zip(todo, outs, strict=True):
            self._label(items[i], at, out, res[i])
        return res

    def _label(self, item: AnnotateItem, at: int, out: ModelOutput, a: Annotation) -> None:
        a.calls, a.cached = 1, int(bool(out.cached))
        if out.error:
            a.error = out.error
            return
        raw = out.answer or out.text
        a.raw = raw
        sol = split_steps(raw)
        if sol.fmt != "ursa" or not sol.steps:
            a.parse_error = "the rewrite has no Step k: lines"
            return
        if sol.answer is None or not sol.answer.strip():
            a.parse_error = "the rewrite states no final answer (†Answer:)"
            return
        orig = [_norm(s) for s in item.steps]
        new = [_norm(s) for s in sol.steps]
        depart = next((j for j in range(len(new)) if j >= len(orig) or new[j] != orig[j]), None)
        if depart is None:
            a.parse_error = "the rewrite repeats the original solution" if len(new) == len(orig) else \
                "the rewrite only drops steps of the original"
            return
        if depart >= len(orig):
            a.parse_error = "the rewrite keeps every original step and only appends steps: no misreading inserted"
            return
        if depart < at:
            a.parse_error = f"the rewrite departs from the original at step {depart + 1}, before step {at + 1}"
            return
        a.steps, a.answer = sol.steps, sol.answer
        a.final_correct = sol.answer is not None and answers_match(sol.answer, str(item.gold), choices=item.choices)
        if a.final_correct:
            a.parse_error = "the rewrite still reaches the gold answer"
            return
        a.first_error = depart
        a.labels = labels_from_first_error(len(sol.steps), depart)


