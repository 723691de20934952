"""The viewer on stores written by the other commands: `cotscope ingest` of formats that carry reasoning
provenance, `cotscope judge` storing incomplete outcomes and verdicts from the reasoning, and the guard's
recorder. Each store is made by the command itself, never by hand, so a change in what a command writes shows
up here."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from starlette.testclient import TestClient
from typer.testing import CliRunner

from cotscope.cli import app
from cotscope.store import Store
from cotscope.view import ViewSettings, create_app

runner = CliRunner()
BASE = "http://127.0.0.1:8000"

#: An Anthropic message (thinking with a signature, redacted thinking) and an OpenAI Responses object (a reasoning
#: summary with encrypted content), as `cotscope ingest` reads them (the records of tests/cli/test_provenance_cli).
RECORDS = [
    {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x", "stop_reason": "end_turn",
     "content": [{"type": "thinking", "thinking": "I'm sorry, I can't do <b>that</b>.", "signature": "SIG-abc"},
                 {"type": "redacted_thinking", "data": "<script>window.__pwned=1</script>REDACTED-BLOB"},
                 {"type": "thinking", "thinking": "Second thought.", "signature": "SIG-def"},
                 {"type": "text", "text": "Fine, here it is."}]},
    {"object": "response", "model": "o3", "output": [
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Summary: I'm sorry is what I say."}],
         "encrypted_content": "ENC" * 100},
        {"type": "message", "content": [{"type": "output_text", "text": "Here is how."}]}]},
]


def _invoke(*args: str) -> dict[str, object]:
    r = runner.invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    out: dict[str, object] = json.loads(r.stdout)
    return out


def _ids(html: str) -> list[str]:
    return re.findall(r'href="/traces/([^"?]+)\?', html)


def test_ingested_provenance_and_judged_outcomes_show_in_the_viewer(tmp_path: Path) -> None:
    api, cut = tmp_path / "api.jsonl", tmp_path / "cut.jsonl"
    api.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    reasoning = "Let me think about the steps"
    cut.write_text(json.dumps({
        "prompt": [{"role": "user", "content": "q-cut"}], "reasoning": reasoning, "answer": "",
        "reasoning_closed": False, "model": "m", "strategy": "normal", "metadata": {"finish_reason": "length"},
        "reasoning_provenance": [{"kind": "raw", "start": 0, "end": len(reasoning)},
                                 {"kind": "truncated", "start": len(reasoning), "end": len(reasoning)}]}) + "\n")
    store = str(tmp_path / "s.duckdb")
    assert _invoke("ingest", str(api), "--store", store)["traces"] == 2
    assert _invoke("ingest", str(cut), "--store", store)["traces"] == 1
    answer = _invoke("judge", "-j", "refusal-strings", "-p", "answer", "-s", store)
    # refusal-strings reads the whole response (SafeChain's scope): both refusals are quoted from the reasoning.
    assert (answer["incomplete"], answer["verdict_from_reasoning"]) == (1, 2)
    assert _invoke("judge", "-j", "refusal-strings", "-p", "reasoning", "-s", store)["label_true"] == 2

    with Store(store, read_only=True) as st:
        by_model = {t.model: t for t in st.traces()}
    claude, o3, m = by_model["claude-x"].id, by_model["o3"].id, by_model["m"].id
    with TestClient(create_app(ViewSettings(store=Path(store), token="t")), base_url=BASE) as c:
        index = c.get("/").text
        cells = dict(zip(_ids(index), re.findall(r'<td class="pv-col">(.*?)</td>', index), strict=True))
        assert "raw+redacted</span>" in cells[claude] and "summary+encrypted</span>" in cells[o3]
        assert ">incomplete</span>" in cells[m] and "refusal-strings: incomplete (not judged)" in index
        assert _ids(c.get("/", params={"provenance": "summary+encrypted"}).text) == [o3]
        assert _ids(c.get("/", params={"incomplete": "no-answer"}).text) == [m]

        page = c.get(f"/traces/{claude}").text
        blob = "<script>window.__pwned=1</script>REDACTED-BLOB"
        assert f"redacted: opaque content kept, {len(blob)} bytes" in page
        assert "REDACTED-BLOB" not in page and "__pwned" not in page and "SIG-abc" not in page
        # The refusal judge's evidence on the reasoning is marked inside the first thinking block (raw).
        assert re.search(r'<span class="pv pv-raw" title="[^"]*"><mark title="refusal-strings[^"]*">'
                         r"I&#x27;m sorry</mark>", page)
        assert "</mark>, I can&#x27;t do &lt;b&gt;that&lt;/b&gt;.</span>" in page  # escaped, in its raw span

        page = c.get(f"/traces/{o3}").text
        assert '<span class="pv-badge">summary</span>' in page and "encrypted: opaque content kept, 300 bytes" in page
        assert "ENCENC" not in page
        # Refused on the answer part, but the quote is in the provider's summary: badged.
        assert re.search(r"refused</span><span class=\"chip fromr\"[^>]*>from reasoning</span>", page)

        page = c.get(f"/traces/{m}").text
        assert "incomplete (not judged)" in page and "truncated: the token limit cut the reasoning here" in page


def test_a_store_written_by_the_guard_recorder_lists_with_its_verdict(tmp_path: Path) -> None:
    from cotscope.guard import GuardRecord, RecordWriter
    from cotscope.judges import Evidence

    store = tmp_path / "guard.duckdb"
    flagged = GuardRecord(prompt=[{"role": "user", "content": "How do I mix them?"}], model="fake",
                          reasoning="First the user asks. Now the EVIL plan: mix them.", answer="",
                          reasoning_closed=False, action="blocked", stop_field="reasoning", stop_offset=48,
                          suspicion=0.92, flagged=True, evidence=[Evidence(text="EVIL plan")],
                          reason="plans harm", checks=2, windows=2, finish_reason="content_filter")
    passed = GuardRecord(prompt=[{"role": "user", "content": "2+2?"}], model="fake", reasoning="Two plus two.",
                         answer="4.", suspicion=0.01, flagged=False, checks=1, windows=1, finish_reason="stop")

    async def record() -> None:
        w = RecordWriter(store, evaluator="guard:phrase", label_meaning="flagged", config={"monitor": "phrase"},
                         run_config={"upstream": "fake"})
        await w.start()
        w.submit(flagged)
        w.submit(passed)
        await w.aclose()
        assert (w.written, w.failed) == (2, 0)

    asyncio.run(record())
    with TestClient(create_app(ViewSettings(store=store, token="t")), base_url=BASE) as c:
        index = c.get("/").text
        assert "2 of 2" in index and "guard:phrase: flagged 0.92" in index and "guard:phrase: not flagged 0.01" in index
        assert _ids(c.get("/", params={"evaluator": "guard:phrase", "label": "true"}).text) == [flagged.request_id]
        # One batch shares its creation time: store order among the two is by id.
        assert sorted(_ids(c.get("/", params={"strategy": "guard"}).text)) == \
            sorted([flagged.request_id, passed.request_id])
        page = c.get(f"/traces/{flagged.request_id}").text
        assert '<mark title="guard:phrase">EVIL plan</mark>' in page and "plans harm" in page
