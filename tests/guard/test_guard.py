"""The guard end to end: real openai SDK clients against the guard on 127.0.0.1, a fake upstream behind it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from cotscope.guard import DEFAULT_REFUSAL
from cotscope.models._fakeserver import FakeOpenAIServer
from cotscope.monitors import MonitorResult
from cotscope.traces import Trace

from .conftest import BENIGN, TURNING, guard_on, leaks, no_leaks, upstream, wait_for


def _collect(stream: Any) -> tuple[str, str, str | None, list[Any]]:
    reasoning, content, finish, chunks = "", "", None, []
    for ch in stream:
        chunks.append(ch)
        if ch.choices:
            d = ch.choices[0].delta
            reasoning += getattr(d, "reasoning_content", None) or ""
            content += d.content or ""
            finish = ch.choices[0].finish_reason or finish
    return reasoning, content, finish, chunks


def _raw_events(base_url: str, question: str, **body: Any) -> list[bytes]:
    req = {"model": "fake", "messages": [{"role": "user", "content": question}], "stream": True} | body
    with httpx.stream("POST", f"{base_url}/chat/completions", json=req, timeout=30) as r:
        assert r.status_code == 200
        return [ln.encode() for ln in r.iter_lines() if ln]


def _chat(base_url: str, question: str, **kw: Any) -> Any:
    return OpenAI(base_url=base_url, api_key="k", max_retries=0).chat.completions.create(
        model="anything", messages=[{"role": "user", "content": question}], **kw)


def test_benign_stream_passes_byte_for_byte(benign_up: FakeOpenAIServer) -> None:
    with guard_on(benign_up) as (g, records):
        direct = _raw_events(benign_up.base_url, "benign", stream_options={"include_usage": True})
        guarded = _raw_events(g.base_url, "benign", stream_options={"include_usage": True})
        assert guarded == direct  # every event, in order, byte for byte (usage chunk and [DONE] included)
        reasoning, content, finish, _ = _collect(_chat(g.base_url, "benign", stream=True))
        assert (reasoning, content, finish) == (BENIGN, "The answer is 4.", "stop")
        assert wait_for(lambda: len(records) == 2)
        rec = records[0]
        assert rec.action == "passed" and rec.flagged is False and rec.stop_offset is None
        assert rec.released == {"reasoning": len(BENIGN), "answer": len("The answer is 4.")}
        assert rec.checks >= len(BENIGN) // 40 and rec.usage is not None and rec.ttft_s is not None
        assert no_leaks(g)


def test_flagged_stream_is_cut_and_upstream_sees_the_disconnect() -> None:
    with upstream(pace_s=0.005) as up, guard_on(up) as (g, records):
        reasoning, content, finish, chunks = _collect(_chat(g.base_url, "turning", stream=True))
        assert finish == "content_filter" and content == DEFAULT_REFUSAL
        assert "EVIL" not in reasoning and TURNING.startswith(reasoning)  # the flagged span never left
        assert chunks[-1].model_extra["cotscope_guard"]["flagged"] is True
        assert wait_for(lambda: bool(up.stats.streams) and up.stats.streams[-1].ended > 0)
        s = up.stats.streams[-1]
        assert s.abandoned and not s.completed and s.sent_tokens < s.total_tokens
        assert wait_for(lambda: len(records) == 1)
        rec = records[0]
        evil = TURNING.index("EVIL")
        assert rec.action == "blocked" and rec.flagged is True and rec.stop_field == "reasoning"
        assert rec.stop_offset is not None and evil < rec.stop_offset <= evil + 4 + 40 + 20
        assert rec.released["reasoning"] == len(reasoning) <= evil and rec.released["answer"] == 0
        ev = rec.evidence[0]
        assert ev.verified and TURNING[ev.start:ev.end] == "EVIL"
        assert rec.reasoning_closed is False and rec.finish_reason == "content_filter"
        assert no_leaks(g)


def test_think_tags_in_content_are_watched_as_reasoning() -> None:
    with upstream(reasoning_field=False) as up, guard_on(up) as (g, records):
        _, content, finish, _ = _collect(_chat(g.base_url, "benign", stream=True))
        assert finish == "stop" and content == f"<think>\n{BENIGN}\n</think>\n\nThe answer is 4."
        _, content, finish, _ = _collect(_chat(g.base_url, "turning", stream=True))
        assert finish == "content_filter" and "EVIL" not in content and content.endswith(DEFAULT_REFUSAL)
        assert wait_for(lambda: len(records) == 2)
        assert records[0].reasoning.strip() == BENIGN.strip() and records[0].answer == "The answer is 4."
        assert records[1].stop_field == "reasoning" and "EVIL" in records[1].reasoning
        assert no_leaks(g)


def test_answer_is_checked_before_release_even_with_live_reasoning() -> None:
    with upstream() as up, guard_on(up, release="live") as (g, records):
        reasoning, content, finish, _ = _collect(_chat(g.base_url, "answer-turns", stream=True))
        assert reasoning == BENIGN and finish == "content_filter" and content == DEFAULT_REFUSAL
        reasoning, content, finish, _ = _collect(_chat(g.base_url, "turning", stream=True))
        # live release: reasoning up to the flagged check may have left (the documented leak window)
        assert finish == "content_filter" and "Here is how" not in content
        assert wait_for(lambda: len(records) == 2)
        assert records[0].stop_field == "answer" and records[0].released["answer"] == 0
        rec = records[1]
        assert rec.stop_field == "reasoning" and "EVIL" in reasoning  # live: the flagged span itself left
        assert rec.released["reasoning"] == len(reasoning) <= len(rec.reasoning) < len(TURNING)
        assert no_leaks(g)


def test_non_streaming_requests() -> None:
    with upstream() as up, guard_on(up) as (g, records):
        direct = _chat(up.base_url, "benign")
        raw = OpenAI(base_url=g.base_url, api_key="k", max_retries=0).chat.completions.with_raw_response.create(
            model="x", messages=[{"role": "user", "content": "benign"}])
        assert raw.headers["x-cotscope-guard"] == "passed"
        r = raw.parse()
        assert r.choices[0].message.content == direct.choices[0].message.content
        assert r.choices[0].message.reasoning_content == BENIGN  # type: ignore[attr-defined]
        r = _chat(g.base_url, "turning")
        assert r.choices[0].finish_reason == "content_filter" and r.choices[0].message.content == DEFAULT_REFUSAL
        assert not getattr(r.choices[0].message, "reasoning_content", None)
        assert wait_for(lambda: len(records) == 2)
        assert [x.action for x in records] == ["passed", "blocked"] and not records[1].stream
        assert no_leaks(g)


@pytest.mark.parametrize("policy", ["flag", "log"])
def test_flag_and_log_pass_everything_through(policy: str) -> None:
    with upstream() as up, guard_on(up, policy=policy) as (g, records):
        reasoning, content, finish, chunks = _collect(_chat(g.base_url, "turning", stream=True))
        assert reasoning == TURNING and content == "Here is how to do it." and finish == "stop"
        verdicts = [c.model_extra.get("cotscope_guard") for c in chunks if c.model_extra.get("cotscope_guard")]
        assert verdicts == ([] if policy == "log" else [verdicts[0]])
        if policy == "flag":
            assert verdicts[0]["flagged"] is True and verdicts[0]["stop_field"] == "reasoning"
            raw = OpenAI(base_url=g.base_url, api_key="k").chat.completions.with_raw_response.create(
                model="x", messages=[{"role": "user", "content": "turning"}])
            assert raw.headers["x-cotscope-guard"] == "flagged"
            assert raw.parse().model_extra["cotscope_guard"]["flagged"] is True
        assert wait_for(lambda: len(records) >= 1)
        assert records[0].action == ("flagged" if policy == "flag" else "logged") and records[0].flagged is True
        assert records[0].released["reasoning"] == len(TURNING)


class _Broken:
    """A monitor whose every call fails (or returns an unparsable result)."""

    name = "broken"
    part = "both"
    label_meaning = "flagged"
    preferred_batch = 64

    def __init__(self, how: str) -> None:
        self.how = how

    def config(self) -> dict[str, Any]:
        return {"monitor": "broken", "how": self.how}

    async def monitor(self, traces: Sequence[Trace]) -> list[MonitorResult]:
        if self.how == "raise":
            raise RuntimeError("grader unavailable")
        return [MonitorResult(parse_error="no score in the output", raw="???") for _ in traces]

    async def aclose(self) -> None:
        pass


@pytest.mark.parametrize(("how", "mode"), [("raise", "open"), ("raise", "closed"), ("unparsable", "closed")])
def test_monitor_errors_fail_open_or_closed(how: str, mode: str) -> None:
    with upstream() as up, guard_on(up, monitor=_Broken(how), on_monitor_error=mode) as (g, records):
        reasoning, content, finish, _ = _collect(_chat(g.base_url, "benign", stream=True))
        if mode == "open":
            assert reasoning == BENIGN and finish == "stop"
        else:
            assert finish == "content_filter" and reasoning == "" and content == DEFAULT_REFUSAL
        assert wait_for(lambda: len(records) == 1)
        rec = records[0]
        assert rec.monitor_errors >= 1 and rec.fail_applied and rec.fail_mode == mode
        assert rec.flagged is None and rec.suspicion is None  # a failed check is never a verdict
        assert rec.action == ("passed" if mode == "open" else "blocked")
        assert no_leaks(g)


@pytest.mark.parametrize("opaque", ["pass", "block"])
def test_opaque_reasoning_is_passed_or_blocked_never_silently(opaque: str) -> None:
    sealed = {"reasoning_details": [{"type": "reasoning.encrypted", "data": "gAAAAB..."}]}
    with upstream(first_delta_extra=sealed) as up, guard_on(up, opaque_reasoning=opaque) as (g, records):
        _, _, finish, _ = _collect(_chat(g.base_url, "benign", stream=True))
        assert finish == ("stop" if opaque == "pass" else "content_filter")
        assert wait_for(lambda: len(records) == 1)
        assert records[0].opaque_blocks == 1 and records[0].opaque_policy == opaque
        assert records[0].action == ("passed" if opaque == "pass" else "blocked")


def test_malformed_upstream_chunks_are_dropped_and_counted() -> None:
    with upstream(stream_fault="malformed", stream_fault_at=3) as up, guard_on(up) as (g, records):
        reasoning, content, finish, _ = _collect(_chat(g.base_url, "benign", stream=True))
        assert (reasoning, content, finish) == (BENIGN, "The answer is 4.", "stop")
        assert wait_for(lambda: len(records) == 1)
        assert records[0].malformed_chunks == 3 and len(records[0].malformed_examples) == 3
        assert no_leaks(g)


@pytest.mark.parametrize("fault", ["die", "hang"])
def test_upstream_that_dies_or_hangs_mid_stream(fault: str) -> None:
    with upstream(stream_fault=fault, stream_fault_at=30, hang_s=3.0) as up, \
            guard_on(up, upstream_timeout_s=0.5) as (g, records):
        with pytest.raises(openai.APIError, match="upstream failed"):
            _collect(_chat(g.base_url, "benign", stream=True))
        assert wait_for(lambda: len(records) == 1)
        rec = records[0]
        assert rec.action == "error" and rec.upstream_error
        assert rec.released["reasoning"] <= len(rec.reasoning) < len(BENIGN)
        assert no_leaks(g)


def test_client_disconnect_cancels_everything_and_releases_the_upstream() -> None:
    with upstream(pace_s=0.01) as up, guard_on(up) as (g, records):
        stream = _chat(g.base_url, "benign", stream=True)
        for i, _ in enumerate(stream):
            if i == 3:
                break
        stream.close()
        assert wait_for(lambda: len(records) == 1)
        assert records[0].client_disconnected
        assert wait_for(lambda: up.stats.streams[-1].ended > 0)
        assert up.stats.streams[-1].abandoned and not up.stats.streams[-1].completed
        assert no_leaks(g), leaks(g)


def test_many_concurrent_streams_share_monitor_batches() -> None:
    async def one(client: openai.AsyncOpenAI, q: str) -> str | None:
        s = await client.chat.completions.create(model="x", messages=[{"role": "user", "content": q}], stream=True)
        finish = None
        async for ch in s:
            if ch.choices:
                finish = ch.choices[0].finish_reason or finish
        return finish

    async def main(base: str) -> list[str | None]:
        client = openai.AsyncOpenAI(base_url=base, api_key="k", max_retries=0)
        qs = ["benign", "turning"] * 8
        return await asyncio.gather(*[one(client, q) for q in qs])

    with upstream(pace_s=0.005) as up, guard_on(up) as (g, records):
        finishes = asyncio.run(main(g.base_url))
        assert finishes == ["stop", "content_filter"] * 8
        assert wait_for(lambda: len(records) == 16)
        st = g.guard.batcher.stats
        assert st.max_batch > 1 and st.calls < st.windows  # checks of different streams went in one call
        assert no_leaks(g)


def test_auth_models_and_bad_requests() -> None:
    with upstream() as up:
        with guard_on(up) as (g, _):
            _chat(g.base_url, "benign")
            assert up.stats.authorization[-1] == "Bearer k"  # the caller's header is forwarded
            models = OpenAI(base_url=g.base_url, api_key="k").models.list()
            assert [m.id for m in models.data] == ["fake"]
            r = httpx.post(f"{g.base_url}/chat/completions", content=b"{not json", timeout=10)
            assert r.status_code == 400 and "not JSON" in r.json()["error"]["message"]
            r = httpx.post(f"{g.base_url}/chat/completions", json={"messages": []}, timeout=10)
            assert r.status_code == 400 and "messages" in r.json()["error"]["message"]
            r = httpx.post(f"{g.base_url}/chat/completions", timeout=10,
                           json={"messages": [{"role": "user", "content": "x"}], "n": 2})
            assert r.status_code == 400 and "'n' must be 1" in r.json()["error"]["message"]
        with guard_on(up, upstream_api_key="sk-upstream") as (g, _):
            _chat(g.base_url, "benign")
            assert up.stats.authorization[-1] == "Bearer sk-upstream"


def test_pass_through_of_fields_the_guard_does_not_read(benign_up: FakeOpenAIServer) -> None:
    with guard_on(benign_up) as (g, _):
        events = _raw_events(g.base_url, "benign", stream_options={"include_usage": True}, logprobs=True)
        objs = [json.loads(e[6:]) for e in events if e != b"data: [DONE]"]
        assert objs[-1]["usage"]["total_tokens"] > 0 and all("logprobs" in o["choices"][0] for o in objs[:-1])


def test_store_records_every_request_and_the_commands_read_it(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cotscope.cli import app
    from cotscope.store import Store

    db = tmp_path / "guard.duckdb"
    with upstream() as up, guard_on(up, store=db) as (g, records):
        for q in ("benign", "turning", "benign"):
            _collect(_chat(g.base_url, q, stream=True))
        _chat(g.base_url, "turning")
        assert wait_for(lambda: len(records) == 4)
    with Store(db, read_only=True) as st:  # the guard has stopped: its writer flushed and closed the store
        traces = list(st.traces())
        assert len(traces) == 4 and {t.strategy for t in traces} == {"guard"}
        results = st.results(evaluator="guard:phrase")
        assert sorted(r["label"] for r in results) == [False, False, True, True]
        flagged = [r for r in results if r["label"]]
        assert all(r["evidence"][0]["verified"] and r["evidence"][0]["text"] == "EVIL" for r in flagged)
        assert {r["details"]["action"] for r in results} == {"passed", "blocked"}
        assert st.runs()[0]["kind"] == "guard" and st.runs()[0]["stats"]["written"] == 4
        # A cut stream is incomplete because the guard stopped it, never counted as the token cap; its text is
        # the model's own (raw), like every passed one.
        from cotscope.pipeline import cap_reasons

        blocked = [t for t in traces if t.metadata["guard"]["action"] == "blocked"]
        [cut] = [t for t in blocked if t.metadata["guard"]["stream"]]
        [whole] = [t for t in blocked if not t.metadata["guard"]["stream"]]
        assert cut.metadata["finish_reason"] == "content_filter" and cap_reasons(cut) == ["content filter"]
        # Not streamed by the client, but read upstream as a stream (non_stream_upstream="stream"): cut as well.
        # (Under "whole" the upstream finishes first and nothing is cut short: tests/guard/test_nonstream.py.)
        assert whole.metadata["finish_reason"] == "content_filter" and cap_reasons(whole) == ["content filter"]
        assert whole.metadata["guard"]["upstream_stream"] is True
        assert all(cap_reasons(t) == [] for t in traces if t.metadata["guard"]["action"] == "passed")
        assert all([p.kind for p in t.reasoning_provenance] == ["raw"] for t in traces if t.reasoning)
    runner = CliRunner()
    out = runner.invoke(app, ["export", "--store", str(db), "--with-results"])
    assert out.exit_code == 0, out.output
    rows = [json.loads(ln) for ln in out.stdout.splitlines() if ln.strip()]
    assert len(rows) == 4 and all("guard:phrase" in json.dumps(r) for r in rows)
    # validate: guard traffic, exported and labelled by hand, scores a monitor offline
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text("".join(json.dumps(r | {"label": "EVIL" in r.get("reasoning", "")}) + "\n" for r in rows))
    out = runner.invoke(app, ["validate", "--monitor", "phrase", "-o", "phrase=EVIL", "--labels", str(labelled),
                              "--n-boot", "20", "--json"])
    assert out.exit_code == 0, out.output
    v = json.loads(out.stdout)
    assert (v["scored"], v["positives"], v["bad_records"]) == (4, 2, []) and v["auroc"]["value"] == 1.0
    out = runner.invoke(app, ["report", "--store", str(db), "--out", str(tmp_path / "rep"), "--json"])
    assert out.exit_code == 0, out.output
    assert "EVIL" in (tmp_path / "rep" / "index.html").read_text()
    out = runner.invoke(app, ["judge", "--store", str(db), "-j", "refusal-strings", "--part", "answer"])
    assert out.exit_code == 0, out.output
    out = runner.invoke(app, ["metrics", "--store", str(db), "--json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.stdout)["rows"]
    assert rows and all(r["n"] == 4 for r in rows if "n" in r)


def test_embedded_monitor_in_the_serving_path() -> None:
    with upstream() as up, guard_on(up, monitor_name="local-refusal", monitor_options={}, threshold=0.5,
                                    check_every=200) as (g, records):
        _, _, finish, _ = _collect(_chat(g.base_url, "benign", stream=True))
        assert wait_for(lambda: len(records) == 1, timeout=60)
        rec = records[0]
        assert rec.suspicion is not None and 0.0 <= rec.suspicion <= 1.0 and rec.monitor_errors == 0
        assert rec.checks >= 2 and rec.windows >= 2 and rec.evidence and rec.evidence[0].verified
        ev = rec.evidence[0]
        assert (rec.reasoning if ev.field == "reasoning" else rec.answer)[ev.start:ev.end] == ev.text
        assert finish == ("content_filter" if rec.flagged else "stop")
        assert no_leaks(g)


def test_the_reasonings_last_piece_is_checked_when_the_answer_begins() -> None:
    """A flag in the reasoning's tail (shorter than a check interval) cuts the stream while the answer streams,
    not after the model has written the whole answer."""
    from cotscope.models._fakeserver import FaultConfig, serve_in_thread

    answer = "Here is the plan in many careful words. " * 20
    cfg = FaultConfig(replies={"q": ("Let me think. The EVIL part.", answer)}, pace_s=0.003, reasoning_field=True)
    with serve_in_thread(cfg) as up, guard_on(up, check_every=10_000) as (g, records):
        finish = None
        for chunk in OpenAI(base_url=g.base_url, api_key="k", max_retries=0).chat.completions.create(
                model="x", messages=[{"role": "user", "content": "q"}], stream=True):
            finish = chunk.choices[0].finish_reason if chunk.choices else finish
        assert finish == "content_filter"
        assert wait_for(lambda: len(records) == 1)
        assert (records[0].stop_field, records[0].released["answer"]) == ("reasoning", 0)
        assert wait_for(lambda: up.stats.streams[-1].ended > 0)  # the upstream sees the close on its next write
        s = up.stats.streams[-1]
        assert s.abandoned and s.sent_tokens < s.total_tokens
        assert no_leaks(g)


def test_the_upstream_proxy_is_read_from_the_environment_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from cotscope.guard._app import env_proxy

    for k in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
              "all_proxy"):
        monkeypatch.delenv(k, raising=False)
    assert env_proxy("http://10.0.0.5:8000/v1") is None
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1,.cluster.local")
    assert env_proxy("http://10.0.0.5:8000/v1") == "http://proxy.internal:3128"
    assert env_proxy("http://127.0.0.1:8000/v1") is None
    assert env_proxy("http://vllm.ns.svc.cluster.local:8000/v1") is None
    assert env_proxy("https://api.example.com/v1") is None  # no HTTPS_PROXY set


def test_a_finished_stream_gives_its_upstream_connection_back_for_the_next_request(benign_up: Any) -> None:
    with guard_on(benign_up) as (g, records):
        for _ in range(3):
            _, _, finish, _ = _collect(_chat(g.base_url, "benign", stream=True))
            assert finish == "stop"
        assert wait_for(lambda: len(records) == 3)

        async def pooled() -> int:
            assert g.guard.client is not None
            return sum(len(v) for v in g.guard.client.connector._conns.values())  # type: ignore[union-attr]

        assert g.run(pooled()) == 1  # one keep-alive connection served all three
        assert no_leaks(g)
