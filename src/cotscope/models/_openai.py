"""The OpenAI-compatible HTTP backend (vLLM, SGLang, llama.cpp server, Ollama, OpenAI, DeepSeek, OpenRouter).

Requests go through the async ``openai`` SDK with its own retries switched off: this module retries
429s, 5xx, timeouts, dropped connections and unparseable bodies with exponential backoff and jitter,
honouring ``Retry-After``/``retry-after-ms``, and every request ends either as an output or as an output
whose ``error`` names the cause and the number of attempts.

Prefill (the strategies need the assistant turn to start with given text) goes one of two ways:

* chat (``chat-continue``): the prefill as a final assistant message with vLLM/SGLang's
  ``continue_final_message=true, add_generation_prompt=false`` request extension. The served model's chat
  template renders that message, and some templates drop or rewrite it (DeepSeek-R1's strips everything up
  to ``</think>``; Qwen3's puts an empty think block in front of an open one), which silently turns
  ZeroThink, LessThink and ``<think>\nOkay.`` into normal decoding. So a chat prefill is checked: with a
  known tokenizer (``tokenizer=`` model arg) the template is rendered locally both ways
  (:func:`cotscope.models._render.template_problem`), a server that refuses to continue the message
  (transformers' "final message does not appear") is a rewrite, and the reply must be able to continue
  the prefill (:func:`cotscope.models._prefill.continuation_problem`).
* completions (``completions``): the chat template rendered by cotscope with the ``tokenizer=``
  tokenizer, the prefill appended (without doubling a template's ``<think>``), the text sent to the raw
  ``/v1/completions`` endpoint. Exact control of the prompt text; needs the tokenizer.

``prefill_mode`` chooses: ``auto`` (default) takes chat when it passes the checks, completions when it does
not and the tokenizer is known, and otherwise fails the request with a message naming the model (the
strategy adds its name); ``chat`` fails on a rewrite; ``completions`` always renders locally;
``chat-keep`` keeps rewritten chat outputs, marked ``template-rewrote``. Every output records the way its
prefill went in ``ModelOutput.prefill_applied``.

Reasoning comes from the ``reasoning_content`` or ``reasoning`` message fields (servers run with a
reasoning parser) or from ``<think>`` tags in the text.
"""

from __future__ import annotations

import asyncio
import email.utils
import importlib
import json
import os
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

import openai

from cotscope.errors import ConfigError
from cotscope.models._prefill import (
    PREFILL_MODES,
    PREFILL_NOT_APPLIED,
    continuation_problem,
    finish_output,
    merge_prefill,
    think_state,
)
from cotscope.models._protocol import GenerateRequest, ModelOutput, modelapi
from cotscope.traces import split_reasoning

#: HTTP statuses worth retrying: rate limits, server errors, request timeouts, conflicts.
RETRY_STATUSES = frozenset({408, 409, 425, 429})


def _sdk_http_module() -> Any:
    """The HTTP library the installed openai SDK is built on (httpx for 1.x, its fork httpx2 for 3.x)."""
    base = openai.DefaultAsyncHttpxClient.__mro__[1]
    return importlib.import_module(base.__module__.split(".")[0])


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """The wait a response asks for: ``retry-after-ms``, or ``retry-after`` in seconds or as an HTTP date."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if not ra:
        return None
    try:
        return max(0.0, float(ra))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(ra)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff_delay(
    attempt: int, retry_after: float | None, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based).

    A server's ``Retry-After`` is honoured (plus up to 10% jitter so that clients told the same time do
    not return together); without one, exponential backoff ``base * 2**attempt`` capped at ``cap`` with
    jitter in [50%, 100%].
    """
    r = rng or random
    if retry_after is not None:
        return retry_after * (1.0 + 0.1 * r.random())
    return min(cap, base * (2**attempt)) * (0.5 + 0.5 * r.random())


class _Retryable(Exception):
    def __init__(self, cause: str, retry_after: float | None = None) -> None:
        super().__init__(cause)
        self.cause = cause
        self.retry_after = retry_after


