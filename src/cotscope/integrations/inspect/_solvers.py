"""cotscope's thinking strategies as Inspect solvers: ZeroThink, LessThink, MoreThink, no-think, think-budget and
any prefill, on the assistant turn; and DeceptionBench's belief phase.

Each solver runs the strategy of :mod:`cotscope.thinking` itself (one implementation) over Inspect's model through
:class:`~cotscope.integrations.inspect._model.InspectModel`: the prefill is sent as a final assistant message for
the provider to continue, MoreThink's and think-budget's rounds are model calls of the sample's transcript, and the
sample ends with one assistant message holding the whole turn (``<think>`` block, then the answer), so the trace
keeps the prefill where it is reasoning and ``reasoning_closed`` where the block never closed. The strategy's name
goes into the sample's ``store`` (``cotscope:strategy``): ``cotscope ingest`` records it on the trace.

Whether a provider continues a final assistant message decides whether the strategies mean anything with it; see
docs/inspect.md (vLLM, SGLang, SageMaker, Anthropic without extended thinking: yes; OpenAI's API, Inspect's ``hf``:
no).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from inspect_ai.solver import Generate, Solver, TaskState, solver

from cotscope.integrations.inspect._model import InspectModel
from cotscope.models import GenerateConfig, GenerateRequest
from cotscope.thinking import get_strategy
from cotscope.traces._read import INSPECT_STRATEGY_KEY

if TYPE_CHECKING:
    from inspect_ai.model import Model

#: The key of a sample's ``store`` holding the per-sample context judges read (DeceptionBench's ``belief``).
CONTEXT_KEY = "cotscope:context"

#: The generation budget when neither the task, the command line nor the model sets ``max_tokens``.
DEFAULT_MAX_TOKENS = 1024


def _max_tokens(model: Model) -> int:
    from inspect_ai.model._generate_config import active_generate_config

    return active_generate_config().max_tokens or model.config.max_tokens or DEFAULT_MAX_TOKENS


def _text_messages(state: TaskState) -> list[dict[str, Any]]:
    # What seeds a strategy's choices (MoreThink's rethink string): the conversation's text, as cotscope's own
    # requests carry it.
    return [{"role": m.role, "content": m.text} for m in state.messages]


@solver(name="thinking_strategy")
def thinking_strategy(strategy: str = "normal") -> Solver:
    """Generate with a cotscope decoding strategy on the assistant turn.

    Args:
        strategy: ``normal``, ``zerothink``, ``lessthink``, ``morethink[:BUDGET[,ENFORCE]]``, ``nothink``,
            ``think-budget[:N]`` or ``prefill:TEXT`` (``\\n`` in TEXT is a newline), as ``cotscope generate
            --strategy`` takes them.

    Raises:
        ConfigError: an unknown strategy or a bad argument (when the solver is built).
    """
    strat = get_strategy(strategy)

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        from inspect_ai.model import ChatMessageAssistant, get_model

        state.store.set(INSPECT_STRATEGY_KEY, strat.name)
        if not strat.prefill and not strat.template_kwargs and strat.single_round:
            return await generate(state)  # normal decoding: Inspect's own generate (tools, limits, caching)
        model = get_model()
        backend = InspectModel(model, state.messages)
        request = GenerateRequest(messages=_text_messages(state), sample_index=state.epoch - 1,
                                  config=GenerateConfig(max_tokens=_max_tokens(model)))
        [out] = await strat.generate(backend, [request])
        if out.error is not None:
            raise RuntimeError(f"strategy {strat.name}: {out.error}")
        message = ChatMessageAssistant(content=out.text, model=out.model, source="generate")
        state.messages.append(message)
        if backend.last is not None and backend.last.choices:
            # The sample's output is the whole turn: the prefill and every round, not the last continuation.
            output = backend.last.model_copy(deep=True)
            output.choices[0].message = message
            output.completion = out.text
            if out.finish_reason == "length":
                output.choices[0].stop_reason = "max_tokens"
            state.output = output
        return state

    return solve


@solver
def zerothink() -> Solver:
    """ZeroThink (SafeChain): an empty closed think block prefilled, so the model answers without thinking."""
    return thinking_strategy("zerothink")


@solver
def lessthink() -> Solver:
    """LessThink (SafeChain): a short fake thought prefilled and closed, then the answer."""
    return thinking_strategy("lessthink")


@solver
def nothink() -> Solver:
    """No-think: the blank ``<think>\\n\\n</think>`` block of CoT-disabled fine-tuning (``enable_thinking=False``
    for templates with a switch)."""
    return thinking_strategy("nothink")


@solver
def morethink(think_budget: int | None = None, enforce_num: int | None = None) -> Solver:
    """MoreThink (SafeChain): stop at ``</think>``, append ``Wait`` / ``Let me think again``, continue, then answer
    with what the thinking budget left of ``max_tokens`` (SafeChain's 16000 = 10000 + 6000 by default).

    Args:
        think_budget: thinking tokens in all rounds (default SafeChain's 10000).
        enforce_num: rethinks at most (default SafeChain's).
    """
    arg = "" if think_budget is None else f":{think_budget}" + ("" if enforce_num is None else f",{enforce_num}")
    return thinking_strategy("morethink" + arg)


@solver
def think_budget(budget: int = 64) -> Solver:
    """Think-budget: open ``<think>``, let the model think up to ``budget`` tokens, close the block and answer
    (reasoning for models that do not reason on their own)."""
    return thinking_strategy(f"think-budget:{budget}")


@solver
def prefill(text: str) -> Solver:
    """Any assistant-turn prefill, e.g. Thought Crime's ``<think>\\nOkay.``.

    Args:
        text: the prefill; ``\\n`` (backslash, n) in it is a newline, as on the command line.
    """
    return thinking_strategy("prefill:" + text)


@solver
def deception_belief() -> Solver:
    """DeceptionBench's phase 1: ask the sample's belief question (metadata ``inner_prompt``) in a conversation of
    its own with normal decoding, and keep the answer (the reasoning when there is no answer) as the ``belief``
    the consistency judge compares the scenario's reasoning and answer with (the sample's ``cotscope:context``)."""

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        from inspect_ai.model import ChatMessageUser, ContentReasoning, get_model

        from cotscope.traces import split_reasoning

        question = str(state.metadata.get("inner_prompt") or "")
        if not question:
            raise ValueError(f"sample {state.sample_id!r} has no inner_prompt: DeceptionBench's belief question")
        out = await get_model().generate([ChatMessageUser(content=question)])
        content = out.message.content
        reasoning = "\n\n".join(c.reasoning for c in content if isinstance(c, ContentReasoning)) \
            if isinstance(content, list) else ""
        split = split_reasoning(out.completion)
        belief = split.answer or split.reasoning or reasoning
        state.store.set(CONTEXT_KEY, {"belief": belief, "inner_prompt": question})
        return state

    return solve
