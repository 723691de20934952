"""Reading upstream streams (``<think>`` splitting, chunk parsing, opaque blocks) and the shared StreamChecker."""

from __future__ import annotations

import itertools

import pytest

from cotscope.guard import MalformedEvent, ThinkSplitter, count_opaque, parse_chunk
from cotscope.monitors import MonitorResult, StreamChecker


def _split(pieces: list[str]) -> tuple[str, str]:
    sp = ThinkSplitter()
    out = [x for p in pieces for x in sp.feed(p)] + sp.flush()
    return "".join(t for f, t in out if f == "reasoning"), "".join(t for f, t in out if f == "answer")


@pytest.mark.parametrize("cut", range(1, 30))
def test_think_tags_split_across_chunks(cut: int) -> None:
    text = "  <think>plan a</think>\n\nanswer b"
    assert _split([text[:cut], text[cut:]]) == ("plan a", "answer b")
    assert _split(list(text)) == ("plan a", "answer b")  # one character per chunk


def test_think_splitter_edge_cases() -> None:
    assert _split(["no tags at all"]) == ("", "no tags at all")
    assert _split(["<think>never closed"]) == ("never closed", "")
    assert _split(["<think>ends on a partial tag </thi"]) == ("ends on a partial tag </thi", "")
    assert _split(["<thinking is not the tag"]) == ("", "<thinking is not the tag")
    sp = ThinkSplitter()
    assert sp.feed("<think>a</th") == [("reasoning", "a")] and sp.pending == "</th"


def test_parse_chunk_reads_text_and_rejects_bad_shapes() -> None:
    _, d = parse_chunk('{"choices":[{"index":0,"delta":{"reasoning_content":"r","content":"c"},'
                       '"finish_reason":"stop"}]}')
    assert (d.reasoning, d.content, d.finish_reason) == ("r", "c", "stop")
    _, d = parse_chunk('{"choices":[],"usage":{"total_tokens":3}}')
    assert not d.has_choice and d.content == ""
    for bad, why in [("{oops", "not JSON"), ("[1]", "not an object"), ('{"choices":7}', "not a list"),
                     ('{"choices":[{"delta":{"content":5}}]}', "content"), ('{"choices":[{"index":1}]}', "n=1"),
                     ('{"choices":[{"delta":{"reasoning":[1]}}]}', "reasoning")]:
        with pytest.raises(MalformedEvent, match=why):
            parse_chunk(bad)


def test_opaque_blocks_are_those_without_readable_text() -> None:
    assert count_opaque([{"type": "reasoning.encrypted", "data": "xx"}]) == 1
    assert count_opaque([{"type": "thinking", "thinking": "readable", "signature": "sig"}]) == 0
    assert count_opaque([{"type": "redacted_thinking", "data": "xx"}, {"type": "reasoning.text", "text": "t"}]) == 1
    assert count_opaque("gAAAA") == 1 and count_opaque(None) == 0


def test_stream_checker_covers_a_burst_with_overlapping_windows() -> None:
    ch = StreamChecker(check_every=10, window=50)
    ch.feed("x" * 30)
    req = ch.request()
    assert req.offsets == [0] and (req.start, req.end) == (0, 30)
    ch.record(req, [MonitorResult(score=0.1, label=False)])
    ch.feed("y" * 200)  # a burst much longer than the window: no character may go unread
    req = ch.request()
    spans = [(o, o + len(t.reasoning)) for o, t in zip(req.offsets, req.traces, strict=True)]
    assert spans[-1][1] == 230 and spans[0][0] <= 30
    assert all(a[1] > b[0] for a, b in itertools.pairwise(spans))  # consecutive windows overlap
    assert all(e - s <= 50 for s, e in spans)
    ch.record(req, [MonitorResult(score=0.2, label=False)] * (len(spans) - 1) + [MonitorResult(score=0.9, label=True)])
    assert ch.stopped and ch.stop_offset == 230 and ch.passed == 30 and ch.suspicion == 0.9


def test_stream_checker_unscored_check_neither_passes_nor_stops() -> None:
    ch = StreamChecker(check_every=5, window=None, first_check=2)
    ch.feed("abc")
    assert ch.due()
    req = ch.request()
    ch.record(req, [MonitorResult(parse_error="garbled")])
    assert not ch.stopped and ch.passed == 0 and ch.parse_errors == 1
    assert ch.fail(req, closed=False) is False and ch.passed == 3
    ch.feed("defgh")
    req = ch.request()
    assert ch.fail(req, closed=True) and ch.stop_offset == 8


# -- the SSE line splitter ----------------------------------------------------------------------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from cotscope.guard._parse import LineSplitter  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from("ab:é\r"), max_size=40), max_size=12),
       st.sampled_from([b"\n", b"\r\n"]), st.booleans(), st.lists(st.integers(1, 30), max_size=40))
def test_line_splitter_returns_each_line_once_whatever_the_chunking(lines: list[str], end: bytes, last_open: bool,
                                                                      cuts: list[int]) -> None:
    lines = [ln.rstrip("\r") for ln in lines]  # a CR at the end of a line is part of its line end
    data = b"".join(ln.encode() + end for ln in lines)
    if last_open and lines:
        data = data[:-len(end)]
    pieces, i = [], 0
    for c in cuts:
        pieces.append(data[i:i + c])
        i += c
    pieces.append(data[i:])
    sp = LineSplitter(max_bytes=20)
    got = [x for p in pieces for x in sp.feed(p)] + sp.close()
    keep = [ln for ln in lines if len(ln.encode()) <= 20]
    too_long = [len(ln.encode()) for ln in lines if len(ln.encode()) > 20]
    if last_open and lines and lines[-1] == "":
        keep = keep[:-1]  # an empty unterminated last line is no line
    assert got == keep and sp.dropped == too_long


def test_line_splitter_never_holds_an_overlong_line() -> None:
    sp = LineSplitter(max_bytes=1000)
    for _ in range(100):
        assert sp.feed(b"x" * 10_000) == []
        assert sum(len(p) for p in sp._parts) <= 1000
    assert sp.feed(b"y\ndata: ok\n") == ["data: ok"]
    assert sp.dropped == [1_000_001]
    assert LineSplitter(10).feed("é\n".encode()[:1] + b"\n") == ["\ufffd"]  # invalid UTF-8 is replaced
