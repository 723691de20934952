"""The viewer's pages, rendered on the server from the templates in ``templates/``.

Model output is untrusted: every piece of trace, judge or label text goes through :func:`html.escape` (or
:func:`cotscope.report.highlight`, which escapes each piece) before it reaches a page, ids in URLs are
percent-encoded, and no trace text ever becomes an attribute that a browser would follow or run (``href``,
``src``, ``style``, event handlers). The Content-Security-Policy of every response (no inline script, no
inline style, nothing from other origins) is the second line of defence.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from functools import cache
from html import escape
from importlib import resources
from itertools import pairwise
from string import Template
from typing import Any
from urllib.parse import quote, urlencode

from cotscope.pipeline import is_incomplete_result
from cotscope.report import action_html, highlight
from cotscope.store import Label, label_bool
from cotscope.traces import (
    ProvenanceSpan,
    Trace,
    is_agent_trace,
    parse_monitor,
    provenance_label,
    segment_spans,
    step_view,
)
from cotscope.view._query import INCOMPLETE, LABEL_CHOICES, Facets, Filters, Page

#: Spans as :func:`cotscope.report.highlight` takes them: ``(start, end, title)``.
Spans = list[tuple[int, int, str]]


@cache
def _template(name: str) -> Template:
    return Template(resources.files("cotscope.view").joinpath("templates", name).read_text(encoding="utf-8"))


def _e(v: Any) -> str:
    return escape("" if v is None else str(v), quote=True)


def trace_url(trace_id: str, query: dict[str, str] | None = None) -> str:
    """The page of a trace; the id percent-encoded, so no id can turn the link into another URL or scheme."""
    return f"/traces/{quote(trace_id, safe='')}" + (f"?{urlencode(query)}" if query else "")


def page(title: str, body: str, *, page_name: str, store: str, writable: bool, user: str | None) -> str:
    """A whole page: ``body`` (already escaped HTML) in the layout."""
    return _template("base.html").substitute(
        title=_e(title), body=body, page=_e(page_name), store=_e(store), writable="1" if writable else "0",
        user=_e(user or ""), mode="labelling" if writable else "read-only")


def error_body(heading: str, message: str) -> str:
    """The body of an error page."""
    return _template("error.html").substitute(heading=_e(heading), message=_e(message))


# -- the list ----------------------------------------------------------------------------------------------
def _options(values: list[str], chosen: str | None, labels: dict[str, str] | None = None,
             blank: str = "all") -> str:
    out = [f'<option value=""{" selected" if chosen is None else ""}>{_e(blank)}</option>'] if blank else []
    vals = list(values)
    if chosen is not None and chosen not in vals:
        vals.append(chosen)  # a value from the URL that the store does not hold: shown, so the filter is visible
    for v in vals:
        out.append(f'<option value="{_e(v)}"{" selected" if v == chosen else ""}>{_e((labels or {}).get(v, v))}'
                   "</option>")
    return "".join(out)


#: The words of an ``incomplete`` outcome (the report says it at more length: "not judged: no answer").
INCOMPLETE_TEXT = "incomplete (not judged)"
#: The badge of an answer verdict whose evidence quotes only the reasoning, and what it means.
FROM_REASONING_TEXT = "from reasoning"
FROM_REASONING_TITLE = "a verdict on the answer whose verified evidence quotes only the reasoning"

#: The options of the incomplete filter, by form of ``incomplete`` (:data:`cotscope.pipeline.INCOMPLETE_FORMS`).
INCOMPLETE_OPTIONS = {"no-answer": "incomplete (hit the token cap, no answer)",
                      "cap": "hit the token cap (partial answers too)"}


def label_text(label: bool | None, meaning: str | None, parse_error: str | None = None,
               incomplete: bool = False) -> str:
    """A stored verdict in words: the evaluator's label meaning (``unsafe`` / ``not unsafe``), else true/false;
    an ``incomplete`` outcome (reasoning that never finished, not judged) says so."""
    if parse_error:
        return "parse error"
    if incomplete:
        return INCOMPLETE_TEXT
    if label is None:
        return "no label"
    if meaning:
        return meaning if label else f"not {meaning}"
    return "true" if label else "false"


def _chip(text: str, cls: str, title: str = "") -> str:
    return f'<span class="chip {cls}" title="{_e(title)}">{_e(text)}</span>'


def verdict_word(r: Mapping[str, Any], meaning: str | None) -> tuple[str, str]:
    """A stored result's verdict in words and its chip's class (``perr``, ``inc``, ``pos``, ``neg``, ``none``)."""
    incomplete = is_incomplete_result(r)
    word = label_text(r.get("label"), meaning, r.get("parse_error"), incomplete)
    cls = ("perr" if r.get("parse_error") else "inc" if incomplete else "pos" if r.get("label")
           else "neg" if r.get("label") is False else "none")
    return word, cls


def from_reasoning_chip(r: Mapping[str, Any]) -> str:
    """The "from reasoning" badge of a result flagged ``verdict_from_reasoning``, else nothing."""
    details = r.get("details")
    if isinstance(details, dict) and details.get("verdict_from_reasoning") is True:
        return _chip(FROM_REASONING_TEXT, "fromr", FROM_REASONING_TITLE)
    return ""


def _verdict_chips(verdicts: list[dict[str, Any]]) -> str:
    out = []
    for v in verdicts:
        word, cls = verdict_word(v, v["meaning"])
        score = "" if v["score"] is None else f" {float(v['score']):.2f}"
        out.append(_chip(f"{v['evaluator']}: {word}{score}", cls, f"{v['evaluator']} on {v['part']}")
                   + from_reasoning_chip(v))
    return "".join(out)


def provenance_chip(label: str, cap_hit: bool = False, incomplete: bool = False) -> str:
    """A trace's reasoning provenance label as a chip, with one for reasoning that hit the token cap."""
    out = _chip(label, "pvc", f"reasoning provenance: {label}")
    if incomplete:
        out += _chip("incomplete", "inc", "hit the token cap with no answer: never scored as an answer")
    elif cap_hit:
        out += _chip("hit the cap", "inc", "the token limit cut the reasoning or the answer")
    return out