class _PrefillRejected(Exception):
    """A chat request whose prefill the server's template dropped or rewrote (never retried as it is)."""

    def __init__(self, reason: str, output: ModelOutput | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.output = output


def load_tokenizer(name: str) -> Any:
    """A transformers tokenizer from a local path or an already-cached Hugging Face id, without network.

    Raises:
        ConfigError: transformers is missing, or the tokenizer is neither local nor cached.
    """
    try:
        from transformers import AutoTokenizer
    except ImportError as e:
        raise ConfigError(f"the tokenizer {name!r} needs transformers: pip install transformers ({e})") from None
    try:
        return AutoTokenizer.from_pretrained(name, local_files_only=True)
    except Exception as e:
        raise ConfigError(
            f"tokenizer {name!r} is neither a local path nor a Hugging Face id in the local cache "
            f"(cotscope does not download it at run time; fetch it first, e.g. `hf download {name} "
            f"--include 'tokenizer*' 'chat_template*'`): {_short(str(e))}"
        ) from None


class OpenAIModel:
    """An OpenAI-compatible server.

    Args:
        model: the model name the server knows.
        base_url: the server's ``/v1`` URL; default OpenAI's.
        api_key: default ``$OPENAI_API_KEY``, or ``EMPTY`` for local servers.
        max_connections: requests in flight at once (and HTTP connections kept open).
        timeout: seconds per request attempt.
        max_retries: retries after the first attempt.
        backoff_base: first backoff in seconds.
        backoff_max: longest backoff in seconds.
        endpoint: ``chat`` or ``completions`` (raw text; needs ``tokenizer`` for a chat template).
        tokenizer: a transformers tokenizer path or cached Hub id of the served model: checks prefills
            against its chat template and renders it for the completions endpoint.
        prefill_mode: ``auto``, ``chat``, ``completions`` (needs ``tokenizer``) or ``chat-keep``; see the
            module docstring.
        name: the name recorded on outputs and cache keys (default ``openai/<model>``).

    Raises:
        ConfigError: a bad ``endpoint`` or ``prefill_mode``, or a tokenizer that cannot be loaded.
    """

    batch_size = 1

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        max_connections: int = 32,
        timeout: float = 120.0,
        max_retries: int = 6,
        backoff_base: float = 0.5,
        backoff_max: float = 60.0,
        endpoint: str = "chat",
        tokenizer: str | None = None,
        prefill_mode: str = "auto",
        name: str | None = None,
    ) -> None:
        if endpoint not in ("chat", "completions"):
            raise ConfigError(f"endpoint must be chat or completions, got {endpoint!r}")
        if prefill_mode not in PREFILL_MODES:
            raise ConfigError(f"prefill_mode must be one of {', '.join(PREFILL_MODES)}, got {prefill_mode!r}")
        if prefill_mode == "completions" and tokenizer is None:
            raise ConfigError("prefill_mode=completions renders the chat template locally and needs the served "
                              "model's tokenizer: add the model arg tokenizer=PATH_OR_HUB_ID")
        self.model = model
        self.name = name or f"openai/{model}"
        # Two servers may serve different weights under one model name; cache entries stay apart.
        self.cache_id = f"{self.name}@{base_url or 'https://api.openai.com/v1'}"
        if prefill_mode != "auto":
            # A forced way of applying prefills (chat-keep above all) must not reuse auto's outputs.
            self.cache_id += f"#prefill_mode={prefill_mode}"
        self.prefill_mode = prefill_mode
        self.base_url = base_url
        self.max_connections = max(1, int(max_connections))
        self.max_concurrency = self.max_connections
        self.timeout = float(timeout)
        self.max_retries = max(0, int(max_retries))
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.endpoint = endpoint
        self.tokenizer_id = tokenizer
        # Loaded now so that a wrong path fails before any request, not as one error per request.
        self._tokenizer: Any = load_tokenizer(tokenizer) if tokenizer is not None else None
        # Think states (see think_state) whose chat prefills this server rewrote: later ones go straight
        # to completions. Only used when completions can take over, so a false alarm costs nothing.
        self._rejected: dict[str, str] = {}
        key = api_key or os.environ.get("OPENAI_API_KEY") or ("EMPTY" if base_url else None)
        if key is None:
            raise ValueError("no API key: set OPENAI_API_KEY, pass --model-arg api_key=..., or --model-base-url")
        self._api_key = key
        self.client: openai.AsyncOpenAI | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sem: asyncio.Semaphore | None = None
        self._rng = random.Random()

    # -- protocol ----------------------------------------------------------------------------------
    async def generate(self, requests: Sequence[GenerateRequest]) -> list[ModelOutput]:
        """One output per request, concurrently up to ``max_connections``; failures as error outputs."""
        if len(requests) == 1:
            return [await self.generate_one(requests[0])]
        return list(await asyncio.gather(*(self.generate_one(r) for r in requests)))

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        if self.client is not None and self._loop is asyncio.get_running_loop():
            await self.client.close()
        self.client, self._loop, self._sem = None, None, None

    def _bind(self) -> openai.AsyncOpenAI:
        # HTTP connections and semaphores belong to one event loop; a model used from a second
        # asyncio.run() gets fresh ones instead of failing on the old loop's pooled sockets.
        loop = asyncio.get_running_loop()
        if self.client is None or self._loop is not loop:
            limits = _sdk_http_module().Limits(max_connections=self.max_connections,
                                               max_keepalive_connections=self.max_connections)
            self.client = openai.AsyncOpenAI(
                api_key=self._api_key,
                base_url=self.base_url,
                max_retries=0,  # retried here, with the causes recorded
                timeout=self.timeout,
                http_client=openai.DefaultAsyncHttpxClient(limits=limits, timeout=self.timeout),
            )
            self._loop = loop
            self._sem = asyncio.Semaphore(self.max_connections)
        return self.client

    # -- one request -------------------------------------------------------------------------------
    async def generate_one(self, request: GenerateRequest) -> ModelOutput:
        """Send one request with retries, its prefill applied as ``prefill_mode`` says; never raises."""
        t0 = time.perf_counter()
        try:
            out = await self._apply_prefill(request)
        except Exception as e:  # a bug or an unexpected reply must not lose the request
            out = ModelOutput(error=f"{type(e).__name__}: {_short(str(e))}")
        out.latency_s = time.perf_counter() - t0
        return out

    async def _apply_prefill(self, request: GenerateRequest) -> ModelOutput:
        if self._uses_completions(request):
            return await self._send(request, completions=True)
        if not request.prefill:
            return await self._send(request, completions=False)
        keep = self.prefill_mode == "chat-keep"
        fallback = self.prefill_mode == "auto" and self._tokenizer is not None
        problem = self._rejected.get(think_state(request.prefill)) if fallback else None
        if problem is None and self._tokenizer is not None:
            from cotscope.models._render import template_problem

            problem = template_problem(self._tokenizer, request.messages, request.prefill, request.template_kwargs)
        if problem is None or keep:
            try:
                out = await self._send(request, completions=False)
            except _PrefillRejected as e:
                if keep and e.output is not None:
                    return e.output.model_copy(update={"prefill_applied": "template-rewrote"})
                problem = e.reason
                self._rejected.setdefault(think_state(request.prefill), problem)
            else:
                if problem is not None:  # chat-keep past a rewrite the local template showed
                    out.prefill_applied = "template-rewrote"
                return out
        assert problem is not None
        if fallback:
            return await self._send(request, completions=True)
        return ModelOutput(error=self._prefill_error(request, problem))

    def _prefill_error(self, request: GenerateRequest, problem: str) -> str:
        if self._tokenizer is None:
            fix = ("give the model arg tokenizer=PATH_OR_HUB_ID (the served model's tokenizer, a local path or a "
                   "cached Hugging Face id) so that cotscope renders the chat template itself and sends the "
                   "prefill to /v1/completions")
        else:
            fix = "use prefill_mode=auto or prefill_mode=completions to send it through /v1/completions"
        return (f"{PREFILL_NOT_APPLIED}: the chat endpoint of {self.name} ({self.base_url or 'OpenAI'}) does not "
                f"continue the prefill {_clip(request.prefill, 60)!r} as given: {problem}; {fix}, or "
                "prefill_mode=chat-keep to keep such outputs, marked template-rewrote")

    async def _send(self, request: GenerateRequest, completions: bool) -> ModelOutput:
        """One request to one endpoint with retries; raises only :class:`_PrefillRejected`."""
        client = self._bind()
        sem = self._sem
        assert sem is not None
        t0 = time.perf_counter()
        cause = "no attempt made"
        for attempt in range(self.max_retries + 1):
            try:
                async with sem:
                    out = await self._attempt(client, request, completions)
                out.latency_s = time.perf_counter() - t0
                return out
            except _PrefillRejected:
                raise
            except _Retryable as e:
                cause = e.cause
                if attempt == self.max_retries:
                    break
                await asyncio.sleep(
                    backoff_delay(attempt, e.retry_after, self.backoff_base, self.backoff_max, self._rng)
                )
            except openai.APIStatusError as e:
                # 4xx other than the retryable ones: the request itself is wrong; retrying cannot help.
                return ModelOutput(
                    error=f"HTTP {e.status_code}: {_short(e.message)} (not retried)",
                    latency_s=time.perf_counter() - t0,
                )
            except Exception as e:  # a bug or an unexpected reply must not lose the request
                return ModelOutput(error=f"{type(e).__name__}: {_short(str(e))}", latency_s=time.perf_counter() - t0)
        n = self.max_retries + 1
        return ModelOutput(
            error=f"{cause} (gave up after {n} attempt{'s' if n > 1 else ''})", latency_s=time.perf_counter() - t0
        )

    def _params(self, request: GenerateRequest) -> dict[str, Any]:
        cfg = request.config
        p: dict[str, Any] = {
            "model": self.model,
            "temperature": cfg.temperature,
            "top_p": cfg.top_p,
            "max_tokens": cfg.max_tokens,
        }
        if cfg.seed is not None:
            p["seed"] = cfg.seed
        if cfg.stop:
            p["stop"] = cfg.stop
        extra = dict(cfg.extra)
        body = dict(extra.pop("extra_body", None) or {})
        p.update(extra)
        if body:
            p["extra_body"] = body
        return p

    def _uses_completions(self, request: GenerateRequest) -> bool:
        if self.endpoint == "completions":
            return True
        return self.prefill_mode == "completions" and bool(request.prefill or request.template_kwargs)

    def _render(self, request: GenerateRequest) -> tuple[str, str]:
        from cotscope.models._render import fallback_prompt, render_chat

        if self._tokenizer is None:
            rendered = fallback_prompt(request.messages)
        else:
            rendered = render_chat(self._tokenizer, request.messages, request.template_kwargs)
        return merge_prefill(rendered, request.prefill)

    async def _attempt(self, client: openai.AsyncOpenAI, request: GenerateRequest, completions: bool) -> ModelOutput:
        params = self._params(request)
        applied = "none"
        try:
            if completions:
                prompt, prefix = self._render(request)
                resp: Any = await client.completions.create(prompt=prompt, **params)
                choice = resp.choices[0]
                out = ModelOutput(text=choice.text or "", finish_reason=choice.finish_reason, model=resp.model)
                _usage(out, resp)
                out.prefill_applied = "completions" if request.prefill else "none"
                return finish_output(prefix, out)
            messages = list(request.messages)
            body = dict(params.pop("extra_body", None) or {})
            if request.prefill:
                messages.append({"role": "assistant", "content": request.prefill})
                body.update(continue_final_message=True, add_generation_prompt=False)
                applied = "chat-continue"
            if request.template_kwargs:
                body["chat_template_kwargs"] = {**body.get("chat_template_kwargs", {}), **request.template_kwargs}
            if body:
                params["extra_body"] = body
            resp = await client.chat.completions.create(messages=messages, **params)  # type: ignore[arg-type]
        except (openai.APITimeoutError, TimeoutError):
            raise _Retryable(f"timeout after {self.timeout:g}s") from None
        except openai.APIConnectionError as e:
            raise _Retryable(f"connection error: {_short(str(e.__cause__ or e))}") from None
        except openai.APIStatusError as e:
            if e.status_code in RETRY_STATUSES or e.status_code >= 500:
                raise _Retryable(
                    f"HTTP {e.status_code}: {_short(e.message)}", retry_after_seconds(e.response.headers)
                ) from None
            if applied == "chat-continue" and "continue_final_message" in str(e.message):
                # transformers (inside vLLM) refuses a final message the template deleted part of:
                # "continue_final_message is set but the final message does not appear in the chat...";
                # a server without the extension names the field it does not know.
                raise _PrefillRejected(
                    f"the server refused to continue it (HTTP {e.status_code}: {_short(str(e.message), 160)})"
                ) from None
            raise
        except (json.JSONDecodeError, openai.APIResponseValidationError, UnicodeDecodeError) as e:
            raise _Retryable(f"unparseable response: {_short(str(e))}") from None
        out = _chat_output(request.prefill, resp)
        out.prefill_applied = applied
        if applied == "chat-continue":
            msg = resp.choices[0].message
            reasoning = _field(msg, "reasoning_content")
            if reasoning is None:
                reasoning = _field(msg, "reasoning")
            problem = continuation_problem(request.prefill, msg.content or "", reasoning and str(reasoning))
            if problem is not None:
                raise _PrefillRejected(problem, out)
        return out


