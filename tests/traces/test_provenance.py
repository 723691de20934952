"""Reasoning provenance: the span API, and every reader filling it (issue 18)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cotscope.traces import (
    ProvenanceSpan,
    ReadStats,
    Trace,
    iter_row_batches,
    parse_kinds,
    provenance_kinds,
    provenance_label,
    read_traces,
    reasoning_of_kinds,
    reasoning_ranges,
)
from cotscope.traces._formats import detect_record
from cotscope.traces._provenance import check_spans
from cotscope.traces._trace import trace_id_for


def _jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _one(tmp_path: Path, rec: dict[str, Any]) -> Trace:
    errors: list[Any] = []
    traces = list(read_traces(_jsonl(tmp_path / "t.jsonl", [rec]), errors=errors))
    assert not errors and len(traces) == 1, errors
    return traces[0]


def _spans(t: Trace) -> list[tuple[str, int, int, str | None]]:
    return [(s.kind, s.start, s.end, s.payload) for s in t.reasoning_provenance]


def _id_without_provenance(t: Trace) -> str:
    return trace_id_for([m.model_dump() for m in t.prompt], t.reasoning, t.answer, t.model, t.strategy,
                        t.group_id, t.sample_index)


# -- the API ---------------------------------------------------------------------------------------------------


def _trace(reasoning: str, *spans: tuple[str, int, int]) -> Trace:
    return Trace(reasoning=reasoning, reasoning_provenance=[ProvenanceSpan(kind=k, start=s, end=e)  # type: ignore[arg-type]
                                                            for k, s, e in spans])


def test_label_rule() -> None:
    assert provenance_label(_trace("abc")) == "unknown"
    assert provenance_label(_trace("")) == "none"
    assert provenance_label(_trace("abc", ("raw", 0, 3))) == "raw"
    # fixed order, truncated left out next to content kinds
    assert provenance_label(_trace("ab cd", ("raw", 3, 5), ("prefill", 0, 2), ("truncated", 5, 5))) == "prefill+raw"
    assert provenance_label(_trace("s", ("encrypted", 1, 1), ("summary", 0, 1))) == "summary+encrypted"
    assert provenance_label(_trace("", ("truncated", 0, 0))) == "truncated"
    assert provenance_kinds(_trace("x", ("raw", 0, 1), ("redacted", 1, 1))) == {"raw", "redacted"}


def test_reasoning_of_kinds_maps_offsets() -> None:
    t = _trace("one\n\ntwo\n\nthree", ("raw", 0, 3), ("summary", 5, 8), ("raw", 10, 15), ("encrypted", 15, 15))
    assert reasoning_of_kinds(t, "raw") == "one\n\nthree"
    assert reasoning_ranges(t, ["raw"]) == [(0, 3), (10, 15)]
    assert reasoning_of_kinds(t, "summary") == "two"
    assert reasoning_of_kinds(t, "raw,summary") == "one\n\ntwo\n\nthree"
    assert reasoning_of_kinds(t, "encrypted") == ""  # opaque content is never text
    # touching spans merge into one range
    assert reasoning_ranges(_trace("abcd", ("prefill", 0, 2), ("raw", 2, 4)), "prefill,raw") == [(0, 4)]
    assert reasoning_of_kinds(_trace("free text"), "raw") == ""
    assert reasoning_of_kinds(_trace("free text"), "raw,unknown") == "free text"


def test_bad_kinds_and_spans_are_named() -> None:
    assert parse_kinds(" summary , raw") == ("raw", "summary")
    with pytest.raises(ValueError, match="unknown reasoning kind 'thoughts'"):
        parse_kinds("raw,thoughts")
    with pytest.raises(ValueError, match="no reasoning kind"):
        parse_kinds(" , ")
    with pytest.raises(ValueError, match=r"\[1\].*not inside the reasoning"):
        check_spans([{"kind": "raw", "start": 0, "end": 1}, {"kind": "raw", "start": 2, "end": 9}], "abc")
    with pytest.raises(ValueError, match="unknown kind 'secret'"):
        check_spans([{"kind": "secret", "start": 0, "end": 0}], "")
    with pytest.raises(ValueError, match="before its start"):
        ProvenanceSpan(kind="raw", start=3, end=1)


# -- readers ---------------------------------------------------------------------------------------------------

ANTHROPIC = {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x", "stop_reason": "end_turn",
    "content": [
        {"type": "thinking", "thinking": "Let me think.", "signature": "SIG"},
        {"type": "redacted_thinking", "data": "BLOB"},
        {"type": "text", "text": "Answer."},
    ],
}

RESPONSES = {
    "id": "resp_1", "object": "response", "model": "o4-mini", "status": "completed", "created_at": 1,
    "output": [
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "**Plan** first."},
                                                        {"type": "summary_text", "text": "Then check."}],
         "encrypted_content": "ENC"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Done."}]},
        {"type": "function_call", "name": "lookup", "arguments": "{}", "call_id": "c1"},
    ],
}


def test_anthropic_thinking_and_redacted_thinking(tmp_path: Path) -> None:
    t = _one(tmp_path, ANTHROPIC)
    assert t.source is not None and t.source.format == "anthropic"
    assert provenance_kinds(t) == {"raw", "redacted"}
    assert _spans(t) == [("raw", 0, 13, "SIG"), ("redacted", 13, 13, "BLOB")]
    assert (t.reasoning, t.answer) == ("Let me think.", "Answer.")
    assert t.id == _id_without_provenance(t)  # provenance is not part of the id


def test_chat_blocks_place_spans_in_the_joined_text(tmp_path: Path) -> None:
    t = _one(tmp_path, {"messages": [
        {"role": "user", "content": "q?"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "first thought", "signature": "x"},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "thinking", "thinking": "second thought"},
            {"type": "text", "text": "<think>and in text</think>The answer."},
        ]},
        {"role": "user", "content": "more?"},
        {"role": "assistant", "content": "<think>turn two"},
    ]})
    assert t.reasoning == "first thought\n\nsecond thought\n\nand in text\n\nturn two"
    assert _spans(t) == [("raw", 0, 13, "x"), ("redacted", 13, 13, "opaque"), ("raw", 15, 29, None),
                         ("raw", 31, 42, None), ("raw", 44, 52, None), ("truncated", 52, 52, None)]
    assert not t.reasoning_closed
    for s in t.reasoning_provenance:
        assert t.reasoning[s.start:s.end] in t.reasoning


def test_openai_responses_summary_and_encrypted(tmp_path: Path) -> None:
    t = _one(tmp_path, RESPONSES)
    assert t.source is not None and t.source.format == "openai-responses"
    assert provenance_kinds(t) == {"summary", "encrypted"}
    assert t.reasoning == "**Plan** first.\n\nThen check."
    assert _spans(t) == [("summary", 0, 15, None), ("summary", 17, 28, None), ("encrypted", 28, 28, "ENC")]
    assert t.answer == "Done." and t.reasoning_closed
    assert [a.name for a in t.actions] == ["lookup"]
    assert provenance_label(t) == "summary+encrypted"


def test_openai_responses_cut_by_the_limit_and_batch_wrapped(tmp_path: Path) -> None:
    cut = {"id": "resp_2", "object": "response", "model": "o3", "status": "incomplete",
           "incomplete_details": {"reason": "max_output_tokens"},
           "output": [{"type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": "hmm"}]}]}
    t = _one(tmp_path, cut)
    assert not t.reasoning_closed and t.answer == ""
    assert _spans(t) == [("raw", 0, 3, None), ("truncated", 3, 3, None)]
    batch = {"custom_id": "r-1", "response": {"status_code": 200, "body": RESPONSES}}
    t = _one(tmp_path, batch)
    assert t.source is not None and t.source.format == "openai-batch" and t.group_id == "r-1"
    assert provenance_kinds(t) == {"summary", "encrypted"}


def test_gemini_thought_parts_and_signatures(tmp_path: Path) -> None:
    rec = {"modelVersion": "gemini-2.5-flash", "responseId": "r1", "candidates": [
        {"index": 0, "finishReason": "STOP", "content": {"role": "model", "parts": [
            {"text": "Thinking about it.", "thought": True, "thoughtSignature": "TS"},
            {"text": "Hi", "thoughtSignature": "GSIG"}, {"text": " there."}]}},
        {"index": 1, "finish_reason": "MAX_TOKENS", "content": {"parts": [{"text": "cut", "thought": True}]}},
    ]}
    errors: list[Any] = []
    a, b = read_traces(_jsonl(tmp_path / "g.jsonl", [rec]), errors=errors)
    assert not errors
    assert (a.model, a.reasoning, a.answer) == ("gemini-2.5-flash", "Thinking about it.", "Hi there.")
    assert _spans(a) == [("summary", 0, 18, "TS"), ("encrypted", 18, 18, "GSIG")]
    assert (b.sample_index, b.reasoning_closed) == (1, False)
    assert provenance_label(b) == "summary" and "truncated" in provenance_kinds(b)


def test_openrouter_reasoning_details_keep_the_reasoning_string(tmp_path: Path) -> None:
    msg = {"role": "assistant", "content": "Yes.", "reasoning": "step one. step two.",
           "reasoning_details": [{"type": "reasoning.text", "text": "step one. step two.", "signature": "S"},
                                 {"type": "reasoning.encrypted", "data": "E"}]}
    t = _one(tmp_path, {"id": "gen-1", "object": "chat.completion", "model": "x",
                        "choices": [{"index": 0, "finish_reason": "stop", "message": msg}]})
    assert t.reasoning == "step one. step two."  # the string, so the id is what it was
    assert _spans(t) == [("raw", 0, 19, "S"), ("encrypted", 19, 19, "E")]
    only = {**msg, "reasoning": None, "reasoning_details": [
        {"type": "reasoning.summary", "summary": "In short."}, {"type": "reasoning.encrypted", "data": "E"}]}
    t = _one(tmp_path, {"choices": [{"message": only}]})
    assert (t.reasoning, _spans(t)) == ("In short.", [("summary", 0, 9, None), ("encrypted", 9, 9, "E")])


def test_text_formats_are_raw_and_unclosed_think_is_truncated(tmp_path: Path) -> None:
    t = _one(tmp_path, {"prompt": "q", "response": "<think>I was thinking and"})
    assert _spans(t) == [("raw", 0, 18, None), ("truncated", 18, 18, None)]
    t = _one(tmp_path, {"prompt": "q", "response": "<think>ok</think>A"})
    assert _spans(t) == [("raw", 0, 2, None)]
    t = _one(tmp_path, {"prompt": "q", "response": "just an answer"})
    assert t.reasoning_provenance == [] and provenance_label(t) == "none"
    t = _one(tmp_path, {"choices": [{"finish_reason": "length", "message": {
        "role": "assistant", "content": "", "reasoning_content": "long..."}}]})
    assert provenance_kinds(t) == {"raw", "truncated"} and not t.reasoning_closed


def test_inspect_redacted_block_keeps_its_readable_summary(tmp_path: Path) -> None:
    t = _one(tmp_path, {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": [
        {"type": "reasoning", "reasoning": "gAAAA-encrypted", "summary": "I weighed it.", "redacted": True},
        {"type": "text", "text": "ok"}]}]})
    assert _spans(t) == [("summary", 0, 13, None), ("redacted", 13, 13, "gAAAA-encrypted")]


def test_safechain_prefill_spans(tmp_path: Path) -> None:
    zero = {"meta_info": {"model": "m", "prompt": "ZeroThink"}, "data": [
        {"instruction": "q", "prompt": "<|User|>q<|Assistant|><think>\n\n</think>\n\n", "response": ["Sure."]}]}
    less = {"meta_info": {"model": "m", "prompt": "LessThink"}, "data": [
        {"instruction": "q", "prompt": "<|User|>q<|Assistant|><think>\nOkay, short.\n</think>\n\n",
         "response": ["Sure."]}]}
    (tmp_path / "z.json").write_text(json.dumps(zero))
    (tmp_path / "l.json").write_text(json.dumps(less))
    (t,) = read_traces(tmp_path / "z.json")
    assert _spans(t) == [("prefill", 0, 0, None)] and provenance_label(t) == "prefill"
    (t,) = read_traces(tmp_path / "l.json")
    assert _spans(t) == [("prefill", 0, len("Okay, short."), None)]


def test_detection_stays_unambiguous() -> None:
    assert detect_record(RESPONSES) == "openai-responses"
    assert detect_record({"output": [{"type": "message", "content": "x"}]}) == "openai-responses"
    assert detect_record({"prompt": "q", "output": "text"}) == "pair"
    assert detect_record({"prompt": "q", "output": ["a", "b"]}) == "pair"
    assert detect_record({"candidates": [{}]}) == "gemini"
    assert detect_record(ANTHROPIC) == "anthropic"
    assert detect_record({"choices": [{"message": {}}]}) == "openai-chat"


def test_explicit_spans_are_checked(tmp_path: Path) -> None:
    bad = {"prompt": "q", "reasoning": "abc", "answer": "a",
           "reasoning_provenance": [{"kind": "raw", "start": 0, "end": 10}]}
    errors: list[Any] = []
    assert list(read_traces(_jsonl(tmp_path / "b.jsonl", [bad]), errors=errors)) == []
    assert errors and errors[0].line == 1 and "not inside the reasoning" in errors[0].error
    # A CSV cell holds the export's spans as JSON text.
    (tmp_path / "c.csv").write_text('prompt,reasoning,answer,reasoning_provenance\nq,abc,a,"[{""kind"": ""summary"", '
                                    '""start"": 0, ""end"": 3}]"\nq,abc,b,not json\n')
    errors = []
    (t,) = read_traces(tmp_path / "c.csv", errors=errors)
    assert _spans(t) == [("summary", 0, 3, None)]
    assert len(errors) == 1 and errors[0].line == 3 and "not valid JSON" in errors[0].error


# -- what was lost -------------------------------------------------------------------------------------------


def test_lost_fields_are_counted_per_format(tmp_path: Path) -> None:
    chat = {"id": "c", "object": "chat.completion", "model": "m", "created": 1, "system_fingerprint": None,
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": {"content": []},
                         "message": {"role": "assistant", "content": "x", "refusal": None,
                                     "annotations": [{"type": "url"}]}}]}
    p = _jsonl(tmp_path / "l.jsonl", [chat, chat, RESPONSES, {"messages": [
        {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "extra": 1}, "not an object"])
    stats = ReadStats()
    for _ in iter_row_batches(p, stats=stats):
        pass
    lost = {(d["format"], d["field"]): (d["reason"], d["records"]) for d in stats.lost_records()}
    assert lost == {
        ("openai-chat", "created"): ("not read by the openai-chat reader", 2),
        ("openai-chat", "choices[].logprobs"): ("log-probabilities are not kept", 2),
        ("openai-chat", "message.annotations"): ("assistant message field not read", 2),
        ("openai-responses", "created_at"): ("not read by the openai-responses reader", 1),
    }  # null fields held nothing; the chat record's extra key is kept in metadata; the bad line is rejected
    assert (stats.records, stats.accepted, stats.rejected) == (5, 4, 1)
