"""think-budget: a think block for models that do not reason on their own, closed at a token budget."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

import pytest

from cotscope._registry import registry_info
from cotscope.errors import ConfigError
from cotscope.models import Engine, GenerateConfig, GenerateRequest, ModelOutput, RequestCache
from cotscope.thinking import ThinkBudget, finish_output, get_strategy, strategy_names


def _req(q: str = "q", max_tokens: int = 100) -> GenerateRequest:
    return GenerateRequest(messages=[{"role": "user", "content": q}], config=GenerateConfig(max_tokens=max_tokens))


class WordModel:
    """A scripted non-reasoning model: one token per word, honouring max_tokens and stop strings.

    In a think block it writes ``thought`` (words); after a closed block it writes ``answer``.
    """

    name = "words"

    def __init__(self, thought: str = "w1 w2 w3 w4 w5 w6 w7 w8 w9 w10", answer: str = "the answer is 4") -> None:
        self.thought = thought
        self.answer = answer
        self.calls: list[GenerateRequest] = []

    async def generate(self, requests: Sequence[GenerateRequest]) -> list[ModelOutput]:
        outs = []
        for r in requests:
            self.calls.append(r)
            script = self.answer if r.prefill.endswith("</think>\n\n") else self.thought
            for s in r.config.stop:
                script = script.split(s, 1)[0]
            words = script.split(" ")
            cut = words[: r.config.max_tokens]
            text = " ".join(cut)
            out = ModelOutput(text=text, completion_tokens=len(cut), prompt_tokens=5,
                              finish_reason="length" if len(cut) < len(words) else "stop")
            outs.append(finish_output(r.prefill, out))
        return outs

    async def aclose(self) -> None:
        return None


def test_the_name_records_the_budget_and_the_registry_the_argument() -> None:
    assert "think-budget" in strategy_names()
    s = get_strategy("think-budget")
    assert isinstance(s, ThinkBudget) and s.name == "think-budget:64" and s.think_budget == 64
    t = get_strategy("think-budget:8")
    assert t.name == "think-budget:8"
    info = registry_info(t)
    assert info is not None and info.args == {"arg": "8"}
    assert not t.single_round and t.prefill == "<think>\n"


@pytest.mark.parametrize("spec", ["think-budget:0", "think-budget:-3", "think-budget:x", "think-budget:1.5"])
def test_bad_budgets_are_config_errors(spec: str) -> None:
    with pytest.raises(ConfigError, match="think-budget"):
        get_strategy(spec)


def test_the_block_is_forced_closed_at_the_budget_and_the_answer_gets_the_rest() -> None:
    m = WordModel()
    [out] = asyncio.run(ThinkBudget(4).generate(m, [_req(max_tokens=100)]))
    think, answer = m.calls
    assert think.prefill == "<think>\n" and think.config.max_tokens == 4 and "</think>" in think.config.stop
    assert answer.prefill == "<think>\nw1 w2 w3 w4\n</think>\n\n"
    assert answer.config.max_tokens == 96 and "</think>" not in answer.config.stop
    assert (out.reasoning, out.answer, out.reasoning_closed) == ("w1 w2 w3 w4", "the answer is 4", True)
    assert out.text == "<think>\nw1 w2 w3 w4\n</think>\n\nthe answer is 4"
    assert out.completion_tokens == 4 + 4 and out.prompt_tokens == 5 and out.error is None


def test_a_block_the_model_closes_itself_is_not_closed_twice() -> None:
    m = WordModel(thought="short thought\n</think>\n\nstray answer")
    [out] = asyncio.run(ThinkBudget(50).generate(m, [_req(max_tokens=60)]))
    assert m.calls[1].prefill == "<think>\nshort thought\n</think>\n\n"
    assert m.calls[1].config.max_tokens == 60 - 2
    assert (out.reasoning, out.answer, out.reasoning_closed) == ("short thought", "the answer is 4", True)
    assert "stray" not in out.text and out.text.count("</think>") == 1


def test_a_budget_beyond_max_tokens_still_leaves_one_answer_token() -> None:
    m = WordModel()
    [out] = asyncio.run(ThinkBudget(10).generate(m, [_req(max_tokens=5)]))
    assert m.calls[1].config.max_tokens == 1
    assert out.answer == "the" and out.reasoning_closed


def test_a_batch_goes_through_each_round_together_and_errors_stay_per_request() -> None:
    class Flaky(WordModel):
        async def generate(self, requests: Sequence[GenerateRequest]) -> list[ModelOutput]:
            outs = await super().generate(requests)
            return [ModelOutput(error="HTTP 500") if r.messages[0]["content"] == "bad" else o
                    for r, o in zip(requests, outs, strict=True)]

    m = Flaky()
    outs = asyncio.run(ThinkBudget(3).generate(m, [_req("a"), _req("bad"), _req("c")]))
    assert [o.error for o in outs] == [None, "HTTP 500", None]
    assert [o.reasoning for o in outs if o.error is None] == ["w1 w2 w3", "w1 w2 w3"]
    assert len(m.calls) == 3 + 2  # one think round for all, one answer round for the two left


def test_through_the_engine_with_a_cache(tmp_path: object) -> None:
    from pathlib import Path

    m = WordModel()
    cache = RequestCache(Path(str(tmp_path)) / "requests.sqlite")
    first = asyncio.run(Engine(m, get_strategy("think-budget:2"), cache).run([_req("x"), _req("y")]))
    n = len(m.calls)
    again = asyncio.run(Engine(m, get_strategy("think-budget:2"), cache).run([_req("x"), _req("y")]))
    assert [o.text for o in again] == [o.text for o in first]
    assert len(m.calls) == n  # every round came from the cache
    assert all(o.reasoning == "w1 w2" and o.answer == "the answer is 4" for o in again)


@pytest.mark.slow
def test_on_the_embedded_model() -> None:
    pytest.importorskip("transformers")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from cotscope.models import get_model

    async def go() -> list[ModelOutput]:
        model = get_model("local/smollm2", threads=2)
        try:
            return await Engine(model, get_strategy("think-budget:6")).run(
                [_req("What is 2+2? Answer briefly.", max_tokens=16)])
        finally:
            await model.aclose()

    [out] = asyncio.run(go())
    assert out.error is None, out.error
    assert out.reasoning_closed
    assert out.text.startswith("<think>\n") and out.text.count("</think>") == 1
    assert out.reasoning.strip() and out.text.index(out.reasoning) < out.text.index("</think>")
    assert out.completion_tokens is not None and out.completion_tokens <= 16 + 1
