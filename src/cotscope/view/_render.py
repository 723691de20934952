"""The viewer's pages, rendered on the server from the templates in ``templates/``.

Model output is untrusted: every piece of trace, judge or label text goes through :func:`html.escape` (or
:func:`cotscope.report.highlight`, which escapes each piece) before it reaches a page, ids in URLs are
percent-encoded, and no trace text ever becomes an attribute that a browser would follow or run (``href``,
``src``, ``style``, event handlers). The Content-Security-Policy of every response (no inline script, no
inline style, nothing from other origins) is the second line of defence.
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from html import escape
from importlib import resources
from string import Template
from typing import Any
from urllib.parse import quote, urlencode

from cotscope.report import highlight
from cotscope.store import Label, label_bool
from cotscope.traces import Trace, command_of, is_agent_trace, parse_monitor, segment_spans, step_view
from cotscope.view._query import LABEL_CHOICES, Facets, Filters, Page

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


def label_text(label: bool | None, meaning: str | None, parse_error: str | None = None) -> str:
    """A stored verdict in words: the evaluator's label meaning (``unsafe`` / ``not unsafe``), else true/false."""
    if parse_error:
        return "parse error"
    if label is None:
        return "no label"
    if meaning:
        return meaning if label else f"not {meaning}"
    return "true" if label else "false"


def _chip(text: str, cls: str, title: str = "") -> str:
    return f'<span class="chip {cls}" title="{_e(title)}">{_e(text)}</span>'


def _verdict_chips(verdicts: list[dict[str, Any]]) -> str:
    out = []
    for v in verdicts:
        word = label_text(v["label"], v["meaning"], v["parse_error"])
        cls = "perr" if v["parse_error"] else "pos" if v["label"] else "neg" if v["label"] is False else "none"
        score = "" if v["score"] is None else f" {float(v['score']):.2f}"
        out.append(_chip(f"{v['evaluator']}: {word}{score}", cls, f"{v['evaluator']} on {v['part']}"))
    return "".join(out)


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
        label_options=_options(list(LABEL_CHOICES), f.label, {"parse_error": "parse error"}, blank=""),
        human_options=_options(fc.label_names, f.human),
        parse_error_checked=" checked" if f.parse_error else "",
        pager=_pager(p, f), rows="\n".join(rows) or '<tr><td colspan="9" class="muted">no traces</td></tr>',
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


def steps_html(reasoning: str, steps: list[tuple[int, int]], spans: Spans) -> str:
    """The reasoning as numbered steps, evidence marked; text between steps is shown unnumbered."""
    if not reasoning:
        return '<p class="muted">(no reasoning)</p>'
    if not steps:
        steps = [(s, e) for s, e, _ in segment_spans(reasoning)] or [(0, len(reasoning))]
    out, pos, n = [], 0, 0
    for a, b in sorted(steps):
        a, b = max(a, pos), min(b, len(reasoning))
        if a >= b:
            continue
        if reasoning[pos:a].strip():
            gap = highlight(reasoning[pos:a], _local(spans, pos, a))
            out.append(f'<li class="gap"><pre class="text">{gap}</pre></li>')
        n += 1
        out.append(f'<li class="step" id="step-{n}"><span class="num">{n}</span>'
                   f'<pre class="text">{highlight(reasoning[a:b], _local(spans, a, b))}</pre></li>')
        pos = b
    if reasoning[pos:].strip():
        out.append(f'<li class="gap"><pre class="text">{highlight(reasoning[pos:], _local(spans, pos, len(reasoning)))}'
                   "</pre></li>")
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
        word = label_text(r.get("label"), meanings.get((r["evaluator"], r["config_hash"])), r.get("parse_error"))
        cls = "perr" if r.get("parse_error") else "pos" if r.get("label") else "neg" if r.get("label") is False \
            else "none"
        score = "" if r.get("score") is None else f"{float(r['score']):.3f}"
        perr = f'<p class="perr">parse error: {_e(r["parse_error"])}</p>' if r.get("parse_error") else ""
        raw = (f'<details><summary>raw output</summary><pre class="text">{_e(r["raw"])}</pre></details>'
               if r.get("raw") else "")
        rows.append(
            f'<tr class="result"><td>{_e(r["evaluator"])}<div class="muted">{_e(r.get("kind"))} · '
            f'{_e(r["config_hash"])}</div></td><td>{_e(r["part"])}</td><td>{_chip(word, cls)}</td><td>{_e(score)}</td>'
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
        acts = []
        for a in sv.actions:
            if a.kind == "control":
                acts.append(f'<div class="control">{_e(a.name)}</div>')
                continue
            code = getattr(a, "exit_code", None)
            status = "timed out" if getattr(a, "timed_out", False) else f"exit {code}" if code is not None else ""
            acts.append(f'<div class="action"><pre class="command">$ {_e(command_of(a))}</pre>'
                        f'<span class="muted">{_e(status)}</span><pre class="output">{_e(a.output or "")}</pre></div>')
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
                 else steps_html(t.reasoning, [(s.start, s.end) for s in t.steps], spans["reasoning"]))
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
        reasoning_note="" if t.reasoning_closed else '<span class="warn">(never closed)</span>',
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
        return (head + "<h3>Reasoning</h3>" + steps_html(t.reasoning, [(s.start, s.end) for s in t.steps],
                                                          spans["reasoning"])
                + "<h3>Answer</h3>" + answer + "<h3>Verdicts</h3>" + results_html(res, meanings))

    return _template("compare.html").substitute(prompt=_prompt_html(a), warning=warning, left=side(a, ra),
                                                right=side(b, rb))