def _usage(out: ModelOutput, resp: Any) -> None:
    u = getattr(resp, "usage", None)
    if u is not None:
        out.prompt_tokens = getattr(u, "prompt_tokens", None)
        out.completion_tokens = getattr(u, "completion_tokens", None)


def _field(obj: Any, name: str) -> Any:
    v = getattr(obj, name, None)
    if v is None and getattr(obj, "model_extra", None):
        v = obj.model_extra.get(name)
    return v


def _chat_output(prefix: str, resp: Any) -> ModelOutput:
    if not getattr(resp, "choices", None):
        raise _Retryable("response without choices")
    choice = resp.choices[0]
    msg = choice.message
    content = msg.content or ""
    reasoning = _field(msg, "reasoning_content")
    if reasoning is None:
        reasoning = _field(msg, "reasoning")
    out = ModelOutput(text=content, finish_reason=choice.finish_reason, model=resp.model,
                      top_logprobs=_top_logprobs(choice))
    _usage(out, resp)
    if not reasoning:
        # No reasoning parser on the server: the text carries <think> tags, if any.
        return finish_output(prefix, out)
    reasoning = str(reasoning)
    if "<think>" in prefix and "</think>" not in prefix:
        # The prefill opened the block; the server's parser returned the rest of it separately.
        text = prefix + reasoning + (f"\n</think>\n\n{content}" if content else "")
    elif prefix:
        # The prefill already closed the block (ZeroThink, LessThink): everything generated is answer,
        # whatever the parser guessed.
        text = prefix + reasoning + content
    else:
        closed = bool(content) or choice.finish_reason != "length"
        text = f"<think>\n{reasoning}" + (f"\n</think>\n\n{content}" if closed else "")
    s = split_reasoning(text)
    return out.model_copy(
        update={"text": text, "reasoning": s.reasoning, "answer": s.answer, "reasoning_closed": s.reasoning_closed}
    )


