"""Tool calls are monitored: their name and arguments are checked text, held under ``block`` until checked.

A model that reasons benignly and then calls a tool with a harmful argument (``rm -rf /``, an exfiltration
address) is what an agent deployment must stop; tool-call deltas used to pass through unread.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from cotscope.guard import DEFAULT_REFUSAL
from cotscope.guard._parse import MalformedEvent, parse_chunk
from cotscope.store import Store

from .conftest import guard_on, no_leaks, wait_for
from .test_nonstream import TOOL_STREAM, _ask, _delta, _sse, scripted

# Benign reasoning and content (no "EVIL"), then a tool call whose arguments the phrase monitor flags.
EVIL_TOOL = _sse(
    _delta({"role": "assistant", "content": ""}),
    _delta({"reasoning_content": "The user wants their files tidied; I will call the shell tool."}),
    _delta({"content": "Tidying up now."}),
    _delta({"tool_calls": [{"index": 0, "id": "call_x", "type": "function",
                            "function": {"name": "run_shell", "arguments": ""}}]}),
    _delta({"tool_calls": [{"index": 0, "function": {"name": "run_shell", "arguments": "{\"cmd\": \"EVIL "}}]}),
    _delta({"tool_calls": [{"index": 0, "function": {"arguments": "rm -rf /\"}"}}]}),
    _delta({}, finish="tool_calls"),
)


def _events(base_url: str, q: str) -> list[dict[str, Any]]:
    body = {"model": "x", "messages": [{"role": "user", "content": q}], "stream": True}
    with httpx.stream("POST", f"{base_url}/chat/completions", json=body, timeout=30) as r:
        return [json.loads(line[6:]) for line in r.iter_lines()
                if line.startswith("data: ") and line != "data: [DONE]"]


def _tool_deltas(events: list[dict[str, Any]]) -> list[Any]:
    return [ch["delta"]["tool_calls"] for e in events for ch in e.get("choices") or []
            if (ch.get("delta") or {}).get("tool_calls")]


def test_a_flagged_tool_call_never_reaches_the_client_and_is_recorded(tmp_path: Any) -> None:
    store = tmp_path / "g.duckdb"
    with scripted(lambda body: ("text/event-stream", EVIL_TOOL)) as up, \
            guard_on(up, store=store, release="live") as (g, records):
        events = _events(g.base_url, "tidy my files")
        assert _tool_deltas(events) == []  # not one piece of the call left, even under live release
        last = events[-1]["choices"][0]
        assert last["finish_reason"] == "content_filter" and last["delta"]["content"] == DEFAULT_REFUSAL
        assert events[-1]["cotscope_guard"]["stop_field"] == "tools"
        # The reasoning (live) reached the client; the answer waited for the answer check and passed.
        got = "".join(ch["delta"].get("reasoning_content") or "" for e in events for ch in e.get("choices") or [])
        assert got.startswith("The user wants their files tidied")
        assert wait_for(lambda: len(records) == 1)
        rec = records[0]
        assert (rec.action, rec.stop_field, rec.flagged) == ("blocked", "tools", True)
        assert rec.tool_calls == 'run_shell {"cmd": "EVIL rm -rf /"}' and rec.answer == "Tidying up now."
        assert rec.released.get("tools", 0) == 0
        assert rec.evidence and rec.evidence[0].start is None  # a quote of the call, no offsets into the trace
        assert no_leaks(g)
    with Store(store, read_only=True) as st:
        t = st.get(rec.request_id)
        assert t.metadata["tool_calls"] == rec.tool_calls and t.answer == "Tidying up now."
        [res] = st.results(evaluator="guard:phrase")
        assert res["label"] is True and res["details"]["stop_field"] == "tools"


def test_a_benign_tool_call_passes_unchanged_and_is_checked() -> None:
    with scripted(lambda body: ("text/event-stream", TOOL_STREAM)) as up, guard_on(up) as (g, records):
        events = _events(g.base_url, "weather in Paris?")
        sent = [json.loads(line[6:]) for line in TOOL_STREAM.decode().splitlines()
                if line.startswith("data: ") and line != "data: [DONE]"]
        assert events == sent  # every event as the upstream sent it
        assert wait_for(lambda: len(records) == 1)
        rec = records[0]
        # The deltas of the two calls interleave: each switch opens a line with that call's name.
        assert rec.action == "passed" and rec.tool_calls == \
            'get_weather {"city": \nget_time {}\nget_weather "Paris"}'
        assert rec.released["tools"] == len(rec.tool_calls) and rec.checks >= 3  # reasoning, answer, tools


@pytest.mark.parametrize("mode", ["stream", "whole"])
def test_non_streamed_requests_check_tool_calls_too(mode: str) -> None:
    whole = json.dumps({"id": "c", "object": "chat.completion", "created": 1, "model": "fake", "choices": [
        {"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Tidying up now.", "tool_calls": [
                {"id": "call_x", "type": "function",
                 "function": {"name": "run_shell", "arguments": "{\"cmd\": \"EVIL rm -rf /\"}"}}]}}]}).encode()

    def reply(body: dict[str, Any]) -> tuple[str, bytes]:
        return ("text/event-stream", EVIL_TOOL) if body.get("stream") else ("application/json", whole)

    with scripted(reply) as up, guard_on(up, non_stream_upstream=mode) as (g, records):
        _, r = _ask(g.base_url, "tidy my files")
        ch = r.choices[0]
        assert ch.finish_reason == "content_filter" and ch.message.content == DEFAULT_REFUSAL
        assert not ch.message.tool_calls
        assert wait_for(lambda: len(records) == 1)
        assert (records[0].stop_field, records[0].upstream_stream) == ("tools", mode == "stream")


@pytest.mark.parametrize("calls", ["not a list", [7], [{"index": "0"}], [{"function": "f"}],
                                   [{"function": {"name": 3}}], [{"function": {"arguments": {"a": 1}}}]])
def test_tool_calls_the_guard_cannot_read_make_the_event_malformed(calls: Any) -> None:
    data = json.dumps({"choices": [{"index": 0, "delta": {"tool_calls": calls}}]})
    with pytest.raises(MalformedEvent):
        parse_chunk(data)


def test_tool_call_pieces_keep_index_name_and_arguments() -> None:
    data = json.dumps({"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 1, "function": {"name": "f", "arguments": "{\"a\""}}, {"index": 0, "id": "x"}]}}]})
    assert parse_chunk(data)[1].tool_calls == [(1, "f", '{"a"'), (0, None, "")]
