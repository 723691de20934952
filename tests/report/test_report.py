"""The HTML report: escaping of all trace text, SVG plots, and a headless Chromium check of the page."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from html import unescape
from pathlib import Path

import cotscope_test_fakes as fakes  # registered by tests/conftest.py
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cotscope.benchmarks import RunOptions, get_benchmark, run_benchmark
from cotscope.report import bar_chart, build_report, highlight, roc_chart, trace_card
from cotscope.store import Store
from cotscope.traces import Trace

XSS = fakes.XSS


def test_highlight_escapes_and_marks() -> None:
    text = "a <b> " + XSS + " tail"
    i = text.index("<script>")
    html = highlight(text, [(i, i + 8, "judge<x>"), (0, 1, "m"), (50_000, 50_001, "out of range")])
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert html.startswith('<mark title="m">a</mark>')
    assert 'title="judge&lt;x&gt;"' in html
    # Overlapping spans merge into one mark, never nested.
    assert highlight("abcdef", [(0, 3, "x"), (2, 5, "y")]).count("<mark") == 1


def test_trace_card_escapes_every_field() -> None:
    t = Trace(prompt=[{"role": "user", "content": XSS}], reasoning="think " + XSS, answer=XSS, model="<m>",
              metadata={"item_id": "<id>"})
    res = [{"evaluator": "<ev>", "part": "answer", "label": True, "score": 1.0, "reason": XSS,
            "evidence": [{"text": XSS, "field": "answer", "start": 0, "end": len(XSS), "verified": True},
                         {"text": "<img src=x onerror=alert(1)>", "verified": False}]}]
    html = trace_card(t, res)
    assert "<script" not in html and "<img" not in html and "<m>" not in html and "<id>" not in html
    assert html.count("&lt;script&gt;") >= 5 and "<mark" in html


def test_svg_plots_are_well_formed_and_escaped() -> None:
    svg = bar_chart({"title": "<t>", "groups": ["<g>", "b"], "series": [
        {"name": "<s>", "values": [0.5, None], "low": [0.2, None], "high": [0.7, None]}], "ymax": 1, "percent": True})
    assert svg.startswith("<svg") and svg.endswith("</svg>") and "<g>" not in svg and "n/a" in svg
    roc = roc_chart({"title": "r", "curves": [{"name": "<m>", "fpr": [0, 0.5, 1], "tpr": [0, 1, 1], "auc": 0.75}]})
    assert "<polyline" in roc and "AUC 0.750" in roc and "<m>" not in roc
    h = bar_chart({"title": "h", "groups": ["a"], "series": [{"name": "m", "values": [3.0]}], "horizontal": True})
    assert "<rect" in h


def _report(tmp_path: Path) -> Path:
    st = Store(tmp_path / "s.duckdb")
    spec = get_benchmark("thought-crime")
    asyncio.run(run_benchmark(st, spec, "fake/model", RunOptions(limit=2, samples=2, judge_model="fake/judge")))
    asyncio.run(run_benchmark(st, get_benchmark("deceptionbench"), "fake/model",
                              RunOptions(limit=3, judge_model="fake/judge")))
    path = build_report(st, tmp_path / "rep")
    st.close()
    return path


def test_report_is_self_contained(tmp_path: Path) -> None:
    html = _report(tmp_path).read_text()
    assert "<script" not in html.lower()
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "") and "https://" not in html
    assert "Content-Security-Policy" in html and "<svg" in html
    assert "Misalignment rate per question" in html and "Deception tendency rate" in html
    assert "&lt;script&gt;document.title=" in html


def test_empty_store_gives_a_page(tmp_path: Path) -> None:
    st = Store(":memory:")
    assert "No benchmark runs" in build_report(st, tmp_path).read_text()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install -y chromium)")
def test_chromium_renders_and_runs_no_trace_script(tmp_path: Path) -> None:
    page = _report(tmp_path)
    flags = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    out = dom.stdout
    # The payload would set the title to 'pwned'; the page keeps its own title and shows the text.
    assert "<title>cotscope report</title>" in out and "pwned</title>" not in out
    assert "&lt;script&gt;document.title='pwned'&lt;/script&gt;" in out
    assert "<script" not in out.lower()
    assert out.count("<svg") >= 2 and "Misalignment rate per question" in out
    shot = tmp_path / "shot.png"
    r = subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and shot.stat().st_size > 10_000


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab<>&\"' \n/script")), max_size=60),
       st.lists(st.tuples(st.integers(-5, 70), st.integers(-5, 70)), max_size=5))
def test_highlight_never_lets_markup_through(text: str, spans: list[tuple[int, int]]) -> None:
    html = highlight(text, [(a, b, "<t>") for a, b in spans])
    stripped = html.replace("</mark>", "")
    stripped = re.sub(r'<mark title="[^"<>]*">', "", stripped)
    assert "<" not in stripped and ">" not in stripped
    assert unescape(stripped) == text
