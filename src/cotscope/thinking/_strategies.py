"""Decoding strategies that act on the reasoning: normal, ZeroThink, LessThink, MoreThink, no-think, prefill.

The exact strings come from :func:`cotscope.models.strategy_strings` (SafeChain's ``input_proc`` and
``RETHINK_STRING``; the no-think block of Thought Crime's CoT-disabled data). A strategy turns prompt
requests into model requests (an assistant-turn prefill, sometimes several rounds) and returns one output
per request whose ``text``/``reasoning``/``answer`` include the prefill where the prefill is reasoning.

``merge_prefill``, ``finish_output`` and ``strategy_strings`` live in ``cotscope.models`` (the backends
need them; ``thinking`` depends on ``models``, never the reverse) and are re-exported here.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cotscope._registry import Registry, UnknownNameError
from cotscope.errors import ConfigError
from cotscope.models._prefill import PREFILL_NOT_APPLIED, strategy_strings
from cotscope.models._protocol import GenerateRequest, Model, ModelOutput
from cotscope.traces import split_reasoning


class Strategy:
    """A decoding strategy (a :class:`cotscope.models.DecodingStrategy`).

    Subclasses override :meth:`generate` for multi-round control and then set ``single_round = False``.

    Attributes:
        name: the name recorded on every trace (``prefill:TEXT`` keeps its text).
        prefill: the assistant-turn prefix of the first request.
        template_kwargs: extra chat-template variables (e.g. ``enable_thinking=False``).
        single_round: :meth:`generate` sends exactly the prepared requests, once (so the engine can look
            all cache hits up front).
    """

    single_round: bool = True

    def __init__(self, name: str, prefill: str = "", template_kwargs: dict[str, Any] | None = None) -> None:
        self.name = name
        self.prefill = prefill
        self.template_kwargs = dict(template_kwargs or {})

    def prepare(self, request: GenerateRequest) -> GenerateRequest:
        """The model request for one prompt request: the strategy's prefill put in front of any given one."""
        update: dict[str, Any] = {"prefill": self.prefill + request.prefill}
        if self.template_kwargs:
            update["template_kwargs"] = {**self.template_kwargs, **request.template_kwargs}
        return request.model_copy(update=update)

    async def generate(self, model: Model, requests: Sequence[GenerateRequest]) -> list[ModelOutput]:
        """Generate one output per prompt request with this strategy."""
        outs = await model.generate([self.prepare(r) for r in requests])
        return [o.model_copy(update={"error": self.named_error(o.error)}) if o.error else o for o in outs]

    def provenance(self, out: ModelOutput, request_prefill: str = "") -> list[dict[str, Any]]:
        """The reasoning provenance of one output of this strategy (span dicts, see
        :mod:`cotscope.traces._provenance`): what of ``out.reasoning`` the prefill put there and what the model
        wrote (:func:`prefill_spans`)."""
        return prefill_spans(self.prefill + request_prefill, out.reasoning, out.reasoning_closed)

    def named_error(self, error: str) -> str:
        """A backend's error, with this strategy's name in front when it says the prefill did not apply.

        The backend names the model and the prefill; the strategy is known only here, and a user reads
        "strategy zerothink: prefill not applied: ..." as the pair that does not work together.
        """
        return f"strategy {self.name}: {error}" if error.startswith(PREFILL_NOT_APPLIED) else error

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def prefill_spans(prefill: str, reasoning: str, closed: bool = True,
                  injected: Sequence[tuple[int, int]] = ()) -> list[dict[str, Any]]:
    """Provenance of reasoning generated after an assistant-turn prefill.

    The prefill's own reasoning text (what its think block holds) is a ``prefill`` span at the start of the
    reasoning: the whole of it when the prefill closed its block (ZeroThink, whose empty thought gives a
    zero-length span at 0; LessThink; no-think), the start of it when the prefill left the block open
    (``prefill:<think>\nOkay.``), the model's continuation ``raw``. ``injected`` are further ranges of the
    reasoning cotscope wrote (MoreThink's rethink strings), also ``prefill``. Reasoning that never closed
    ends with a ``truncated`` marker. A prefill without reasoning (``normal``, an answer prefill) leaves all
    reasoning ``raw``.
    """
    n = len(reasoning)
    pre_split = split_reasoning(prefill) if prefill else None
    pre = 0  # characters of the reasoning that the prefill wrote
    prefilled = pre_split is not None and pre_split.kind in ("tagged", "unclosed", "close-only")
    if prefilled and pre_split is not None and reasoning.startswith(pre_split.reasoning):
        pre = len(pre_split.reasoning)
    cuts = sorted((max(0, min(s, n)), max(0, min(e, n))) for s, e in injected if e > s)
    spans: list[dict[str, Any]] = []
    if prefilled and (pre or (pre_split is not None and pre_split.reasoning_closed)):
        # An empty thought the prefill closed (ZeroThink) is a zero-length span; a bare opener is no prefill text.
        spans.append({"kind": "prefill", "start": 0, "end": pre})
    pos = pre
    for s, e in cuts:
        if s < pos:
            continue
        if s > pos:
            spans.append({"kind": "raw", "start": pos, "end": s})
        spans.append({"kind": "prefill", "start": s, "end": e})
        pos = e
    if pos < n:
        spans.append({"kind": "raw", "start": pos, "end": n})
    if not closed:
        spans.append({"kind": "truncated", "start": n, "end": n})
    return spans