def _label_chips(labels: list[dict[str, Any]]) -> str:
    return "".join(_chip(f"{lab['name']}={lab['value']}", "pos" if lab["bool"] else "neg" if lab["bool"] is False
                         else "none", f"by {lab['author'] or 'unknown'}") for lab in labels)


def _pager(p: Page, f: Filters) -> str:
    if p.total == 0:
        return '<p class="pager muted">no trace matches</p>'
    first, last = p.offset + 1, min(p.offset + p.limit, p.total)
    prev = (f'<a rel="prev" href="/?{_e(urlencode(f.query(offset=max(0, p.offset - p.limit))))}">previous</a>'
            if p.offset > 0 else "")
    nxt = (f'<a rel="next" href="/?{_e(urlencode(f.query(offset=p.offset + p.limit)))}">next</a>'
           if last < p.total else "")
    return f'<p class="pager">{prev} <span>{first}-{last} of {p.total:,}</span> {nxt}</p>'


def _short(text: str, n: int = 140) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def index_body(p: Page, f: Filters, fc: Facets, *, default_label: str) -> str:
    """The list page: filters, one page of traces, pagination, runs."""
    rows = []
    for i, r in enumerate(p.rows):
        q = f.query(offset=0) | {"pos": str(p.offset + i)}
        rows.append(
            f'<tr><td><a class="tid" href="{_e(trace_url(r.id, q))}">{_e(r.id[:12])}</a></td>'
            f"<td>{_e(r.model)}</td><td>{_e(r.strategy)}</td><td>{_e(r.sample_index)}</td>"
            f'<td class="pv-col">{provenance_chip(r.provenance, r.cap_hit, r.incomplete)}</td>'
            f'<td class="snip">{_e(_short(r.prompt))}</td>'
            f'<td class="snip">{_e(_short(r.reasoning))}<span class="muted"> ({r.reasoning_len:,} chars)</span></td>'
            f'<td class="snip">{_e(_short(r.answer))}</td><td>{_verdict_chips(r.verdicts)}</td>'
            f"<td>{_label_chips(r.labels)}</td></tr>")
    runs = "".join(
        f'<tr><td><a href="/?{_e(urlencode({"run": r["id"]}))}">{_e(r["id"])}</a></td><td>{_e(r["kind"])}</td>'
        f"<td>{_e(r['name'])}</td><td>{_e(r['status'])}</td><td>{_e(_when(r['started_at']))}</td></tr>"
        for r in fc.runs[:200])
    run_labels = {r["id"]: f"{r['id'][:8]} {r['kind']} {r['name'] or ''}" for r in fc.runs}
    names = fc.label_names or [default_label]
    export = ('<form class="export" method="get" action="/labels/export"><label>export labels '
              f'<select name="name">{_options(names, names[0], blank="")}</select></label>'
              '<button type="submit">download JSONL</button></form>') if fc.label_names else ""
    return _template("index.html").substitute(
        summary=_e(f"{p.total:,} of {fc.traces:,}"), q=_e(f.q or ""),
        model_options=_options(fc.models, f.model), strategy_options=_options(fc.strategies, f.strategy),
        benchmark_options=_options(fc.benchmarks, f.benchmark),
        run_options=_options([r["id"] for r in fc.runs], f.run, run_labels),
        evaluator_options=_options(fc.evaluators, f.evaluator),
        label_options=_options(list(LABEL_CHOICES), f.label, {"parse_error": "parse error",
                                                              INCOMPLETE: INCOMPLETE_TEXT}, blank=""),
        provenance_options=_options(fc.provenances, f.provenance),
        incomplete_options=_options(list(INCOMPLETE_OPTIONS), f.incomplete, INCOMPLETE_OPTIONS),
        human_options=_options(fc.label_names, f.human),
        parse_error_checked=" checked" if f.parse_error else "",
        pager=_pager(p, f), rows="\n".join(rows) or '<tr><td colspan="10" class="muted">no traces</td></tr>',
        runs=runs, n_runs=str(len(fc.runs)), export=export)


