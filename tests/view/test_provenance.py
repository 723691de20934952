"""Reasoning provenance, incomplete outcomes and verdicts from the reasoning in the viewer (issue 18), over HTTP
(Starlette's TestClient): the spans on the trace page with evidence and steps, the list's column and filters,
and the SQL that stands in for ``provenance_label`` and ``is_incomplete``."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from html import unescape
from typing import Any

import duckdb
import pytest
from starlette.testclient import TestClient

from cotscope.pipeline import INCOMPLETE_FORMS, incomplete_result, is_incomplete, is_incomplete_result
from cotscope.store import Store
from cotscope.traces import REASONING_KINDS, Trace, label_of_kinds, provenance_label
from cotscope.view import ViewSettings, create_app
from cotscope.view._query import INCOMPLETE, INCOMPLETE_SQL, Filters, list_page, provenance_where
from cotscope.view._render import steps_html

from .conftest import OPAQUE, PREFILL, PROV_EVIDENCE

ProvBuilt = Any
BASE = "http://127.0.0.1:8000"


@pytest.fixture(scope="module")
def client(prov_built: ProvBuilt) -> Iterator[TestClient]:
    with TestClient(create_app(ViewSettings(store=prov_built.path, token="t")), base_url=BASE) as c:
        yield c


def _ids(html: str) -> list[str]:
    return re.findall(r'href="/traces/([0-9a-f]+)\?', html)


def _reasoning(html: str) -> str:
    return html[html.index('<section class="reasoning-col">'):html.index('<section class="answer-col">')]


def _kind_spans(html: str, kind: str) -> list[str]:
    """The inner HTML of each ``pv-<kind>`` text span (their content holds marks and a badge, never a span)."""
    return re.findall(rf'<span class="pv pv-{kind}" title="[^"]*">((?:(?!</span>).)*(?:</span>)?(?:(?!</span>).)*)'
                      r"</span>", html, re.S)


def test_evidence_in_raw_text_after_a_prefill_keeps_its_offsets(client: TestClient, prov_built: ProvBuilt) -> None:
    with Store(prov_built.path, read_only=True) as st:
        t = st.get(prov_built.prefilled)
        ev = st.results(trace_ids=[t.id])[0]["evidence"]
    assert t is not None and ev[0]["start"] > len(PREFILL)
    page = _reasoning(client.get(f"/traces/{prov_built.prefilled}").text)
    prefill, raw = _kind_spans(page, "prefill"), _kind_spans(page, "raw")
    # The prefill is its own span, badged; the raw text after it is the model's, badged where it starts.
    assert len(prefill) == 1 and prefill[0].startswith('<span class="pv-badge">prefill</span>')
    assert unescape(re.sub(r"<[^>]+>", "", prefill[0])) == "prefill" + PREFILL
    assert raw[0].startswith('<span class="pv-badge">raw</span>')
    # The evidence is marked inside the raw span, at exactly the quoted characters.
    assert f'<mark title="cot-monitor">{PROV_EVIDENCE}</mark>' in raw[0]
    assert t.reasoning[ev[0]["start"]:ev[0]["end"]] == PROV_EVIDENCE
    # A quote across the prefill/raw edge is marked on both sides, the two marks making the quote.
    marks = re.findall(r'<mark title="cot-monitor">([^<]*)</mark>', page)
    assert marks == ["help with that.", " Then I", PROV_EVIDENCE] and "".join(marks[:2]) == ev[1]["text"]
    # Step numbering is the reasoning's own: step 1 holds the prefill and the first raw paragraph, step 2 the next.
    steps = re.findall(r'<li class="step" id="step-(\d)">(.*?)</li>', page, re.S)
    assert [n for n, _ in steps] == ["1", "2"]
    assert "pv-prefill" in steps[0][1] and "pv-raw" in steps[0][1] and "Second, I walk in." in steps[1][1]
    # Nothing of the reasoning is lost or doubled by the cuts: the text shown is the reasoning (badges aside).
    texts = "".join(re.findall(r'<pre class="text">(.*?)</pre>', "".join(s for _, s in steps), re.S))
    shown = re.sub(r'<span class="pv-badge">[^<]*</span>', "", texts)
    assert unescape(re.sub(r"<[^>]+>", "", shown)) == t.reasoning.replace("\n\n", "")
    # The compare page draws each side's provenance the same way.
    cmp = client.get("/compare", params={"a": prov_built.prefilled, "b": prov_built.summary}).text
    assert '<span class="pv-badge">prefill</span>' in cmp and '<span class="pv-badge">summary</span>' in cmp
    assert "encrypted: opaque content kept, 300 bytes" in cmp and f">{PROV_EVIDENCE}</mark>" in cmp


def test_opaque_content_is_a_note_with_its_size_never_its_payload(client: TestClient, prov_built: ProvBuilt) -> None:
    n = len(OPAQUE.encode())
    red = client.get(f"/traces/{prov_built.redacted}").text
    assert f"redacted: opaque content kept, {n} bytes" in red
    assert "__pwned" not in red and "BLOB" not in red and ">SIG<" not in red  # payloads and signatures stay out
    # The note sits between the two thinking blocks, on a row of its own; the raw text is not badged (all raw).
    body = _reasoning(red)
    assert body.index("I&#x27;m sorry") < body.index("redacted: opaque") < body.index("Then &lt;b&gt;more")
    assert "pv-badge" not in body and "signature kept, 3 bytes" in body
    summ = _reasoning(client.get(f"/traces/{prov_built.summary}").text)
    assert '<span class="pv-badge">summary</span>Summary: the user wants a cake.' in summ
    assert "encrypted: opaque content kept, 300 bytes" in summ and "EEEE" not in summ
    only = client.get(f"/traces/{prov_built.opaque_only}").text
    assert "(no reasoning text)" in only and f"encrypted: opaque content kept, {n} bytes" in only
    assert "__pwned" not in only


def test_truncated_marker_incomplete_outcome_and_verdict_from_reasoning(client: TestClient,
                                                                        prov_built: ProvBuilt) -> None:
    cut = client.get(f"/traces/{prov_built.cut}").text
    body = _reasoning(cut)
    assert "(never closed)" in body
    assert re.search(r"one by one, and</span><span class=\"pv-note pv-truncated\"[^>]*>truncated: the token limit "
                     r"cut the reasoning here</span></pre>", body)
    assert '<span class="chip inc" title="">incomplete (not judged)</span>' in cut and "no label" not in cut
    red = client.get(f"/traces/{prov_built.redacted}").text
    assert re.search(r'<span class="chip pos"[^>]*>refused</span><span class="chip fromr" title="[^"]*only the '
                     r'reasoning">from reasoning</span>', red)
    assert "from reasoning" not in client.get(f"/traces/{prov_built.prefilled}").text
    # The list says it too.
    index = client.get("/").text
    assert "refusal-strings: incomplete (not judged)" in index and ">from reasoning</span>" in index
    plain = _reasoning(client.get(f"/traces/{prov_built.plain}").text)
    assert "unknown</span>" in plain and "pv-note" not in plain and 'class="pv ' not in plain


def test_list_column_and_filters(client: TestClient, prov_built: ProvBuilt) -> None:
    b = prov_built
    index = client.get("/").text
    cells = dict(zip(_ids(index), re.findall(r'<td class="pv-col">(.*?)</td>', index), strict=True))
    assert "prefill+raw</span>" in cells[b.prefilled] and "summary+encrypted</span>" in cells[b.summary]
    assert ">incomplete</span>" in cells[b.cut] and ">incomplete</span>" not in cells[b.prefilled]
    assert "unknown</span>" in cells[b.plain] and "raw+redacted</span>" in cells[b.redacted]
    options = re.findall(r'<option value="([^"]*)"', index.split('name="provenance"')[1].split("</select>")[0])
    assert options == ["", "encrypted", "prefill+raw", "raw", "raw+redacted", "summary+encrypted", "unknown"]
    for label, want in (("prefill+raw", [b.prefilled]), ("summary+encrypted", [b.summary]),
                        ("encrypted", [b.opaque_only]), ("unknown", [b.plain]), ("raw", [b.cut]), ("none", [])):
        assert _ids(client.get("/", params={"provenance": label}).text) == want, label
    assert _ids(client.get("/", params={"incomplete": "no-answer"}).text) == [b.cut]
    assert _ids(client.get("/", params={"incomplete": "cap", "provenance": "raw"}).text) == [b.cut]
    assert _ids(client.get("/", params={"evaluator": "refusal-strings", "label": INCOMPLETE}).text) == [b.cut]
    assert client.get("/api/traces", params={"provenance": "prefill+raw"}).json()["rows"][0]["provenance"] == \
        "prefill+raw"
    r = client.get("/", params={"incomplete": "sometimes"})
    assert r.status_code == 400 and "incomplete must be one of no-answer, cap" in r.text
    r = client.get("/", params={"provenance": "raw+prefill"})
    assert r.status_code == 400 and "provenance must be a label" in r.text and "raw+prefill" in r.text
    # The links from a filtered list keep the filters, so j/k walk the same list.
    assert "provenance=prefill%2Braw" in client.get("/", params={"provenance": "prefill+raw"}).text


def test_sql_provenance_filter_is_the_library_rule_for_every_set_of_kinds() -> None:
    """Every set of kinds (spans repeated, in any order, with and without reasoning text): the filter on a label
    keeps exactly the rows whose ``label_of_kinds`` is that label."""
    subsets = [c for n in range(len(REASONING_KINDS) + 1) for c in itertools.combinations(REASONING_KINDS, n)]
    con = duckdb.connect()
    con.execute("CREATE TABLE t (i INT, reasoning VARCHAR, reasoning_provenance JSON)")
    rows, want = [], {}
    for i, kinds in enumerate(subsets):
        order = (*reversed(kinds), *kinds[:1])  # not canonical order, one kind twice
        spans = "[" + ",".join(f'{{"kind": "{k}", "start": 0, "end": 0}}' for k in order) + "]"
        rows += [(2 * i, "x", spans), (2 * i + 1, "", spans)]
        want[2 * i], want[2 * i + 1] = label_of_kinds(kinds, "x"), label_of_kinds(kinds, "")
    rows += [(-1, "x", None), (-2, "", None), (-3, "x", "[]")]
    want.update({-1: "unknown", -2: "none", -3: "unknown"})
    con.executemany("INSERT INTO t VALUES (?, ?, ?)", rows)
    for label in set(want.values()):
        got = {r[0] for r in con.execute(f"SELECT i FROM t WHERE {provenance_where(label)}").fetchall()}
        assert got == {i for i, lab in want.items() if lab == label}, label
    for bad in ("raw+prefill", "raw+raw", "thoughts", "raw+truncated", "prefill+"):
        with pytest.raises(ValueError, match="provenance must be a label"):
            provenance_where(bad)


def test_sql_incomplete_is_the_pipeline_rule(prov_built: ProvBuilt) -> None:
    assert set(INCOMPLETE_SQL) == set(INCOMPLETE_FORMS)
    assert is_incomplete_result({"details": {"outcome": INCOMPLETE}})
    with Store(prov_built.path, read_only=True) as st:
        traces = list(st.traces())
        partial = Trace(reasoning="thought", answer="Step 1. St", metadata={"finish_reason": "length"})
        assert is_incomplete_result(incomplete_result(traces[0]).model_dump())
        for form in INCOMPLETE_FORMS:
            want = sorted(t.id for t in traces if is_incomplete(t, form))
            got = sorted(r.id for r in list_page(st, Filters(incomplete=form, limit=500)).rows)
            assert got == want and want, form
        labels = {r.id: r.provenance for r in list_page(st, Filters(limit=500)).rows}
        assert labels == {t.id: provenance_label(t) for t in traces}
    assert is_incomplete(partial, "cap") and not is_incomplete(partial)


def test_steps_html_spans_and_markers_at_the_edges() -> None:
    from cotscope.traces import ProvenanceSpan as S

    # A zero-length prefill (ZeroThink) at 0, a redacted block at the very start of a step, a cut at the end.
    reasoning = "alpha beta\n\ngamma"
    html = steps_html(reasoning, [], [(6, 10, "m")], [S(kind="prefill", start=0, end=0),
                                                      S(kind="raw", start=0, end=10),
                                                      S(kind="redacted", start=12, end=12, payload="xx"),
                                                      S(kind="raw", start=12, end=17),
                                                      S(kind="truncated", start=17, end=17)])
    assert re.findall(r'id="step-(\d)"', html) == ["1", "2"]
    one, two = html.split('id="step-2"')
    assert one.index("prefill: an empty thought") < one.index("alpha") and '<mark title="m">beta</mark>' in one
    assert two.index("redacted: opaque content kept, 2 bytes") < two.index("gamma") < two.index("truncated:")
    # Spans out of the text (a bad writer) are clipped, never raise; no provenance is the plain rendering.
    assert "gamma" in steps_html(reasoning, [], [], [S(kind="summary", start=5, end=400)])
    assert steps_html(reasoning, [], []) == steps_html(reasoning, [], [], ())
    # A span that starts in the blank text between two steps (not drawn) is badged at its first visible text.
    html = steps_html(reasoning, [], [], [S(kind="prefill", start=0, end=10), S(kind="summary", start=10, end=17)])
    assert '<span class="pv-badge">summary</span>gamma' in html and html.count("pv-badge") == 2
    assert steps_html("", [], []) == '<p class="muted">(no reasoning)</p>'
