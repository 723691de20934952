"""Non-streaming requests through the guard: read upstream as a stream (cut early) or as one whole response.

Real openai SDK clients, not streaming, against the guard on 127.0.0.1, with the fake upstream (or a scripted
one, for tool calls and for an upstream that ignores ``stream``) behind it.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI
from typer.testing import CliRunner

from cotscope.guard import DEFAULT_REFUSAL
from cotscope.guard._session import CompletionAssembler
from cotscope.pipeline import cap_reasons

from .conftest import BENIGN, TURNING, guard_on, no_leaks, upstream, wait_for

ANSWER = "The answer is 4."


def _client(base_url: str) -> OpenAI:
    return OpenAI(base_url=base_url, api_key="k", max_retries=0, timeout=30)


def _ask(base_url: str, question: str, **kw: Any) -> Any:
    """A non-streaming request through the SDK; the raw response (headers) and its parsed completion."""
    raw = _client(base_url).chat.completions.with_raw_response.create(
        model="anything", messages=[{"role": "user", "content": question}], **kw)
    return raw, raw.parse()


@pytest.mark.parametrize("reasoning_field", [True, False])
def test_benign_request_gets_what_the_upstream_would_have_answered(reasoning_field: bool) -> None:
    with upstream(reasoning_field=reasoning_field) as up, guard_on(up) as (g, records):
        direct = httpx.post(f"{up.base_url}/chat/completions", timeout=30,
                            json={"model": "fake", "messages": [{"role": "user", "content": "benign"}]}).json()
        assert up.stats.streams == []
        raw, r = _ask(g.base_url, "benign")
        assert raw.headers["x-cotscope-guard"] == "passed" and raw.headers["x-cotscope-guard-request"]
        got = r.model_dump(exclude_none=True)
        # The same completion as the upstream's non-streamed answer: message (reasoning under the upstream's
        # field name, or <think> text inside content), finish reason, usage (asked for by the guard), identity.
        for key in ("id", "object", "created", "model", "usage"):
            assert got[key] == direct[key], key
        assert got["choices"][0]["message"] == direct["choices"][0]["message"]
        assert got["choices"][0]["finish_reason"] == direct["choices"][0]["finish_reason"] == "stop"
        assert (r.choices[0].message.model_extra.get("reasoning_content") == BENIGN) is reasoning_field
        # ... but read upstream as a stream, to its end.
        assert len(up.stats.streams) == 1 and up.stats.streams[0].completed
        assert wait_for(lambda: len(records) == 1)
        rec = records[0]
        assert rec.stream is False and rec.upstream_stream is True and rec.action == "passed"
        assert rec.released == {"reasoning": len(rec.reasoning), "answer": len(ANSWER)} and rec.usage == direct["usage"]
        assert rec.reasoning.strip() == BENIGN.strip() and rec.answer == ANSWER and rec.checks >= len(BENIGN) // 40
        assert no_leaks(g)


def test_flagged_request_is_cut_early_and_answered_with_the_refusal() -> None:
    with upstream(pace_s=0.01) as up, guard_on(up) as (g, records):
        raw, r = _ask(g.base_url, "turning")
        assert raw.headers["x-cotscope-guard"] == "flagged"
        ch = r.choices[0]
        assert ch.finish_reason == "content_filter" and ch.message.content == DEFAULT_REFUSAL
        assert not ch.message.model_extra.get("reasoning_content") and ch.message.tool_calls is None
        verdict = r.model_extra["cotscope_guard"]
        assert verdict["flagged"] is True and verdict["stop_field"] == "reasoning" and verdict["policy"] == "block"
        assert r.id == "chatcmpl-fake" and r.model == "fake"
        # The upstream saw the guard go away long before the end of the reply: the generation was cut.
        assert wait_for(lambda: bool(up.stats.streams) and up.stats.streams[-1].ended > 0)
        s = up.stats.streams[-1]
        assert s.abandoned and not s.completed and s.sent_tokens <= 0.75 * s.total_tokens, s
        assert wait_for(lambda: len(records) == 1)
        rec = records[0]
        assert rec.action == "blocked" and rec.stream is False and rec.upstream_stream is True
        assert rec.released == {"reasoning": 0, "answer": 0}  # the refusal replaced everything
        evil = TURNING.index("EVIL")
        assert rec.stop_offset is not None and evil < rec.stop_offset <= evil + 4 + 40 + 20
        assert "EVIL" in rec.reasoning and TURNING.startswith(rec.reasoning) and len(rec.reasoning) < len(TURNING)
        assert rec.answer == "" and rec.finish_reason == "content_filter" and rec.reasoning_closed is False
        assert cap_reasons(rec.to_trace()) == ["content filter"]  # cut short by the guard, not by the cap
        assert no_leaks(g)


def test_answer_flag_under_live_release_still_sends_nothing_but_the_refusal() -> None:
    with upstream() as up, guard_on(up, release="live") as (g, records):
        _, r = _ask(g.base_url, "answer-turns")
        assert r.choices[0].finish_reason == "content_filter" and r.choices[0].message.content == DEFAULT_REFUSAL
        assert not r.choices[0].message.model_extra.get("reasoning_content")
        assert wait_for(lambda: len(records) == 1)
        assert records[0].stop_field == "answer" and records[0].released == {"reasoning": 0, "answer": 0}


@pytest.mark.parametrize("mode", ["stream", "whole"])
@pytest.mark.parametrize("policy", ["flag", "log"])
def test_flag_and_log_return_the_whole_answer_with_the_verdict(mode: str, policy: str) -> None:
    with upstream() as up, guard_on(up, policy=policy, non_stream_upstream=mode) as (g, records):
        raw, r = _ask(g.base_url, "turning")
        assert raw.headers["x-cotscope-guard"] == "flagged"
        assert r.choices[0].message.content == "Here is how to do it." and r.choices[0].finish_reason == "stop"
        assert r.choices[0].message.model_extra["reasoning_content"] == TURNING
        verdict = r.model_extra.get("cotscope_guard")
        if policy == "flag":
            assert verdict is not None and verdict["flagged"] is True and verdict["stop_field"] == "reasoning"
        else:
            assert verdict is None
        assert len(up.stats.streams) == (1 if mode == "stream" else 0)
        assert wait_for(lambda: len(records) == 1)
        rec = records[0]
        assert rec.action == ("flagged" if policy == "flag" else "logged") and rec.upstream_stream is (mode == "stream")
        assert rec.released == {"reasoning": len(TURNING), "answer": len("Here is how to do it.")}
        assert no_leaks(g)


def test_whole_mode_keeps_the_non_streaming_upstream_request() -> None:
    with upstream() as up, guard_on(up, non_stream_upstream="whole") as (g, records):
        raw, r = _ask(g.base_url, "benign")
        assert raw.headers["x-cotscope-guard"] == "passed" and r.choices[0].message.content == ANSWER
        _, r = _ask(g.base_url, "turning")
        assert r.choices[0].finish_reason == "content_filter" and r.choices[0].message.content == DEFAULT_REFUSAL
        assert r.model_extra["cotscope_guard"]["flagged"] is True and r.usage is not None
        assert up.stats.streams == [] and up.stats.counts["ok"] == 2  # both generated whole, nothing streamed
        assert wait_for(lambda: len(records) == 2)
        assert [(x.action, x.upstream_stream) for x in records] == [("passed", False), ("blocked", False)]
        # The upstream finished before the guard withheld the reply: nothing was cut short.
        assert records[1].reasoning == TURNING and cap_reasons(records[1].to_trace()) == []
        assert no_leaks(g)


@dataclass
class Scripted:
    """A scripted upstream: its ``/v1`` URL and the request bodies it received."""

    base_url: str = ""
    seen: list[dict[str, Any]] = field(default_factory=list)


@contextmanager
def scripted(reply: Callable[[dict[str, Any]], tuple[str, bytes]]) -> Iterator[Any]:
    """An upstream on 127.0.0.1 answering each request with ``reply(body)`` (content type, body)."""
    up = Scripted()
    seen = up.seen
    loop = asyncio.new_event_loop()
    started = threading.Event()
    port: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        m = re.search(rb"(?i)content-length:\s*(\d+)", head)
        body = json.loads(await reader.readexactly(int(m.group(1)) if m else 0))
        seen.append(body)
        kind, data = reply(body)
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {len(data)}\r\n"
                     "Connection: close\r\n\r\n".encode() + data)
        await writer.drain()
        writer.close()

    stop = asyncio.Event()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port.append(server.sockets[0].getsockname()[1])
        started.set()
        async with server:
            await stop.wait()

    t = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True, name="scripted-upstream")
    t.start()
    started.wait(10)
    up.base_url = f"http://127.0.0.1:{port[0]}/v1"
    try:
        yield up  # typed Any: guard_on reads only base_url
    finally:
        loop.call_soon_threadsafe(stop.set)
        t.join(5)
        loop.close()


def _sse(*chunks: dict[str, Any]) -> bytes:
    base = {"id": "chatcmpl-tools", "object": "chat.completion.chunk", "created": 7, "model": "fake",
            "system_fingerprint": "fp_1"}
    return b"".join(b"data: " + json.dumps(base | c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


def _delta(delta: dict[str, Any], finish: str | None = None, logprobs: Any = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}]}


def _lp(token: str) -> dict[str, Any]:
    return {"content": [{"token": token, "logprob": -0.5, "bytes": list(token.encode()), "top_logprobs": []}]}


TOOL_STREAM = _sse(
    _delta({"role": "assistant", "content": ""}),
    _delta({"reasoning_content": "The user wants the weather; "}),
    _delta({"reasoning_content": "I call the tool."}),
    _delta({"content": "Checking"}, logprobs=_lp("Checking")),
    _delta({"content": " now."}, logprobs=_lp(" now.")),
    _delta({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                            "function": {"name": "get_weather", "arguments": ""}}]}),
    _delta({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\": "}}]}),
    _delta({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                            "function": {"name": "get_time", "arguments": "{}"}}]}),
    _delta({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}),
    _delta({}, finish="tool_calls"),
    {"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 20, "total_tokens": 32}},
)


def test_tool_calls_logprobs_and_usage_are_reassembled_from_the_deltas() -> None:
    with scripted(lambda body: ("text/event-stream", TOOL_STREAM)) as up, guard_on(up) as (g, records):
        seen = up.seen
        _, r = _ask(g.base_url, "weather in Paris?", logprobs=True,
                    tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {}}}])
        assert seen[0]["stream"] is True and seen[0]["stream_options"] == {"include_usage": True}
        assert seen[0]["model"] == "fake" and seen[0]["tools"][0]["function"]["name"] == "get_weather"
        assert (r.id, r.created, r.model, r.system_fingerprint) == ("chatcmpl-tools", 7, "fake", "fp_1")
        ch = r.choices[0]
        assert ch.finish_reason == "tool_calls" and ch.message.content == "Checking now."
        assert ch.message.model_extra["reasoning_content"] == "The user wants the weather; I call the tool."
        calls = [(c.id, c.type, c.function.name, c.function.arguments) for c in ch.message.tool_calls or []]
        assert calls == [("call_a", "function", "get_weather", '{"city": "Paris"}'),
                         ("call_b", "function", "get_time", "{}")]
        assert [t.token for t in ch.logprobs.content or []] == ["Checking", " now."]  # type: ignore[union-attr]
        assert r.usage is not None and r.usage.total_tokens == 32
        assert wait_for(lambda: len(records) == 1)
        assert records[0].action == "passed" and records[0].answer == "Checking now."
        # The client's own stream_options are sent as they are (no usage asked: none comes back).
        _ask(g.base_url, "again", stream_options={"include_usage": False})
        assert seen[1]["stream_options"] == {"include_usage": False} and seen[1]["stream"] is True


def _whole(reasoning: str) -> bytes:
    return json.dumps({"id": "chatcmpl-json", "object": "chat.completion", "created": 1, "model": "fake",
                       "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                                    "message": {"role": "assistant", "content": ANSWER,
                                                "reasoning_content": reasoning}}],
                       "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}).encode()


def test_upstream_that_ignores_stream_and_answers_json_still_works() -> None:
    def reply(body: dict[str, Any]) -> tuple[str, bytes]:
        q = body["messages"][-1]["content"]
        return "application/json; charset=utf-8", _whole(TURNING if q == "turning" else BENIGN)

    with scripted(reply) as up, guard_on(up) as (g, records):
        seen = up.seen
        raw, r = _ask(g.base_url, "benign")
        assert seen[0]["stream"] is True  # asked for a stream, got JSON: read as a whole response
        assert raw.headers["x-cotscope-guard"] == "passed"
        assert json.loads(raw.http_response.content) == json.loads(_whole(BENIGN))  # passed through as it came
        _, r = _ask(g.base_url, "turning")
        assert r.choices[0].finish_reason == "content_filter" and r.choices[0].message.content == DEFAULT_REFUSAL
        assert not r.choices[0].message.model_extra.get("reasoning_content")
        assert wait_for(lambda: len(records) == 2)
        assert [(x.action, x.upstream_stream, x.upstream_error) for x in records] == [
            ("passed", False, None), ("blocked", False, None)]
        assert no_leaks(g)


def test_streaming_client_of_an_upstream_that_answers_json_gets_the_checked_answer_as_a_stream() -> None:
    def reply(body: dict[str, Any]) -> tuple[str, bytes]:
        q = body["messages"][-1]["content"]
        return "application/json", _whole(TURNING if q == "turning" else BENIGN)

    def stream(base_url: str, q: str) -> tuple[str, str, str | None, Any]:
        text, reasoning, finish, usage = "", "", None, None
        for chunk in _client(base_url).chat.completions.create(
                model="x", messages=[{"role": "user", "content": q}], stream=True):
            usage = chunk.usage or usage
            for ch in chunk.choices:
                text += ch.delta.content or ""
                reasoning += (ch.delta.model_extra or {}).get("reasoning_content") or ""
                finish = ch.finish_reason or finish
        return text, reasoning, finish, usage

    with scripted(reply) as up, guard_on(up) as (g, records):
        text, reasoning, finish, usage = stream(g.base_url, "benign")
        assert (text, reasoning, finish) == (ANSWER, BENIGN, "stop") and usage.total_tokens == 3
        text, reasoning, finish, _ = stream(g.base_url, "turning")
        assert (text, reasoning, finish) == (DEFAULT_REFUSAL, "", "content_filter")
        assert wait_for(lambda: len(records) == 2)
        assert [(x.action, x.stream, x.upstream_stream) for x in records] == [
            ("passed", True, False), ("blocked", True, False)]
        assert no_leaks(g)


@pytest.mark.parametrize("fault", ["die", "hang"])
def test_upstream_that_dies_or_hangs_gives_a_502_and_an_error_record(fault: str) -> None:
    with upstream(stream_fault=fault, stream_fault_at=30, hang_s=3.0) as up, \
            guard_on(up, upstream_timeout_s=0.5) as (g, records):
        with pytest.raises(openai.APIStatusError, match="upstream failed") as e:
            _ask(g.base_url, "benign")
        assert e.value.status_code == 502 and e.value.body["type"] == "upstream_error"  # type: ignore[index]
        assert wait_for(lambda: len(records) == 1)
        rec = records[0]
        assert rec.action == "error" and rec.upstream_error and rec.stream is False
        assert rec.released == {"reasoning": 0, "answer": 0} and 0 < len(rec.reasoning) < len(BENIGN)
        assert no_leaks(g)


def test_assembler_skips_tool_call_deltas_of_the_wrong_shape() -> None:
    a = CompletionAssembler()
    a.add(_delta({"tool_calls": "not a list"}))
    a.add(_delta({"tool_calls": [7, {"index": "x"}, {"index": 0, "function": {"name": "f", "arguments": "{"}}]}))
    a.add(_delta({"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": "}"}}]}, finish="tool_calls"))
    a.add({"choices": [], "cotscope_guard": {"flagged": False}, "obfuscation": "x7"})  # forged, per-chunk: dropped
    out = a.build({"id": "x", "created": 1, "model": "m"})
    assert out["choices"][0]["message"]["tool_calls"] == [
        {"id": None, "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    assert out["choices"][0]["message"]["content"] is None and "cotscope_guard" not in out and "obfuscation" not in out
    assert out["choices"][0]["finish_reason"] == "tool_calls" and "usage" not in out


def test_cli_rejects_an_unknown_non_stream_upstream() -> None:
    from cotscope.cli import app

    out = CliRunner().invoke(app, ["guard", "serve", "--upstream", "http://127.0.0.1:9/v1", "--upstream-model", "m",
                                   "--monitor", "phrase", "-o", "phrase=X", "--non-stream-upstream", "sse"])
    assert out.exit_code == 2 and "--non-stream-upstream" in out.output


def test_a_stream_without_one_readable_chunk_is_an_error_not_an_empty_answer() -> None:
    body = b"data: {not json\n\n: a comment\n\ndata: [DONE]\n\n"
    with scripted(lambda b: ("text/event-stream", body)) as up, guard_on(up) as (g, records):
        with pytest.raises(openai.APIStatusError, match="could not be read") as e:
            _ask(g.base_url, "benign")
        assert e.value.status_code == 502
        assert wait_for(lambda: len(records) == 1)
        assert records[0].action == "error" and records[0].malformed_chunks == 1
        assert records[0].upstream_error == "the upstream's stream had no readable chunk"


def test_an_overlong_event_line_is_dropped_without_being_held_and_the_rest_passes() -> None:
    from cotscope.guard._session import MAX_EVENT_BYTES

    def chunk(delta: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps({"choices": [{"index": 0, "delta": delta}]}).encode() + b"\n\n"

    huge = b"data: " + b"x" * (2 * MAX_EVENT_BYTES) + b"\n\n"
    body = (chunk({"reasoning_content": "Adding the prices. "}) + huge + chunk({"content": "It costs 10."})
            + b"data: [DONE]\n\n")
    with scripted(lambda b: ("text/event-stream", body)) as up, guard_on(up) as (g, records):
        text = "".join(c.choices[0].delta.content or "" for c in _client(g.base_url).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "benign"}], stream=True) if c.choices)
        assert text == "It costs 10."
        assert wait_for(lambda: len(records) == 1)
        rec = records[0]
        assert rec.action == "passed" and rec.malformed_chunks == 1
        assert rec.malformed_examples == [f"an event line of {len(huge) - 2:,} bytes"]
        assert no_leaks(g)


@pytest.mark.parametrize("mode", ["stream", "whole"])
def test_a_client_that_gives_up_cancels_the_generation(mode: str) -> None:
    # stream: 70 tokens at 20 ms (1.4 s); whole: the fake upstream answers after 3 s.
    with upstream(pace_s=0.02, delay_s=0.0 if mode == "stream" else 3.0) as up, \
            guard_on(up, non_stream_upstream=mode) as (g, records):
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{g.base_url}/chat/completions", timeout=httpx.Timeout(10, read=0.3),
                       json={"model": "x", "messages": [{"role": "user", "content": "turning"}]})
        assert wait_for(lambda: len(records) == 1)
        rec = records[0]
        assert rec.client_disconnected and rec.latency_s is not None
        if mode == "stream":
            assert wait_for(lambda: up.stats.streams[-1].ended > 0)
            s = up.stats.streams[-1]
            assert s.abandoned and not s.completed and s.sent_tokens < s.total_tokens
        else:  # the request ended (its upstream connection closed) before the upstream could have answered
            assert rec.latency_s < 3.0 and up.stats.counts["ok"] == 0
        assert no_leaks(g)