def _top_logprobs(choice: Any, positions: int = 4) -> list[dict[str, float]] | None:
    """``token -> logprob`` of the top alternatives at the first ``positions`` tokens, if the reply has them.

    The chat API's ``choices[0].logprobs.content[i].top_logprobs`` (asked for with ``logprobs=true,
    top_logprobs=N``), as the Emergent Misalignment judge reads it (emergent-misalignment ``open_models/judge.py``,
    ``OpenAiJudge.logprob_probs``). A server that ignores the request returns none: ``None``.
    """
    content = getattr(getattr(choice, "logprobs", None), "content", None)
    if not content:
        return None
    out = [{str(t.token): float(t.logprob) for t in (getattr(c, "top_logprobs", None) or [])}
           for c in content[:positions]]
    return out if any(out) else None


def _clip(text: str, n: int) -> str:
    # Unlike _short, whitespace stays as it is: in a prefill, newlines are the point.
    return text if len(text) <= n else text[: n - 1] + "…"


def _short(text: str, n: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


_INT_ARGS = ("max_connections", "max_retries")
_FLOAT_ARGS = ("timeout", "backoff_base", "backoff_max")


def coerce_openai_args(args: dict[str, Any]) -> dict[str, Any]:
    """Model args given as strings on the command line, converted to the types the backend takes."""
    out = dict(args)
    for k in _INT_ARGS:
        if k in out and out[k] is not None:
            out[k] = int(out[k])
    for k in _FLOAT_ARGS:
        if k in out and out[k] is not None:
            out[k] = float(out[k])
    return out


@modelapi("openai")
def openai_model(model: str, base_url: str | None = None, **model_args: Any) -> OpenAIModel:
    """``openai/MODEL``: OpenAI, or any OpenAI-compatible server with ``--model-base-url``."""
    return OpenAIModel(model, base_url, **coerce_openai_args(model_args))


@modelapi("openai-api")
def openai_api_model(model: str, base_url: str | None = None, **model_args: Any) -> OpenAIModel:
    """``openai-api/MODEL``: an alias of ``openai/`` for OpenAI-compatible servers (Inspect's spelling)."""
    args = coerce_openai_args(model_args)
    args.setdefault("name", f"openai-api/{model}")
    return OpenAIModel(model, base_url, **args)