@dataclass
class _Round:
    request: GenerateRequest
    text: str  # the assistant turn so far, starting with the think opener
    used: int = 0
    rounds: int = 0
    prompt_tokens: int | None = None
    latency: float = 0.0
    error: str | None = None
    last: ModelOutput | None = None
    applied: list[str] = field(default_factory=list)  # how each round's prefill went, distinct, in order
    injected: list[tuple[int, int]] = field(default_factory=list)  # rethink strings cotscope wrote, in text


class ThinkRounds(Strategy):
    """The machinery of strategies that think in rounds under a token budget, then close and answer.

    The assistant turn opens a think block; generation stops at ``</think>``. While fewer than
    ``enforce_num`` rethinks were made and thinking tokens remain within ``think_budget``, a rethink
    string is appended and generation continues. Then the block is closed (:meth:`closing`) and the answer
    is generated with :meth:`answer_tokens` tokens, continuing after the closed block. All requests of a
    batch go through each round together. Subclasses choose the settings and override the hooks
    (:meth:`closing`, :meth:`answer_tokens`, :meth:`budget_error`).

    Args:
        name: the name recorded on the traces.
        think_budget: thinking tokens in all rounds together.
        enforce_num: how many times at most a rethink string is appended (0: one think round).
        rethink: the strings one of which is appended per rethink.
    """

    single_round = False

    def __init__(self, name: str, think_budget: int, enforce_num: int, rethink: Sequence[str] = ()) -> None:
        s = strategy_strings()
        super().__init__(name, s["think_open"])
        self.think_budget = think_budget
        self.enforce_num = enforce_num
        self.rethink = list(rethink)
        self.stop = s["think_close"]
        self.close = s["think_close_block"]
        self._injected: dict[str, list[tuple[int, int]]] = {}

    def provenance(self, out: ModelOutput, request_prefill: str = "") -> list[dict[str, Any]]:
        """As :meth:`Strategy.provenance`, with the rethink strings this strategy appended as ``prefill`` spans
        (known for outputs this object generated in this process; others read as the model's)."""
        return prefill_spans(self.prefill + request_prefill, out.reasoning, out.reasoning_closed,
                             self._injected.pop(out.text, ()))

    def closing(self, st: _Round) -> str:
        """The text that closes the think block after the last think round (``</think>\\n\\n``)."""
        return self.close

    def answer_tokens(self, st: _Round) -> int:
        """The answer round's ``max_tokens``: the request's own."""
        return st.request.config.max_tokens

    def budget_error(self, request: GenerateRequest) -> str | None:
        """Why a request's settings leave this strategy no room to answer, or None (checked before sending)."""
        return None

    def _rng(self, st: _Round) -> random.Random:
        key = json.dumps([st.request.messages, st.request.sample_index, st.rounds], sort_keys=True, default=str)
        return random.Random(hashlib.blake2b(key.encode(), digest_size=8).digest())

    async def generate(self, model: Model, requests: Sequence[GenerateRequest]) -> list[ModelOutput]:
        """Run the think rounds in lockstep over the batch, then the answer round."""
        states = [_Round(request=r, text=self.prefill + r.prefill, error=self.budget_error(r)) for r in requests]

        def sub(st: _Round, prefill: str, max_tokens: int, stop: list[str]) -> GenerateRequest:
            cfg = st.request.config.model_copy(update={"max_tokens": max_tokens, "stop": stop})
            return st.request.model_copy(update={"prefill": prefill, "config": cfg})

        active = [st for st in states if st.error is None]
        while active:
            outs = await model.generate(
                [sub(st, st.text, self.think_budget - st.used, [*st.request.config.stop, self.stop]) for st in active]
            )
            nxt = []
            for st, o in zip(active, outs, strict=True):
                if not self._absorb(st, o, prefix=st.text):
                    continue
                if st.rounds < self.enforce_num and st.used < self.think_budget:
                    again = self._rng(st).choice(self.rethink)
                    st.injected.append((len(st.text), len(st.text) + len(again)))
                    st.text += again
                    st.rounds += 1
                    nxt.append(st)
            active = nxt
        live = [st for st in states if st.error is None]
        if live:
            closed = [st.text + self.closing(st) for st in live]
            outs = await model.generate(
                [sub(st, text, self.answer_tokens(st), list(st.request.config.stop))
                 for st, text in zip(live, closed, strict=True)]
            )
            for st, text, o in zip(live, closed, outs, strict=True):
                self._absorb(st, o, prefix=text, final=True)
        return [self._result(st) for st in states]

    def _absorb(self, st: _Round, o: ModelOutput, prefix: str, final: bool = False) -> bool:
        if o.error is not None:
            st.error = self.named_error(o.error)
            st.last = o
            return False
        if o.prefill_applied is not None and o.prefill_applied not in st.applied:
            st.applied.append(o.prefill_applied)
        # The raw continuation is what the backend generated after the prefill we sent.
        cont = o.text[len(prefix) :] if o.text.startswith(prefix) else o.text
        n = o.completion_tokens if o.completion_tokens is not None else max(1, len(cont) // 4)
        if st.prompt_tokens is None:
            st.prompt_tokens = o.prompt_tokens
        st.latency += o.latency_s or 0.0
        st.last = o
        if final:
            st.text = prefix + cont
        else:
            st.used += n
            # A model may emit the closing tag itself when the backend ignores stop strings.
            st.text = prefix + cont.split(self.stop, 1)[0]
        return True

    def _result(self, st: _Round) -> ModelOutput:
        if st.error is not None:
            return ModelOutput(error=st.error, model=st.last.model if st.last else None)
        s = split_reasoning(st.text)
        last = st.last or ModelOutput()
        if st.injected:
            # Where the rethink strings are in the reasoning, for provenance(); keyed by the output's text, which
            # a trace keeps (a cached or remote output misses here and reads as raw).
            body = st.text.find(s.reasoning) if s.reasoning else -1
            if body >= 0:
                self._injected[st.text] = [(a - body, b - body) for a, b in st.injected]
        return ModelOutput(
            text=st.text,
            reasoning=s.reasoning,
            answer=s.answer,
            reasoning_closed=s.reasoning_closed,
            finish_reason=last.finish_reason,
            prompt_tokens=st.prompt_tokens,
            completion_tokens=st.used + (last.completion_tokens or 0),
            model=last.model,
            cached=False,
            latency_s=st.latency,
            # One way for all rounds as a rule; "chat-continue+completions" when auto mode switched.
            prefill_applied="+".join(st.applied) or None,
        )


class MoreThink(ThinkRounds):
    """MoreThink (SafeChain): stop at ``</think>``, append a rethink string, continue, then answer.

    Generation stops at ``</think>``; while fewer than ``enforce_num`` rethinks were made and thinking
    tokens remain within ``think_budget``, one of ``Wait`` / ``Let me think again`` is appended and
    generation continues. Then the block is closed with ``</think>\\n\\n`` and the answer is generated with
    SafeChain's remaining budget: the request's ``max_tokens`` is the total, and the answer gets the total
    minus the thinking budget (minus any overshoot of it), as ``morethink_single`` in SafeChain's
    ``utils_model.py`` computes ``solution_budget = sampling_params.max_tokens - (think_budget -
    min(0, max_thinking_tokens))`` (SafeChain's defaults, ``config.py`` and ``resp_gen.py``: 16000 in all,
    10000 for thinking, so 6000 for the answer). A ``max_tokens`` that leaves no answer budget is an error
    of each request, not a silent one-token answer. The rethink string is drawn from a generator seeded
    by the request (prompt, sample index, round) so a rerun (and the request cache) sees the same requests.

    Args:
        think_budget: thinking tokens in all rounds together.
        enforce_num: how many times at most a rethink string is appended.
    """

    def __init__(self, think_budget: int | None = None, enforce_num: int | None = None) -> None:
        s = strategy_strings()
        budget = int(think_budget if think_budget is not None else s["morethink_think_budget"])
        enforce = int(enforce_num if enforce_num is not None else s["morethink_enforce_num"])
        # Non-default settings are part of the name so that their traces form groups of their own.
        default = (budget, enforce) == (s["morethink_think_budget"], s["morethink_enforce_num"])
        super().__init__("morethink" if default else f"morethink:{budget},{enforce}", budget, enforce,
                         s["morethink_rethink_strings"])

    def answer_tokens(self, st: _Round) -> int:
        """SafeChain's solution budget: ``max_tokens - think_budget - max(0, used - think_budget)``."""
        overshoot = max(0, st.used - self.think_budget)
        return max(1, st.request.config.max_tokens - self.think_budget - overshoot)

    def budget_error(self, request: GenerateRequest) -> str | None:
        """An error when ``max_tokens`` (the total) is not above the thinking budget."""
        total = request.config.max_tokens
        if total > self.think_budget:
            return None
        return (f"strategy {self.name}: max_tokens {total} is the total of thinking and answer (as in SafeChain, "
                f"16000 by default) and leaves no answer budget after the thinking budget of {self.think_budget} "
                f"tokens; raise max_tokens above {self.think_budget} or use morethink:BUDGET with a smaller budget")


class ThinkBudget(ThinkRounds):
    """Think-budget: reasoning for models that do not reason on their own (SmolLM2, most instruct models).

    The assistant turn opens ``<think>\\n``; the model writes up to ``budget`` tokens (stopping early if it
    writes ``</think>`` itself). The block is then closed (``\\n</think>\\n\\n``, without the first
    newline when the thought already ends with one) and the answer is generated in a second round that
    continues after the closed block, with what is left of the request's ``max_tokens`` (at least 1).
    The trace's reasoning is what the model wrote in the block, and ``reasoning_closed`` is true.

    Args:
        budget: thinking tokens at most; recorded in the name (``think-budget:64``).
    """

    DEFAULT_BUDGET = 64

    def __init__(self, budget: int = DEFAULT_BUDGET) -> None:
        if budget < 1:
            raise ConfigError(f"think-budget needs a budget of at least 1 token, got {budget}")
        super().__init__(f"think-budget:{budget}", budget, enforce_num=0)

    def closing(self, st: _Round) -> str:
        """``\\n</think>\\n\\n``, or ``</think>\\n\\n`` after a thought that ends its line."""
        return self.close if st.text.endswith("\n") else "\n" + self.close

    def answer_tokens(self, st: _Round) -> int:
        """What the thought left of the request's ``max_tokens``, at least 1."""
        return max(1, st.request.config.max_tokens - st.used)


StrategyFactory = Callable[[str], Strategy]

#: Strategy factories by name; a factory gets the text after ``name:`` (or ``""``).
STRATEGIES: Registry[Strategy] = Registry("strategy")


def strategy(name: str) -> Callable[[StrategyFactory], StrategyFactory]:
    """Register a strategy factory by name; the factory gets the text after ``name:`` (or ``""``)."""
    return STRATEGIES.register(name)


def strategy_names() -> list[str]:
    """Registered strategy names."""
    return STRATEGIES.names()


def _no_arg(name: str, arg: str) -> None:
    if arg:
        raise ConfigError(f"strategy {name!r} takes no argument, got {name}:{arg}")


@strategy("normal")
def _normal(arg: str) -> Strategy:
    _no_arg("normal", arg)
    return Strategy("normal")


@strategy("zerothink")
def _zerothink(arg: str) -> Strategy:
    _no_arg("zerothink", arg)
    return Strategy("zerothink", strategy_strings()["zerothink_prefill"])


@strategy("lessthink")
def _lessthink(arg: str) -> Strategy:
    _no_arg("lessthink", arg)
    return Strategy("lessthink", strategy_strings()["lessthink_prefill"])


@strategy("nothink")
def _nothink(arg: str) -> Strategy:
    _no_arg("nothink", arg)
    # Templates with a thinking switch (Qwen3) render the same blank block themselves; merge_prefill
    # then appends nothing.
    return Strategy("nothink", strategy_strings()["nothink_prefill"], {"enable_thinking": False})


@strategy("morethink")
def _morethink(arg: str) -> Strategy:
    # ``morethink`` or ``morethink:BUDGET`` or ``morethink:BUDGET,ENFORCE``.
    if not arg:
        return MoreThink()
    parts = arg.split(",")
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        raise ConfigError(f"morethink takes BUDGET[,ENFORCE_NUM] integers, got {arg!r}") from None
    if len(nums) > 2 or any(n < 0 for n in nums):
        raise ConfigError(f"morethink takes BUDGET[,ENFORCE_NUM] non-negative integers, got {arg!r}")
    return MoreThink(think_budget=nums[0], enforce_num=nums[1] if len(nums) > 1 else None)


@strategy("think-budget")
def _think_budget(arg: str) -> Strategy:
    # ``think-budget`` or ``think-budget:N`` (N thinking tokens, default 64).
    if not arg:
        return ThinkBudget()
    try:
        n = int(arg)
    except ValueError:
        raise ConfigError(f"think-budget takes a token budget N (think-budget:N), got {arg!r}") from None
    return ThinkBudget(n)


@strategy("prefill")
def _prefill(arg: str) -> Strategy:
    if not arg:
        raise ConfigError("strategy prefill needs a text: prefill:TEXT, e.g. 'prefill:<think>\\nOkay.'")
    # Shells make a literal newline awkward, so a backslash-n in the text means a newline.
    text = arg.replace("\\n", "\n")
    return Strategy(f"prefill:{text}", text)


def get_strategy(spec: str) -> Strategy:
    """Build a strategy from its name: ``normal``, ``zerothink``, ``lessthink``, ``morethink[:BUDGET]``,
    ``nothink``, ``think-budget[:N]`` or ``prefill:TEXT``.

    The strategy records what it was built from (``cotscope._registry.registry_info``).

    Raises:
        ConfigError: unknown name or bad argument (a ``ValueError``).
    """
    name, _, arg = spec.partition(":")
    key = name.strip().lower()
    if key not in STRATEGIES:
        raise UnknownNameError("strategy", spec, STRATEGIES.names())
    return STRATEGIES.get(key, arg)