def _when(v: Any) -> str:
    if isinstance(v, dt.datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S")
    return "" if v is None else str(v)


# -- one trace ---------------------------------------------------------------------------------------------
def evidence_spans(t: Trace, results: list[dict[str, Any]]) -> dict[str, Spans]:
    """The verified evidence of every result, as spans over the reasoning and the answer.

    Only quotes the evidence check located (``verified`` with offsets) are marked; offsets into a
    ``<monitor>`` segment are shifted to where the segment sits in its field.
    """
    spans: dict[str, Spans] = {"reasoning": [], "answer": []}
    seg = parse_monitor(t.reasoning, t.answer)
    for r in results:
        for e in r.get("evidence") or []:
            if not isinstance(e, dict):
                continue
            f, start, end = e.get("field"), e.get("start"), e.get("end")
            if not e.get("verified") or not isinstance(start, int) or not isinstance(end, int):
                continue
            if f == "monitor" and seg is not None:
                f, start, end = seg.field, seg.start + start, seg.start + end
            if f in spans:
                spans[f].append((start, end, str(r["evaluator"])))
    return spans


def _local(spans: Spans, a: int, b: int) -> Spans:
    """The spans overlapping ``[a, b)``, clipped to it and shifted to start at ``a``."""
    return [(max(s, a) - a, min(e, b) - a, w) for s, e, w in spans if s < b and e > a]


#: The start of an unnumbered row of the steps (text between steps, notes): an empty number cell keeps the grid.
_GAP = '<li class="gap"><span class="num"></span><pre class="text">'

#: What each kind of reasoning is, in the page's words: the title of its text and the legend (in the order of
#: :data:`cotscope.traces.REASONING_KINDS`, which the provenance label follows).
KIND_TEXT = {
    "prefill": "text put there by cotscope or the user, not written by the model",
    "raw": "the model's own thinking",
    "summary": "a summary written by the provider, not the model's own thinking",
    "redacted": "reasoning the provider withheld",
    "encrypted": "opaque content (encrypted reasoning, a signature)",
    "truncated": "the token limit cut the reasoning here",
}


def _marker(s: ProvenanceSpan) -> str | None:
    """The note shown where a zero-length span sits (a cut, opaque content, an empty prefill); the opaque
    payload itself is never shown, only its size."""
    if s.kind == "truncated":
        return (f'<span class="pv-note pv-truncated" title="{_e(KIND_TEXT["truncated"])}">truncated: the token '
                "limit cut the reasoning here</span>")
    if s.kind in ("encrypted", "redacted"):
        kept = (f"opaque content kept, {len(s.payload.encode('utf-8')):,} bytes" if s.payload is not None
                else "no content kept")
        return f'<span class="pv-note pv-{s.kind}" title="{_e(KIND_TEXT[s.kind])}">{_e(s.kind)}: {_e(kept)}</span>'
    if s.kind == "prefill":
        return f'<span class="pv-note pv-prefill" title="{_e(KIND_TEXT["prefill"])}">prefill: an empty thought</span>'
    return None


class _Provenance:
    """A trace's provenance spans prepared for rendering: text spans ``(start, end, kind, title, badge_at)``
    clipped to the reasoning and made disjoint (``badge_at``: its first visible character, where its badge goes,
    since blank text between steps is not drawn), markers ``(offset, html)`` for the zero-length ones."""

    def __init__(self, spans: Sequence[ProvenanceSpan], reasoning: str):
        n = len(reasoning)
        self.text: list[tuple[int, int, str, str, int]] = []
        self.markers: list[tuple[int, str]] = []
        pos = 0
        for s in sorted(spans, key=lambda s: (s.start, s.end)):
            a, b = min(max(s.start, pos), n), min(s.end, n)
            if s.end <= s.start:
                html = _marker(s)
                if html is not None:
                    self.markers.append((min(s.start, n), html))
            elif a < b:
                title = KIND_TEXT[s.kind]
                if s.payload is not None:
                    title += f" (signature kept, {len(s.payload.encode('utf-8')):,} bytes)"
                seg = reasoning[a:b]
                self.text.append((a, b, s.kind, title, a + len(seg) - len(seg.lstrip()) if seg.strip() else a))
                pos = b
        content = {x[2] for x in self.text}
        #: A badge at the start of each text span, unless the reasoning is all the model's own (the usual case).
        self.badges = bool(content) and content != {"raw"}

    def render(self, reasoning: str, a: int, b: int, marks: Spans, markers: list[tuple[int, str]]) -> str:
        """``reasoning[a:b]`` escaped: each text span wrapped in its kind (a badge where it starts), the evidence
        ``marks`` (offsets into the reasoning) highlighted, ``markers`` placed at their offsets."""
        cuts = {a, b}
        cuts.update(x for s, e, *_ in self.text for x in (s, e) if a < x < b)
        cuts.update(x for x, _ in markers if a < x < b)
        todo = sorted(markers, key=lambda m: m[0])
        out: list[str] = []
        points = sorted(cuts)
        for p, q in pairwise(points):
            while todo and todo[0][0] <= p:
                out.append(todo.pop(0)[1])
            piece = highlight(reasoning[p:q], _local(marks, p, q))
            span = next((x for x in self.text if x[0] <= p and q <= x[1]), None)
            if span is None:
                out.append(piece)
                continue
            _, _, kind, title, badge_at = span
            badge = f'<span class="pv-badge">{_e(kind)}</span>' if self.badges and p <= badge_at < q else ""
            out.append(f'<span class="pv pv-{_e(kind)}" title="{_e(title)}">{badge}{piece}</span>')
        out.extend(m[1] for m in todo)
        return "".join(out)


def provenance_legend(t: Trace) -> str:
    """The trace's provenance label and the kinds its reasoning holds, each in its own style, with what it is."""
    kinds = [k for k in KIND_TEXT if any(s.kind == k for s in t.reasoning_provenance)]
    label = provenance_label(t)
    items = "".join(f'<li><span class="pv pv-{_e(k)}">{_e(k)}</span> {_e(KIND_TEXT[k])}</li>' for k in kinds)
    unknown = "" if kinds else '<span class="muted"> (the source did not say what kind of text it is)</span>'
    return (f'<div class="pv-legend">provenance {_chip(label, "pvc", "reasoning provenance label")}{unknown}'
            f'{f"<ul>{items}</ul>" if items else ""}</div>')


def steps_html(reasoning: str, steps: list[tuple[int, int]], spans: Spans,
               provenance: Sequence[ProvenanceSpan] = ()) -> str:
    """The reasoning as numbered steps, evidence marked, each provenance span shown in its kind (prefill,
    summary... apart from the model's own text; notes where content is opaque or the reasoning was cut);
    text between steps is shown unnumbered. Offsets of evidence and provenance are offsets into
    ``reasoning``; the steps only decide where the numbered rows break."""
    prov = _Provenance(provenance, reasoning)
    if not reasoning:
        if not prov.markers:
            return '<p class="muted">(no reasoning)</p>'
        return ('<p class="muted">(no reasoning text)</p><ol class="steps">' + _GAP
                + "".join(h for _, h in prov.markers) + "</pre></li></ol>")
    if not steps:
        steps = [(s, e) for s, e, _ in segment_spans(reasoning)] or [(0, len(reasoning))]
    n_chars = len(reasoning)
    chunks: list[tuple[bool, int, int]] = []  # (numbered step, start, end): the whole reasoning, in order
    pos = 0
    for a, b in sorted(steps):
        a, b = max(a, pos), min(b, n_chars)
        if a >= b:
            continue
        if pos < a:
            chunks.append((False, pos, a))
        chunks.append((True, a, b))
        pos = b
    if pos < n_chars:
        chunks.append((False, pos, n_chars))
    # Each marker goes to the chunk holding its offset; one at the very end to the last chunk.
    placed: list[list[tuple[int, str]]] = [[] for _ in chunks]
    for x, html in prov.markers:
        i = next((i for i, (_, a, b) in enumerate(chunks) if a <= x < b), len(chunks) - 1)
        placed[i].append((x, html))
    out, n = [], 0
    for (numbered, a, b), markers in zip(chunks, placed, strict=True):
        if numbered:
            n += 1
            out.append(f'<li class="step" id="step-{n}"><span class="num">{n}</span>'
                       f'<pre class="text">{prov.render(reasoning, a, b, spans, markers)}</pre></li>')
        elif reasoning[a:b].strip():
            out.append(f'{_GAP}{prov.render(reasoning, a, b, spans, markers)}</pre></li>')
        elif markers:  # blank text between steps (the "\n\n" joining blocks): only the notes that sit there
            out.append(f'{_GAP}{"".join(h for _, h in markers)}</pre></li>')
    return f'<ol class="steps">{"".join(out)}</ol>'


def _prompt_html(t: Trace) -> str:
    if not t.prompt:
        return '<p class="muted">(no prompt)</p>'
    return "".join(f'<div class="msg"><span class="role">{_e(m.role)}</span><pre class="text">{_e(m.content)}</pre>'
                   "</div>" for m in t.prompt)


def _evidence_list(ev: Any) -> str:
    if not isinstance(ev, list) or not ev:
        return ""
    items = []
    for e in ev:
        if not isinstance(e, dict):
            continue
        ok = bool(e.get("verified"))
        where = f" ({e.get('field')} {e.get('start')}-{e.get('end')})" if ok else " (not found in the trace)"
        items.append(f'<li class="{"ok" if ok else "bad"}"><q>{_e(e.get("text"))}</q>'
                     f'<span class="muted">{_e(where)}</span></li>')
    return f'<ul class="evidence">{"".join(items)}</ul>'


def results_html(results: list[dict[str, Any]], meanings: dict[tuple[str, str], str]) -> str:
    """Every stored result of a trace: evaluator, part, label, score, reason, parse error, evidence, raw output."""
    if not results:
        return '<p class="muted">No judge or monitor results stored for this trace.</p>'
    rows = []
    for r in results:
        word, cls = verdict_word(r, meanings.get((r["evaluator"], r["config_hash"])))
        score = "" if r.get("score") is None else f"{float(r['score']):.3f}"
        perr = f'<p class="perr">parse error: {_e(r["parse_error"])}</p>' if r.get("parse_error") else ""
        raw = (f'<details><summary>raw output</summary><pre class="text">{_e(r["raw"])}</pre></details>'
               if r.get("raw") else "")
        rows.append(
            f'<tr class="result"><td>{_e(r["evaluator"])}<div class="muted">{_e(r.get("kind"))} · '
            f'{_e(r["config_hash"])}</div></td><td>{_e(r["part"])}</td>'
            f"<td>{_chip(word, cls)}{from_reasoning_chip(r)}</td>"
            f"<td>{_e(score)}</td>"
            f'<td>{perr}<div class="reason">{_e(r.get("reason"))}</div>{_evidence_list(r.get("evidence"))}{raw}</td>'
            "</tr>")
    return ('<table class="results"><thead><tr><th>judge / monitor</th><th>part</th><th>label</th><th>score</th>'
            f'<th>reason, evidence</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


def prm_html(results: list[dict[str, Any]]) -> str:
    """PRM step scores (``details.step_scores`` of a process reward result) as a colour scale, one box per step."""
    out = []
    for r in results:
        det = r.get("details")
        if not isinstance(det, dict):
            continue
        scores = det.get("step_scores")
        if not isinstance(scores, list) or not scores:
            continue
        raw_texts = det.get("steps")
        texts: list[Any] = raw_texts if isinstance(raw_texts, list) else []
        items = []
        for i, s in enumerate(scores):
            try:
                v = min(1.0, max(0.0, float(s)))
            except (TypeError, ValueError):
                continue
            text = texts[i] if i < len(texts) else ""
            items.append(f'<li class="prm-step s{round(v * 10)}" title="step {i + 1}: {v:.3f}">'
                         f'<span class="num">{i + 1}</span><span class="score">{v:.2f}</span>'
                         f'<span class="text">{_e(text)}</span></li>')
        rule = det.get("rule") or ""
        agg = "" if r.get("score") is None else f"{float(r['score']):.3f}"
        out.append(f'<div class="prm-block"><h3>{_e(r["evaluator"])} <span class="muted">{_e(rule)}: {_e(agg)}'
                   f'</span></h3><ol class="prm">{"".join(items)}</ol></div>')
    if not out:
        return ""
    return ('<section class="prm-section"><h2>Process reward: step scores</h2><p class="scale">'
            '<span class="s0">0</span><span class="s5">0.5</span><span class="s10">1</span></p>'
            + "".join(out) + "</section>")


def trajectory_html(t: Trace, spans: Spans) -> str:
    """An agent episode step by step: each step's reasoning (evidence marked), commands, exit codes, outputs."""
    if not is_agent_trace(t):
        return ""
    steps = []
    for sv in step_view(t):
        if sv.start is not None and sv.end is not None:
            reasoning = highlight(sv.reasoning, _local(spans, sv.start, sv.end))
        else:
            reasoning = _e(sv.reasoning)
        acts = [action_html(a) for a in sv.actions]
        steps.append(f'<li class="agent-step"><h3>step {sv.index + 1}</h3>'
                     f'{f"<pre class=text>{reasoning}</pre>" if sv.reasoning else ""}{"".join(acts)}</li>')
    return f'<section class="trajectory"><h2>Agent trajectory</h2><ol>{"".join(steps)}</ol></section>'


def labels_html(labels: list[Label]) -> str:
    """Human labels of a trace, newest first."""
    return "".join(
        f'<li class="label"><b>{_e(lab.name)}</b> = {_chip(lab.value, _bool_cls(label_bool(lab.value)))} '
        f'<span class="muted">by {_e(lab.author or "unknown")} at {_e(_when(lab.created_at))}</span>'
        f'{f"<div class=note>{_e(lab.note)}</div>" if lab.note else ""}</li>'
        for lab in reversed(labels))


def _bool_cls(b: bool | None) -> str:
    return "pos" if b else "neg" if b is False else "none"


def trace_body(t: Trace, results: list[dict[str, Any]], meanings: dict[tuple[str, str], str], labels: list[Label],
               siblings: list[dict[str, Any]], *, label_names: list[str], default_label: str,
               nav: dict[str, str | None], list_query: dict[str, str]) -> str:
    """One trace: prompt, reasoning steps beside the answer, results with evidence marked, PRM scores, agent
    steps, human labels with the labelling form, and the other traces of the same prompt."""
    spans = evidence_spans(t, results)
    links = [f'<a href="/?{_e(urlencode(list_query))}">traces</a>']
    for rel, step, text in (("prev", -1, "previous (k)"), ("next", 1, "next (j)")):
        if nav.get(rel):
            href = trace_url(str(nav[rel]), nav_query(list_query, step))
            links.append(f'<a rel="{rel}" href="{_e(href)}">{text}</a>')
    meta = " · ".join(_e(x) for x in (
        f"model {t.model}", f"strategy {t.strategy}", f"sample {t.sample_index}", f"group {t.group_id}",
        f"source {t.source.format}:{t.source.file}:{t.source.line}" if t.source else None) if x)
    agent = is_agent_trace(t)
    reasoning = ('<p class="muted">(see the agent trajectory below)</p>' if agent
                 else steps_html(t.reasoning, [(s.start, s.end) for s in t.steps], spans["reasoning"],
                                 t.reasoning_provenance))
    answer = (f'<pre class="text answer">{highlight(t.answer, spans["answer"])}</pre>' if t.answer
              else '<p class="muted">(no answer)</p>')
    if siblings:
        sib = "".join(
            f'<tr><td><a href="{_e(trace_url(s["id"]))}">{_e(s["id"][:12])}</a></td><td>{_e(s["model"])}</td>'
            f'<td>{_e(s["strategy"])}</td><td>{_e(s["sample_index"])}</td><td><a class="cmp" href="/compare?'
            f'{_e(urlencode({"a": t.id, "b": s["id"]}))}">compare side by side</a></td></tr>' for s in siblings)
        sib = f'<table><thead><tr><th>trace</th><th>model</th><th>strategy</th><th>#</th><th></th></tr></thead>' \
              f"<tbody>{sib}</tbody></table>"
    else:
        sib = '<p class="muted">No other trace of this prompt.</p>'
    return _template("trace.html").substitute(
        nav=" · ".join(links), trace_id=_e(t.id), trace_id_attr=_e(t.id), meta=meta,
        label_name=_e(default_label), label_name_options="".join(f'<option value="{_e(n)}">' for n in label_names),
        labels=labels_html(labels), prompt=_prompt_html(t),
        reasoning_note=("" if t.reasoning_closed else '<span class="warn">(never closed)</span>'),
        provenance=provenance_legend(t),
        reasoning=reasoning, answer=answer, trajectory=trajectory_html(t, spans["reasoning"]), prm=prm_html(results),
        results=results_html(results, meanings), siblings=sib)


def nav_query(list_query: dict[str, str], step: int) -> dict[str, str]:
    """The list position of a neighbour, kept in its link so j/k go on walking the same filtered list."""
    q = dict(list_query)
    if "pos" in q:
        q["pos"] = str(int(q["pos"]) + step)
    return q


def compare_body(a: Trace, b: Trace, ra: list[dict[str, Any]], rb: list[dict[str, Any]],
                 meanings: dict[tuple[str, str], str]) -> str:
    """Two traces side by side: the prompt once (both when they differ), then each one's reasoning, answer and
    verdicts."""
    same = [m.model_dump() for m in a.prompt] == [m.model_dump() for m in b.prompt]
    warning = "" if same else '<p class="warn">These traces answer different prompts; the second prompt:</p>' + \
        _prompt_html(b)

    def side(t: Trace, res: list[dict[str, Any]]) -> str:
        spans = evidence_spans(t, res)
        head = (f'<h2><a href="{_e(trace_url(t.id))}">{_e(t.id[:12])}</a></h2><p class="meta">model {_e(t.model)} · '
                f"strategy {_e(t.strategy)} · sample {_e(t.sample_index)}</p>")
        answer = (f'<pre class="text answer">{highlight(t.answer, spans["answer"])}</pre>' if t.answer
                  else '<p class="muted">(no answer)</p>')
        return (head + "<h3>Reasoning</h3>" + provenance_legend(t)
                + steps_html(t.reasoning, [(s.start, s.end) for s in t.steps], spans["reasoning"],
                             t.reasoning_provenance)
                + "<h3>Answer</h3>" + answer + "<h3>Verdicts</h3>" + results_html(res, meanings))

    return _template("compare.html").substitute(prompt=_prompt_html(a), warning=warning, left=side(a, ra),
                                                right=side(b, rb))
