"""Prefills through chat templates: detection, the clear failure, the completions fallback, the record.

The fake server renders chat requests with a chat template the way vLLM does (transformers' renderer,
``continue_final_message``), so a template that rewrites an assistant prefill behaves as on a real
server. The templates below keep exactly the parts of the real ones that touch a prefill:

* DeepSeek-R1 (distills, the updated template): assistant content is cut to what follows its last
  ``</think>``, and the generation prompt opens ``<think>\\n``. transformers then refuses to continue a
  ZeroThink/LessThink message ("final message does not appear"), which vLLM returns as HTTP 400.
* Qwen3: assistant content is re-rendered as ``<think>\\n{reasoning}\\n</think>\\n\\n{content}``, so a prefill
  without ``</think>`` (``<think>\\nOkay.``, MoreThink's ``<think>\\n``) gets an empty think block put in
  front of it (Thought Crime's footnote 6); a closed prefill comes out unchanged.

Servers are started by the tests, on 127.0.0.1 only; tokenizers are built into temporary folders.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cotscope.errors import ConfigError
from cotscope.models import GenerateConfig, GenerateRequest, RequestCache, get_model
from cotscope.models._fakeserver import FakeOpenAIServer, FaultConfig, serve_in_thread
from cotscope.models._openai import OpenAIModel
from cotscope.models._prefill import continuation_problem, think_state
from cotscope.models._render import template_problem
from cotscope.thinking import MoreThink, get_strategy

R1 = (
    "<｜begin▁of▁sentence｜>{% for m in messages %}{% if m['role'] == 'user' %}<｜User｜>{{ m['content'] }}"
    "{% elif m['role'] == 'assistant' %}{% set content = m['content'] %}{% if '</think>' in content %}"
    "{% set content = content.split('</think>')[-1] %}{% endif %}"
    "<｜Assistant｜>{{ content }}<｜end▁of▁sentence｜>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<｜Assistant｜><think>\n{% endif %}"
)
QWEN3 = (
    "{% for m in messages %}{% if m['role'] == 'user' %}<|im_start|>user\n{{ m['content'] }}<|im_end|>\n"
    "{% elif m['role'] == 'assistant' %}{% set content = m['content'] %}{% set reasoning_content = '' %}"
    "{% if '</think>' in content %}"
    "{% set reasoning_content = content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}"
    "{% set content = content.split('</think>')[-1].lstrip('\\n') %}{% endif %}"
    "<|im_start|>assistant\n<think>\n{{ reasoning_content.strip('\\n') }}\n</think>\n\n"
    "{{ content.lstrip('\\n') }}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
ZERO = "<think>\n\n</think>\n\n"
LESS = "<think>\nOkay, the user ask for this, I can answer it without thinking much. \n</think>\n\n"
OKAY = "prefill:<think>\\nOkay."


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Tokenizer folders (a one-word vocabulary; only the chat template matters) for each template."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    out = {}
    for name, template in (("r1", R1), ("qwen3", QWEN3), ("chatml", CHATML)):
        tok = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")
        fast.chat_template = template
        path = tmp_path_factory.mktemp(name)
        fast.save_pretrained(path)
        out[name] = str(path)
    return out


def _reqs(n: int = 1, **cfg: Any) -> list[GenerateRequest]:
    return [GenerateRequest(messages=[{"role": "user", "content": f"q{i}"}], config=GenerateConfig(seed=i, **cfg))
            for i in range(n)]


def _model(srv: FakeOpenAIServer, **args: Any) -> OpenAIModel:
    m = get_model("openai/fake", base_url=srv.base_url, max_retries=0, **args)
    assert isinstance(m, OpenAIModel)
    return m


def _run(strategy: str, model: OpenAIModel, reqs: list[GenerateRequest] | None = None) -> list[Any]:
    async def go() -> list[Any]:
        try:
            return list(await get_strategy(strategy).generate(model, reqs or _reqs()))
        finally:
            await model.aclose()

    return asyncio.run(go())


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[FakeOpenAIServer]:
    """A fake server with the FaultConfig fields given by ``@pytest.mark.parametrize(..., indirect=...)``."""
    with serve_in_thread(FaultConfig(**getattr(request, "param", {}))) as s:
        yield s


# -- the two checks, locally -------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("template", "prefill", "says"),
    [
        ("r1", ZERO, "deletes part of the prefill"),
        ("r1", LESS, "deletes part of the prefill"),
        ("r1", "<think>\nOkay.", None),
        ("qwen3", "<think>\nOkay.", "\\n</think>\\n\\n<think>\\nOkay."),
        ("qwen3", "<think>\n", "</think>"),
        ("qwen3", ZERO, None),
        ("qwen3", LESS, None),
        ("chatml", ZERO, None),
        ("chatml", "Sure, here is", None),
    ],
)
def test_template_problem_compares_the_two_renderings(
    tokenizers: dict[str, str], template: str, prefill: str, says: str | None
) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizers[template], local_files_only=True)
    problem = template_problem(tok, [{"role": "user", "content": "q"}], prefill)
    if says is None:
        assert problem is None
    else:
        assert problem is not None and says in problem


def test_nothink_with_the_template_switch_is_not_a_rewrite(tokenizers: dict[str, str]) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizers["qwen3"], local_files_only=True)
    assert template_problem(tok, [{"role": "user", "content": "q"}], ZERO, {"enable_thinking": False}) is None


@pytest.mark.parametrize(
    ("prefill", "content", "reasoning", "says"),
    [
        (ZERO, "The answer.", None, None),
        (ZERO, "Hmm, let me think.\n</think>\n\nThe answer.", None, "thinks again"),
        (ZERO, "<think>\nHmm.</think>The answer.", None, "thinks again"),
        # A DeepSeek-R1 reasoning parser puts a reply without </think> in the reasoning: still an answer.
        (ZERO, "", "The answer.", None),
        (LESS, "The answer.", "Hmm, let me think.", "reasoning parser"),
        ("<think>\nOkay.", " so it is 4.\n</think>\n\n4", None, None),
        ("<think>\nOkay.", "<think>\nLet me see.\n</think>\n\n4", None, "opens a new think block"),
        ("Sure, here is", "<think>anything", None, None),
    ],
)
def test_continuation_problem(prefill: str, content: str, reasoning: str | None, says: str | None) -> None:
    problem = continuation_problem(prefill, content, reasoning)
    assert (problem is None) if says is None else (problem is not None and says in problem)


def test_think_state() -> None:
    assert [think_state(t) for t in (ZERO, LESS, "<think>\nOkay.", "<think>\n", "Sure", "")] == [
        "closed", "closed", "open", "open", "none", "none"]


def test_bad_settings_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="prefill_mode must be one of"):
        get_model("openai/x", base_url="http://127.0.0.1:9/v1", prefill_mode="maybe")
    with pytest.raises(ConfigError, match="needs the served model's tokenizer"):
        get_model("openai/x", base_url="http://127.0.0.1:9/v1", prefill_mode="completions")
    with pytest.raises(ConfigError, match="neither a local path nor a Hugging Face id in the local cache"):
        get_model("openai/x", base_url="http://127.0.0.1:9/v1", tokenizer=str(tmp_path / "missing"))


# -- DeepSeek-R1's template: refused continuations ---------------------------------------------------

@pytest.mark.parametrize("server", [{"chat_template": R1}], indirect=True)
@pytest.mark.parametrize("strategy", ["zerothink", "lessthink"])
def test_r1_without_tokenizer_fails_clearly_naming_model_and_strategy(server: FakeOpenAIServer, strategy: str) -> None:
    [o] = _run(strategy, _model(server))
    assert o.error is not None
    assert o.error.startswith(f"strategy {strategy}: prefill not applied: the chat endpoint of openai/fake "
                              f"({server.base_url}) does not continue the prefill")
    assert f"continue the prefill {get_strategy(strategy).prefill[:59]!r}"[:-1] in o.error
    assert "refused to continue it (HTTP 400: " in o.error
    assert "continue_final_message is set but the final message does not appear" in o.error
    assert "tokenizer=PATH_OR_HUB_ID" in o.error and "prefill_mode=chat-keep" in o.error
    assert server.stats.counts["template_refused"] == 1 and server.stats.prompts == []


@pytest.mark.parametrize("server", [{"chat_template": R1}], indirect=True)
def test_r1_with_tokenizer_falls_back_to_completions_with_the_exact_prompt(
    server: FakeOpenAIServer, tokenizers: dict[str, str]
) -> None:
    model = _model(server, tokenizer=tokenizers["r1"])
    [z] = _run("zerothink", model)
    # Found locally, so no chat request went out: one completions prompt, the template's <think>\n not doubled.
    assert server.stats.prompts == ["<｜begin▁of▁sentence｜><｜User｜>q0<｜Assistant｜><think>\n\n</think>\n\n"]
    assert server.stats.counts["template_refused"] == 0
    assert (z.error, z.prefill_applied, z.reasoning, z.reasoning_closed) == (None, "completions", "", True)
    assert z.answer.startswith("answer to")
    # An open prefill survives this template: it goes through chat, continued as given.
    [o] = _run(OKAY, _model(server, tokenizer=tokenizers["r1"]))
    assert server.stats.prompts[-1] == "<｜begin▁of▁sentence｜><｜User｜>q0<｜Assistant｜><think>\nOkay."
    assert (o.prefill_applied, o.answer) == ("chat-continue", "answer to q0 (seed 0)")
    assert o.reasoning.startswith("Okay.")


@pytest.mark.parametrize("server", [{"chat_template": R1}], indirect=True)
def test_r1_chat_mode_with_tokenizer_fails_and_says_how_to_fall_back(
    server: FakeOpenAIServer, tokenizers: dict[str, str]
) -> None:
    [o] = _run("lessthink", _model(server, tokenizer=tokenizers["r1"], prefill_mode="chat"))
    assert o.error is not None and o.error.startswith("strategy lessthink: prefill not applied")
    assert "deletes part of the prefill" in o.error and "prefill_mode=auto or prefill_mode=completions" in o.error
    assert server.stats.prompts == []  # nothing was sent


# -- Qwen3's template: an empty think block in front of an open prefill ------------------------------

@pytest.mark.parametrize("server", [{"chat_template": QWEN3}], indirect=True)
def test_qwen3_rewrite_is_invisible_in_the_reply_but_found_with_the_tokenizer(
    server: FakeOpenAIServer, tokenizers: dict[str, str]
) -> None:
    inserted = "<|im_start|>user\nq0<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n<think>\nOkay."
    # Without a tokenizer the reply looks like a continuation: this is what the local check is for.
    [blind] = _run(OKAY, _model(server))
    assert server.stats.prompts == [inserted] and blind.prefill_applied == "chat-continue"
    # chat-keep with the tokenizer sends it anyway and marks it.
    [kept] = _run(OKAY, _model(server, tokenizer=tokenizers["qwen3"], prefill_mode="chat-keep"))
    assert server.stats.prompts[-1] == inserted and kept.prefill_applied == "template-rewrote"
    # auto with the tokenizer: the prompt cotscope means, through /v1/completions.
    [fixed] = _run(OKAY, _model(server, tokenizer=tokenizers["qwen3"]))
    assert server.stats.prompts[-1] == "<|im_start|>user\nq0<|im_end|>\n<|im_start|>assistant\n<think>\nOkay."
    assert fixed.prefill_applied == "completions" and fixed.reasoning.startswith("Okay.")
    # chat mode with the tokenizer: a clear failure that shows the rewrite.
    [failed] = _run(OKAY, _model(server, tokenizer=tokenizers["qwen3"], prefill_mode="chat"))
    assert failed.error is not None and failed.error.startswith("strategy prefill:<think>\nOkay.: prefill not applied")
    assert "renders the prefill's turn as" in failed.error
    assert len(server.stats.prompts) == 3


@pytest.mark.parametrize("server", [{"chat_template": QWEN3}], indirect=True)
def test_closed_prefills_pass_qwen3_through_chat(server: FakeOpenAIServer, tokenizers: dict[str, str]) -> None:
    [z] = _run("zerothink", _model(server, tokenizer=tokenizers["qwen3"]))
    assert server.stats.prompts == ["<|im_start|>user\nq0<|im_end|>\n<|im_start|>assistant\n" + ZERO]
    assert (z.prefill_applied, z.reasoning, z.answer) == ("chat-continue", "", "answer to q0 (seed 0)")


@pytest.mark.parametrize("server", [{"chat_template": QWEN3}], indirect=True)
def test_morethink_rounds_record_how_their_prefills_went(server: FakeOpenAIServer, tokenizers: dict[str, str]) -> None:
    model = _model(server, tokenizer=tokenizers["qwen3"])

    async def go() -> Any:
        try:
            return await MoreThink(think_budget=50, enforce_num=1).generate(model, _reqs(max_tokens=80))
        finally:
            await model.aclose()

    [o] = asyncio.run(go())
    # The think rounds leave the block open, which Qwen3's template rewrites, so they go to completions;
    # so does the answer round here, as the fake model's thought quotes the prompt's own tags, and
    # Qwen3 re-renders a thought containing "<think>". Three rounds, one record.
    assert o.error is None and o.prefill_applied == "completions"
    assert len(server.stats.prompts) == 3
    assert server.stats.prompts[0] == "<|im_start|>user\nq0<|im_end|>\n<|im_start|>assistant\n<think>\n"
    assert server.stats.prompts[-1].endswith("</think>\n\n")


# -- a server that ignores continue_final_message ---------------------------------------------------

@pytest.mark.parametrize("server", [{"ignore_continue": True}], indirect=True)
@pytest.mark.parametrize(("strategy", "says"), [("zerothink", "thinks again"), (OKAY, "opens a new think block")])
def test_ignored_prefill_is_detected_from_the_reply(server: FakeOpenAIServer, strategy: str, says: str) -> None:
    [o] = _run(strategy, _model(server))
    assert o.error is not None and "prefill not applied" in o.error and says in o.error
    [kept] = _run(strategy, _model(server, prefill_mode="chat-keep"))
    assert kept.error is None and kept.prefill_applied == "template-rewrote"
    # Kept as the other paths record it (the prefill, then the reply), only marked.
    assert kept.text == get_strategy(strategy).prefill + "<think>\nthinking about q0\n</think>\n\nanswer to q0 (seed 0)"


@pytest.mark.parametrize("server", [{"ignore_continue": True}], indirect=True)
def test_reply_check_failure_falls_back_and_later_requests_skip_chat(
    server: FakeOpenAIServer, tokenizers: dict[str, str]
) -> None:
    model = _model(server, tokenizer=tokenizers["chatml"])

    async def go() -> list[Any]:
        try:
            first = await get_strategy("zerothink").generate(model, _reqs(1))
            return [*first, *await get_strategy("lessthink").generate(model, _reqs(1))]
        finally:
            await model.aclose()

    outs = asyncio.run(go())
    assert [o.prefill_applied for o in outs] == ["completions", "completions"]
    assert server.stats.prompts == ["<|im_start|>user\nq0<|im_end|>\n<|im_start|>assistant\n" + p for p in (ZERO, LESS)]
    assert server.stats.counts["ok"] == 3  # one chat reply (rejected), then two completions, no second chat


# -- the record, through the cache and into the store -----------------------------------------------

@pytest.mark.parametrize("server", [{"chat_template": R1}], indirect=True)
def test_prefill_applied_is_cached_and_stored_in_trace_metadata(
    server: FakeOpenAIServer, tokenizers: dict[str, str], tmp_path: Path
) -> None:
    import cotscope
    from cotscope.pipeline import Sampling, generate
    from cotscope.traces import PromptItem

    prompts = [PromptItem([{"role": "user", "content": "q0"}], 1)]
    cache = RequestCache(tmp_path / "c.sqlite")
    for n in range(2):
        with cotscope.Store(tmp_path / f"s{n}.duckdb") as st:
            asyncio.run(generate(st, prompts, model="openai/fake", strategy="zerothink", samples=1,
                                 sampling=Sampling(max_tokens=64), model_base_url=server.base_url,
                                 model_args={"tokenizer": tokenizers["r1"]}, cache=cache))
            asyncio.run(generate(st, prompts, model="openai/fake", strategy="normal", samples=1,
                                 sampling=Sampling(max_tokens=64), model_base_url=server.base_url,
                                 model_args={"tokenizer": tokenizers["r1"]}, cache=cache))
            got = {t.strategy: t.metadata["prefill_applied"] for t in st.traces()}
        assert got == {"zerothink": "completions", "normal": "none"}  # the second store from the cache
    assert len(server.stats.prompts) == 2  # the cached pass sent nothing
