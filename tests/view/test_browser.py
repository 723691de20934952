"""End to end in the system's headless Chromium (Playwright driving Debian's `chromium`, no browser download):
open, filter, open a trace, evidence highlighting, label with a keyboard shortcut, hostile text, guard."""

from __future__ import annotations

import http.client
import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest

from cotscope.store import Store
from cotscope.view import ViewServer, ViewSettings, serve_in_thread

Built = Any
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no system chromium to drive")

TOKEN = "browser-token-xyz"


@pytest.fixture(scope="module")
def server(built: Built) -> Iterator[ViewServer]:
    s = serve_in_thread(ViewSettings(store=built.path, token=TOKEN, user="browser-user"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One browser for the module (a launch costs about a second)."""
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context()
    pg = ctx.new_page()
    pg.set_default_timeout(15_000)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.errors = errors
    yield pg
    ctx.close()


def test_open_filter_open_trace_and_highlight(page: Any, server: ViewServer, built: Built) -> None:
    page.goto(server.login_url)
    assert "token" not in page.url  # taken into storage and dropped from the address bar
    assert page.locator("#token-state").inner_text() == "can label"
    assert page.locator("table.traces tbody tr").count() == 27
    page.select_option("select[name=model]", "org/beta")
    page.click("form#filters button[type=submit]")
    page.wait_for_url("**model=org%2Fbeta**")
    models = page.locator("table.traces tbody tr td:nth-child(2)").all_inner_texts()
    assert models and set(models) == {"org/beta"} and len(models) == 12
    # search with the keyboard: "/" focuses the box
    page.goto(server.url)
    page.keyboard.press("/")
    page.keyboard.type("needle-hostile")
    page.keyboard.press("Enter")
    page.wait_for_url("**q=needle-hostile**")
    assert page.locator("table.traces tbody tr").count() == 1
    # open the flagged trace from the list filtered on the monitor's label
    page.goto(f"{server.url}?evaluator=cot-monitor&label=true")
    page.click(f"a[href^='/traces/{built.flagged}']")
    page.wait_for_url(f"**/traces/{built.flagged}**")
    marks = page.locator("mark")
    assert marks.count() == 2 and set(marks.all_inner_texts()) == {built.evidence}
    assert marks.first.get_attribute("title") == "cot-monitor"
    assert page.locator(".steps mark").count() == 1 and page.locator("pre.answer mark").count() == 1
    assert not page.errors


def test_label_with_keyboard_lands_in_the_store(page: Any, server: ViewServer, built: Built) -> None:
    page.goto(server.login_url)
    page.goto(f"{server.url}traces/{built.sibling}")
    page.fill("#label-name", "browser-unsafe")
    page.fill("#label-note", "looks fine to me")
    page.keyboard.press("Escape")  # leave the note field: shortcuts work outside text fields only
    page.keyboard.press("n")
    page.wait_for_selector("#label-status.ok >> text=saved browser-unsafe = false")
    assert page.locator("#labels li").first.inner_text().startswith("browser-unsafe = false")
    with Store(built.path, read_only=True) as st:
        labs = st.labels(name="browser-unsafe")
    assert [(lab.trace_id, lab.value, lab.note, lab.author) for lab in labs] == [
        (built.sibling, "false", "looks fine to me", "browser-user")]
    # j walks the filtered list: from position 0 of the org/beta list to position 1
    page.goto(f"{server.url}?model=org%2Fbeta")
    page.click("table.traces tbody tr:first-child a.tid")
    page.wait_for_url("**/traces/**pos=0**")
    first = page.url
    page.keyboard.press("j")
    page.wait_for_url(lambda u: u != first and "pos=1" in u)
    assert page.locator(".meta").inner_text().startswith("model org/beta")


def test_write_without_token_is_refused(page: Any, server: ViewServer, built: Built) -> None:
    page.goto(f"{server.url}traces/{built.flagged}")  # never given the token in this context
    assert page.locator("#token-state").inner_text().startswith("no token")
    page.keyboard.press("y")
    page.wait_for_selector("#label-status.bad")
    assert "no token" in page.locator("#label-status").inner_text()
    status = page.evaluate("""async (id) => (await fetch('/api/labels', {method: 'POST',
        headers: {'Content-Type': 'application/json', 'X-Cotscope-Token': 'guess'},
        body: JSON.stringify({trace_id: id, name: 'sneaky', value: 'true'})})).status""", built.flagged)
    assert status == 403
    with Store(built.path, read_only=True) as st:
        assert st.labels(name="sneaky") == [] and st.labels(name="unsafe", trace_ids=[built.flagged]) == []


def test_hostile_text_renders_as_text_and_page_stays_responsive(page: Any, server: ViewServer,
                                                                built: Built) -> None:
    t0 = time.perf_counter()
    page.goto(f"{server.url}traces/{built.hostile}")
    load_s = time.perf_counter() - t0
    assert page.evaluate("window.__pwned") is None  # no hostile script, handler or URL ran
    assert page.locator("img").count() == 0 and page.locator("a[href^='javascript:']").count() == 0
    assert page.locator("script").count() == 1
    text = page.locator(".prompt pre.text").last.inner_text()
    assert text.startswith("<script>window.__pwned = 1</script></textarea><img")
    assert "\u202egnp.exe\u202c" in text
    assert page.locator(".steps li").count() > 1 and "long reasoning line" in page.locator(".steps").inner_text()
    # responsive: the help toggles on a key press and the label form still works
    page.keyboard.press("?")
    page.wait_for_selector("#help:not([hidden])", timeout=5_000)
    assert load_s < 60  # generous bound only to fail a hang; the figure itself is in docs/view.md
    assert not page.errors


def test_foreign_host_header_is_refused(server: ViewServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/", headers={"Host": f"rebind.attacker.example:{server.port}"})
    resp = conn.getresponse()
    assert resp.status == 400 and b"rebind.attacker.example" in resp.read()
    conn.close()


def test_reasoning_provenance_is_drawn_apart(page: Any, prov_built: Any) -> None:
    """Prefill text looks different from the model's own text, evidence after it is marked in the raw text, the
    provenance filter works from the form, and opaque content is a note (its hostile payload never runs)."""
    from .conftest import PREFILL, PROV_EVIDENCE

    s = serve_in_thread(ViewSettings(store=prov_built.path, token=TOKEN, read_only=True))
    try:
        page.goto(s.url)
        page.select_option("select[name=provenance]", "prefill+raw")
        page.click("form#filters button[type=submit]")
        page.wait_for_url("**provenance=prefill%2Braw**")
        assert page.locator("table.traces tbody tr").count() == 1
        page.click("table.traces tbody tr a.tid")
        page.wait_for_url(f"**/traces/{prov_built.prefilled}**")
        prefill, raw = page.locator(".steps .pv-prefill"), page.locator(".steps .pv-raw").first
        assert prefill.count() == 1 and prefill.inner_text().endswith(PREFILL)

        def style(loc: Any) -> tuple[str, str]:
            return loc.evaluate("e => { const s = getComputedStyle(e); return [s.backgroundColor, s.fontStyle]; }")

        assert style(prefill) != style(raw) and style(prefill)[1] == "italic"
        assert page.locator(".steps .pv-raw mark", has_text=PROV_EVIDENCE).count() == 1
        assert page.locator(".steps .pv-badge").all_inner_texts() == ["PREFILL", "RAW"]  # shown in capitals
        page.goto(f"{s.url}traces/{prov_built.redacted}")
        note = page.locator(".pv-note.pv-redacted")
        assert note.is_visible() and "opaque content kept" in note.inner_text()
        assert page.evaluate("window.__pwned") is None and page.locator("script").count() == 1
        assert not page.errors
    finally:
        s.stop()
