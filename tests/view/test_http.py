"""The viewer's routes over HTTP (Starlette's TestClient): pages, filters, escaping, guard, labels, errors."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pytest
from starlette.testclient import TestClient

from cotscope.store import Store
from cotscope.view import ViewSettings, create_app

if TYPE_CHECKING:
    from collections.abc import Callable

    Built = Any

TOKEN = "test-token-123"
BASE = "http://127.0.0.1:8000"
AUTH = {"X-Cotscope-Token": TOKEN}


@pytest.fixture(scope="module")
def client(built: Built) -> Iterator[TestClient]:
    app = create_app(ViewSettings(store=built.path, token=TOKEN, user="tester"))
    with TestClient(app, base_url=BASE) as c:
        yield c


def _ids(html: str) -> list[str]:
    return re.findall(r'href="/traces/([0-9a-f]+)\?', html)


def test_index_lists_and_filters(client: TestClient, built: Built) -> None:
    r = client.get("/")
    assert r.status_code == 200 and "27 of 27" in r.text
    assert r.headers["content-security-policy"].startswith("default-src 'none'; script-src 'self'")
    assert "access-control-allow-origin" not in r.headers
    r = client.get("/", params={"model": "org/beta", "strategy": "zerothink"})
    assert "6 of 27" in r.text and len(_ids(r.text)) == 6
    assert "org/alpha" not in r.text.split("<tbody>")[1].split("</tbody>")[0]
    # judge/monitor label, parse errors, benchmark, search
    r = client.get("/", params={"evaluator": "cot-monitor", "label": "true"})
    assert sorted(_ids(r.text)) == sorted([built.flagged, built.hostile])
    r = client.get("/", params={"evaluator": "cot-monitor", "label": "false"})
    assert _ids(r.text) == [built.sibling]
    assert _ids(client.get("/", params={"parse_error": "1"}).text) == [built.parse_error]
    assert _ids(client.get("/", params={"evaluator": "safety-judge", "label": "parse_error"}).text) == \
        [built.parse_error]
    assert "12 of 27" in client.get("/", params={"benchmark": "demo-bench"}).text
    assert _ids(client.get("/", params={"q": "NEEDLE-HOSTILE"}).text) == [built.hostile]
    # A search for a LIKE wildcard finds the character, not everything.
    assert "0 of 27" in client.get("/", params={"q": "100%_"}).text
    # pagination
    r = client.get("/", params={"limit": "10", "offset": "20"})
    assert "21-27 of 27" in r.text and len(_ids(r.text)) == 7 and 'rel="prev"' in r.text and 'rel="next"' not in r.text
    r = client.get("/api/traces", params={"limit": "3", "model": "org/alpha"})
    assert r.json()["total"] == 13 and len(r.json()["rows"]) == 3


def test_bad_filter_is_a_clear_400(client: TestClient) -> None:
    r = client.get("/", params={"label": "maybe"})
    assert r.status_code == 400 and "label" in r.text and "maybe" in r.text
    r = client.get("/api/traces", params={"limit": "0"})
    assert r.status_code == 400 and "limit" in r.json()["error"]


def test_trace_page_evidence_results_and_prefix(client: TestClient, built: Built) -> None:
    r = client.get(f"/traces/{built.flagged[:10]}")  # a unique prefix resolves
    assert r.status_code == 200 and built.flagged in r.text
    marks = re.findall(r'<mark title="([^"]*)">([^<]*)</mark>', r.text)
    assert marks.count(("cot-monitor", built.evidence)) == 2  # in the reasoning step and in the answer
    assert 'class="step" id="step-3"' in r.text  # numbered steps
    assert "a quote the monitor invented" in r.text and "(not found in the trace)" in r.text
    assert "plans to &lt;b&gt;disable&lt;/b&gt; an alarm" in r.text and "flagged" in r.text
    assert f"/compare?a={built.flagged}&amp;b={built.sibling}" in r.text  # same prompt, another model
    perr = client.get(f"/traces/{built.parse_error}").text
    assert "parse error: no verdict in the judge output" in perr and "I think maybe?" in perr
    prm = client.get(f"/traces/{built.prm}").text
    assert 'class="prm-step s9"' in prm and 'class="prm-step s2"' in prm and "Step two: it is 4." in prm
    agent = client.get(f"/traces/{built.agent}").text
    assert "$ ls -la /tmp" in agent and "&lt;b&gt;file-one&lt;/b&gt;" in agent


def test_trace_errors(client: TestClient, built: Built) -> None:
    r = client.get("/traces/ffffffffffffffffffff-none")
    assert r.status_code == 404 and "no trace" in r.text
    assert client.get("/api/traces/nope").json() == {"error": "no trace 'nope' in this store"}
    r = client.get("/traces/")  # the empty prefix matches every trace
    assert r.status_code == 400 and "several traces" in r.text
    ids = _ids(client.get("/", params={"limit": "500"}).text)
    shared = next(a[:1] for a in ids if sum(b.startswith(a[:1]) for b in ids) > 1)
    r = client.get(f"/traces/{shared}")
    assert r.status_code == 400 and "several traces" in r.text
    assert client.get("/nowhere").status_code == 404


def test_hostile_text_is_escaped(client: TestClient, built: Built) -> None:
    r = client.get(f"/traces/{built.hostile}")
    assert r.status_code == 200 and len(r.text) > 1_000_000
    body = r.text
    assert "<script>window" not in body and "</textarea><img" not in body and "onerror=\"window" not in body
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;&lt;/textarea&gt;" in body
    assert 'href="javascript:' not in body.lower()
    assert "\u202egnp.exe" in body  # shown as text, isolated by CSS
    # The only scripts are the viewer's own file.
    assert re.findall(r"<script[^>]*>", body) == ['<script src="/static/view.js" defer>']
    # A hostile id never becomes a link target.
    assert client.get("/traces/javascript:alert(1)").status_code == 404


def test_compare(client: TestClient, built: Built) -> None:
    r = client.get("/compare", params={"a": built.flagged, "b": built.sibling})
    assert r.status_code == 200 and "org/alpha" in r.text and "org/beta" in r.text
    assert "different prompts" not in r.text
    r = client.get("/compare", params={"a": built.flagged, "b": built.prm})
    assert "different prompts" in r.text
    assert client.get("/compare", params={"a": built.flagged}).status_code == 400
    # by model or strategy: the same prompt's trace under it
    r = client.get("/compare", params={"a": built.flagged, "model": "org/beta", "strategy": "normal"})
    assert r.status_code == 200 and built.sibling[:12] in r.text
    r = client.get("/compare", params={"a": built.flagged, "model": "org/none"})
    assert r.status_code == 404 and "model org/none" in r.text


def test_guard(client: TestClient, built: Built) -> None:
    label = {"trace_id": built.sibling, "name": "guard-test", "value": "true"}
    assert client.post("/api/labels", json=label).status_code == 403  # no token
    assert client.post("/api/labels", json=label, headers={"X-Cotscope-Token": "wrong"}).status_code == 403
    r = client.post("/api/labels", json=label, headers=AUTH | {"Origin": "http://evil.example"})
    assert r.status_code == 403 and "cross-site" in r.json()["error"]
    assert client.post("/api/labels", json=label, headers=AUTH | {"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert client.post("/api/labels", data={"a": "b"}, headers=AUTH).status_code == 415  # a form post
    # DNS rebinding: a foreign Host header is refused, reads included.
    r = client.get("/", headers={"Host": "attacker.example:8000"})
    assert r.status_code == 400 and "attacker.example" in r.text
    assert client.get("/", headers={"Host": "localhost:8000"}).status_code == 200
    with Store(built.path, read_only=True) as st:
        assert st.labels(name="guard-test") == []
    # same origin, with the token: stored
    r = client.post("/api/labels", json=label, headers=AUTH | {"Origin": BASE, "Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 201


def test_label_write_and_export(client: TestClient, built: Built) -> None:
    r = client.post("/api/labels", json={"trace_id": built.flagged, "name": "http-unsafe", "value": "true",
                                         "note": "<i>clearly</i>", "author": "spoofed"}, headers=AUTH)
    assert r.status_code == 201 and r.json()["author"] == "tester"  # the author is the viewer's --user
    assert client.post("/api/labels", json={"trace_id": built.sibling, "name": "http-unsafe", "value": "false"},
                       headers=AUTH).status_code == 201
    bad = client.post("/api/labels", json={"trace_id": built.flagged, "name": " ", "value": "true"}, headers=AUTH)
    assert bad.status_code == 400 and "name" in bad.json()["error"]
    r = client.post("/api/labels", json={"trace_id": "no-such-trace", "name": "x", "value": "true"}, headers=AUTH)
    assert r.status_code == 404
    with Store(built.path, read_only=True) as st:
        labs = st.labels(name="http-unsafe")
    assert [(lab.trace_id, lab.value, lab.author) for lab in labs] == [(built.flagged, "true", "tester"),
                                                                       (built.sibling, "false", "tester")]
    page = client.get(f"/traces/{built.flagged}").text
    assert "&lt;i&gt;clearly&lt;/i&gt;" in page
    assert _ids(client.get("/", params={"human": "http-unsafe"}).text) == [built.flagged, built.sibling]
    r = client.get("/labels/export", params={"name": "http-unsafe"})
    assert r.status_code == 200 and r.headers["content-disposition"].endswith('labels-http-unsafe.jsonl"')
    lines = r.text.splitlines()
    assert len(lines) == 2 and '"label":true' in lines[0] and '"label":false' in lines[1]


def test_read_only_refuses_writes(built: Built) -> None:
    app = create_app(ViewSettings(store=built.path, token=TOKEN, read_only=True))
    with TestClient(app, base_url=BASE) as c:
        r = c.post("/api/labels", json={"trace_id": built.flagged, "name": "ro", "value": "true"}, headers=AUTH)
        assert r.status_code == 403 and "read-only" in r.json()["error"]
        assert 'data-writable="0"' in c.get("/").text


def test_old_store_without_labels_table(tmp_path: Path, make_store: Callable[[Path], Built]) -> None:
    b = make_store(tmp_path / "old.duckdb")
    con = duckdb.connect(str(b.path))
    con.execute("DROP TABLE labels")
    con.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    con.close()
    app = create_app(ViewSettings(store=b.path, token=TOKEN, keep_open=0))
    with TestClient(app, base_url=BASE) as c:
        assert c.get("/", params={"human": "anything"}).status_code == 200
        assert c.get(f"/traces/{b.flagged}").status_code == 200
        # The first label migrates the store (opened for writing) and is stored.
        assert c.post("/api/labels", json={"trace_id": b.flagged, "name": "n", "value": "true"},
                      headers=AUTH).status_code == 201
    with Store(b.path, read_only=True) as st:
        assert [lab.name for lab in st.labels()] == ["n"]


def test_store_held_by_another_process_is_503(tmp_path: Path, make_store: Callable[[Path], Built]) -> None:
    b = make_store(tmp_path / "busy.duckdb")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('held', flush=True);"
         " sys.stdin.read()", str(b.path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        app = create_app(ViewSettings(store=b.path, token=TOKEN, keep_open=0))
        with TestClient(app, base_url=BASE) as c:
            r = c.get("/")
            assert r.status_code == 503 and "held by another process" in r.text
            r = c.post("/api/labels", json={"trace_id": b.flagged, "name": "n", "value": "true"}, headers=AUTH)
            assert r.status_code == 503
    finally:
        holder.communicate("", timeout=30)


def test_static_and_quoting(client: TestClient) -> None:
    js = client.get("/static/view.js")
    assert js.status_code == 200 and "X-Cotscope-Token" in js.text and "innerHTML" not in js.text
    assert client.get("/static/view.css").status_code == 200
    # A filter value from the URL that the store does not hold stays visible (escaped) in its select.
    r = client.get("/", params={"run": "<b>x</b>"})
    assert '<option value="&lt;b&gt;x&lt;/b&gt;" selected>' in r.text and "0 of 27" in r.text


def test_filter_choices_outlive_an_idle_close_until_the_file_changes(tmp_path: Path) -> None:
    from cotscope.traces import Message, Trace

    path = tmp_path / "small.duckdb"
    with Store(path) as st:
        st.add_traces([Trace(prompt=[Message(role="user", content="q")], reasoning="r", answer="a", model="m/one")])
    app = create_app(ViewSettings(store=path, token=TOKEN, keep_open=0))  # closed after every request
    with TestClient(app, base_url=BASE) as c:
        assert '<option value="m/one">' in c.get("/").text
        first = app.state.access.cache["facets"]
        c.get("/")
        assert app.state.access.cache["facets"] is first  # reopened, the file unchanged: not recomputed
        with Store(path) as st:  # another writer (here, this process between two requests)
            st.add_traces([Trace(prompt=[Message(role="user", content="q2")], reasoning="r", answer="a",
                                 model="m/two")])
        assert '<option value="m/two">' in c.get("/").text
