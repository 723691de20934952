"""The HTML report: one self-contained file (inline CSS and SVG, no script, no network).

Every piece of trace or judge text is passed through :func:`html.escape` before it reaches the page, so a
trace that contains ``<script>`` shows the characters and runs nothing. The page also carries a
Content-Security-Policy that forbids scripts and remote loads, as a second line of defence.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any

from cotscope.pipeline import DEFAULT_INCOMPLETE, FORM_TEXT, check_incomplete_form
from cotscope.report._format import column_names, format_rows
from cotscope.report._svg import bar_chart, roc_chart
from cotscope.report._tables import completion_table, guard_table, safety_table
from cotscope.store import Store
from cotscope.traces import Action, Trace, command_of, is_agent_trace, parse_monitor, step_view

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'none'"


def _css() -> str:
    return resources.files("cotscope.report").joinpath("style.css").read_text(encoding="utf-8")


def _e(v: Any) -> str:
    return escape("" if v is None else str(v))


def highlight(text: str, spans: Iterable[tuple[int, int, str]]) -> str:
    """``text`` escaped, with the ``(start, end, title)`` spans wrapped in ``<mark>``.

    Spans outside the text are dropped and overlapping spans merged, so marks never nest and the output is
    always well-formed; every piece of text is escaped on its own.
    """
    good = sorted((max(0, a), min(len(text), b), t) for a, b, t in spans if 0 <= a < b <= len(text))
    merged: list[list[Any]] = []
    for a, b, t in good:
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
            merged[-1][2] += f"; {t}"
        else:
            merged.append([a, b, t])
    out, pos = [], 0
    for a, b, t in merged:
        out.append(escape(text[pos:a]))
        out.append(f'<mark title="{escape(t)}">{escape(text[a:b])}</mark>')
        pos = b
    out.append(escape(text[pos:]))
    return "".join(out)


def _table(t: Any) -> str:
    """A metric table (typed values, formatted here) as escaped HTML."""
    head = "".join(f"<th>{_e(c)}</th>" for c in column_names(t))
    rows = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in format_rows(t))
    title = t["title"] if isinstance(t, dict) else t.title
    return f'<table><caption>{_e(title)}</caption><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def _plot(p: dict[str, Any]) -> str:
    svg = roc_chart(p) if p["type"] == "roc" else bar_chart(p)
    return f'<figure>{svg}<figcaption>{_e(p.get("title"))}</figcaption></figure>'


def _verdict_rows(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        details = r.get("details") or {}
        if r.get("parse_error"):
            verdict = f"parse error: {r['parse_error']}"
        elif details.get("outcome") == "incomplete":
            verdict = "incomplete (not judged: no answer)"
        else:
            verdict = {True: "true", False: "false", None: "no label"}[r.get("label")]
        if details.get("verdict_from_reasoning"):
            verdict += " · from reasoning (its evidence quotes only the reasoning)"
        score = "" if r.get("score") is None else f"{float(r['score']):.3f}"
        ev = r.get("evidence") or []
        quotes = "".join(
            f'<li class="{"ok" if e.get("verified") else "bad"}">{_e(e.get("text"))}'
            f'{"" if e.get("verified") else " <em>(not found in the trace)</em>"}</li>' for e in ev)
        rows.append(f"<tr><td>{_e(r['evaluator'])}</td><td>{_e(r['part'])}</td><td>{_e(verdict)}</td>"
                    f"<td>{_e(score)}</td><td>{_e(r.get('reason'))}{f'<ul>{quotes}</ul>' if quotes else ''}</td></tr>")
    if not rows:
        return "<p class='muted'>No verdicts stored for this trace.</p>"
    return ("<table class='verdicts'><thead><tr><th>judge / monitor</th><th>part</th><th>label</th><th>score</th>"
            "<th>reason and evidence</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def trace_card(t: Trace, results: list[dict[str, Any]]) -> str:
    """One trace for the drill-down: prompt, reasoning and answer apart, evidence highlighted, verdicts."""
    spans: dict[str, list[tuple[int, int, str]]] = {"reasoning": [], "answer": []}
    seg = parse_monitor(t.reasoning, t.answer)
    for r in results:
        for e in r.get("evidence") or []:
            f, start, end = e.get("field"), e.get("start"), e.get("end")
            if not e.get("verified") or start is None or end is None:
                continue
            if f == "monitor" and seg is not None:
                # Offsets into the <monitor> segment's text: shift them to where it sits in its field.
                f, start, end = seg.field, seg.start + int(start), seg.start + int(end)
            if f in spans:
                spans[f].append((int(start), int(end), str(r["evaluator"])))
    prompt = "".join(f'<div class="msg"><span class="role">{_e(m.role)}</span><pre>{_e(m.content)}</pre></div>'
                     for m in t.prompt)
    title = (f"{t.metadata.get('item_id') or t.id[:12]} · {t.strategy or ''} · sample {t.sample_index}")
    head = (f'<details class="trace"><summary>{_e(title)}</summary>'
            f'<p class="muted">trace {_e(t.id)} · model {_e(t.model)}</p><h4>Prompt</h4>{prompt}')
    tail = f"<h4>Verdicts</h4>{_verdict_rows(results)}</details>"
    if is_agent_trace(t):
        return head + _trajectory(t, spans["reasoning"]) + tail
    reasoning = highlight(t.reasoning, spans["reasoning"]) if t.reasoning else "<em>(no reasoning)</em>"
    answer = highlight(t.answer, spans["answer"]) if t.answer else "<em>(no answer)</em>"
    unclosed = "" if t.reasoning_closed else " <span class='warn'>(reasoning never closed)</span>"
    return (head + f'<h4>Reasoning{unclosed}</h4><pre class="reasoning">{reasoning}</pre>'
            f'<h4>Answer</h4><pre class="answer">{answer}</pre>' + tail)


def action_html(a: Action) -> str:
    """One agent action as HTML, every value escaped: a control action (``DONE``, ``FAIL``) by its name; a command
    with its exit status (or ``timed out``) and its output. Classes ``control``, ``action``, ``command``, ``muted``,
    ``output`` (the report's and the viewer's style sheets)."""
    if a.kind == "control":
        return f"<div class='control'>{_e(a.name)}</div>"
    code = getattr(a, "exit_code", None)
    status = "timed out" if getattr(a, "timed_out", False) else f"exit {code}" if code is not None else ""
    return (f"<div class='action'><pre class='command'>$ {_e(command_of(a))}</pre>"
            f"<span class='muted'>{_e(status)}</span><pre class='output'>{_e(a.output or '')}</pre></div>")


def _trajectory(t: Trace, marks: list[tuple[int, int, str]]) -> str:
    """An agent episode step by step: the step's reasoning (evidence marked), then each command with its exit
    code and output, and the control codes; the outcome from the agent loop's metadata first."""
    agent = t.metadata.get("agent") if isinstance(t.metadata.get("agent"), dict) else {}
    outcome = ""
    if agent:
        outcome = (f"<p class='outcome'>task {_e(agent.get('task_id'))} ({_e(agent.get('variant'))}) · "
                   f"{_e(agent.get('status'))}: {_e(agent.get('reason'))} · score {_e(agent.get('score'))} by "
                   f"{_e(agent.get('checker'))} · {_e(agent.get('steps'))} steps</p>")
    steps = []
    for sv in step_view(t):
        if sv.start is not None and sv.end is not None:
            local = [(a - sv.start, b - sv.start, w) for a, b, w in marks if sv.start <= a and b <= sv.end]
            reasoning = highlight(sv.reasoning, local)
        else:
            reasoning = _e(sv.reasoning)
        acts = [action_html(a) for a in sv.actions]
        steps.append(f"<li class='step'><h5>step {sv.index + 1}</h5>"
                     f"{f'<pre class=reasoning>{reasoning}</pre>' if sv.reasoning else ''}{''.join(acts)}</li>")
    return f"{outcome}<h4>Trajectory</h4><ol class='trajectory'>{''.join(steps)}</ol>"


def _latest_runs(store: Store) -> list[dict[str, Any]]:
    """The newest benchmark run per (benchmark, model) that has a plan, oldest first."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for r in store.runs():  # newest first
        if r["kind"] != "benchmark" or not isinstance(r.get("config"), dict):
            continue
        key = (str(r["name"]), str(r["config"].get("model")))
        if key not in seen:
            seen[key] = r
    return list(reversed(seen.values()))


def collect(store: Store, incomplete: str | None = None) -> list[dict[str, Any]]:
    """Metrics of every latest benchmark run in the store, recomputed from its stored plan (``incomplete``: the
    form of ``incomplete`` instead of the one each plan recorded)."""
    from cotscope.benchmarks import RunPlan, get_kind

    sections = []
    for r in _latest_runs(store):
        try:
            plan = RunPlan.model_validate(r["config"])
            kind = get_kind(plan.benchmark.kind)
            if incomplete is not None:
                plan.incomplete = incomplete
        except ValueError:
            continue  # a run recorded by an older, incompatible version: nothing to recompute from
        m = kind.metrics(store, plan).model_dump(mode="json")
        m["run"] = {"id": r["id"], "status": r["status"], "started": str(r["started_at"]),
                    "notes": (r.get("stats") or {}).get("notes") or [],
                    "judges": [pj.label + (f" — skipped: {pj.skipped}" if pj.skipped else "") for pj in plan.judges],
                    "strategies": plan.strategies, "samples": plan.samples, "judge_model": plan.judge_model,
                    "source": plan.benchmark.source, "description": plan.benchmark.description}
        sections.append(m)
    return sections


def _cross_model(sections: list[dict[str, Any]]) -> str:
    """CogTest habit profiles of several models side by side, and the similarity of the profiles."""
    from cotscope.metrics import MetricError, profile_similarity

    profiles = {s["model"]: s["habit_profile"] for s in sections if s.get("habit_profile")}
    if not profiles:
        return ""
    habits = sorted({h for p in profiles.values() for h in p})
    plot = {"type": "bars", "title": "Habit profile per model", "groups": habits, "horizontal": True,
            "series": [{"name": m, "values": [float(p.get(h, 0)) for h in habits]} for m, p in profiles.items()],
            "percent": False}
    html = f"<section id='habits'><h2>CogTest habit profiles</h2>{_plot(plot)}"
    try:
        sim = profile_similarity(profiles)
        models = list(sim)
        html += _table({"title": "Cosine similarity of habit profiles", "columns": ["", *models],
                        "rows": [[a, *[f"{sim[a][b]:.3f}" for b in models]] for a in models]})
    except MetricError as e:
        html += f"<p class='muted'>No profile similarity: {_e(e)}</p>"
    return html + "</section>"


def render_report(store: Store, title: str = "cotscope report", incomplete: str | None = None) -> str:
    """The whole page as one string.

    ``incomplete`` is the form of ``incomplete`` of every table (``no-answer`` or ``cap``); ``None``: each benchmark
    run's tables use the form its plan recorded, the store section the default (``no-answer``).

    Raises:
        ValueError: an unknown form.
    """
    if incomplete is not None:
        check_incomplete_form(incomplete)
    sections = collect(store, incomplete)
    nav = "".join(f'<li><a href="#run-{i}">{_e(s["benchmark"])} · {_e(s["model"])}</a></li>'
                  for i, s in enumerate(sections))
    body = []
    for i, s in enumerate(sections):
        run = s["run"]
        parts = [f'<section id="run-{i}"><h2>{_e(s["benchmark"])} <span class="model">{_e(s["model"])}</span></h2>',
                 f'<p class="muted">{_e(run["description"])}<br>source: {_e(run["source"])}<br>'
                 f'{s["items"]} items · {s["traces"]} traces · strategies {_e(", ".join(run["strategies"]))} · '
                 f'K={run["samples"]} · judge model {_e(run["judge_model"] or "none (embedded judges)")} · '
                 f'run {_e(run["id"])} ({_e(run["status"])})</p>',
                 "<p class='muted'>judges: " + _e("; ".join(run["judges"]) or "none") + "</p>"]
        # Skipped judges are already listed with the judges; the other notes (errors, fallbacks) are shown.
        notes = [n for n in run["notes"] if " skipped: " not in n][:10]
        for w in [*s.get("warnings", []), *notes]:
            parts.append(f'<p class="warn">{_e(w)}</p>')
        parts.extend(_table(t) for t in s["tables"])
        parts.append('<div class="plots">' + "".join(_plot(p) for p in s["plots"]) + "</div>")
        ex = s.get("examples") or []
        if ex:
            traces = {t.id: t for t in store.traces(ids=ex)}
            res: dict[str, list[dict[str, Any]]] = {}
            for r in store.results(trace_ids=ex):
                res.setdefault(r["trace_id"], []).append(r)
            cards = "".join(trace_card(traces[i], res.get(i, [])) for i in ex if i in traces)
            parts.append(f"<h3>Example traces</h3>{cards}")
        parts.append("</section>")
        body.append("".join(parts))
    if not sections:
        body.append("<p class='muted'>No benchmark runs in this store: "
                    "<code>cotscope run BENCHMARK --model M --store S</code> adds the papers' tables.</p>")
    body.append(_verify_section(store))
    body.append(_store_section(store, incomplete=incomplete or DEFAULT_INCOMPLETE))
    cross = _cross_model(sections)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{_css()}</style></head><body>"
            f'<header><h1>{_e(title)}</h1><p class="muted">store {_e(store.path)} · {now}</p>'
            f"<nav><ul>{nav}</ul></nav></header><main>{''.join(body)}{cross}</main></body></html>")


def _verify_section(store: Store) -> str:
    """Best-of-N accuracy against N for every process reward model scored in the store (``cotscope verify
    score``): each PRM rule against majority vote, a random pick and pass@N, with bootstrap CIs, as a table and a
    bar chart per PRM; N goes up to the largest power of two that the stored samples per problem allow."""
    from cotscope.errors import DataError
    from cotscope.pipeline import best_of_n_from_store
    from cotscope.pipeline._verify import PRM_KIND

    prms = [e for e in store.evaluators() if e.get("kind") == PRM_KIND]
    if not prms:
        return ""
    parts = ["<section id='verify'><h2>Best-of-N with process reward models</h2>",
             "<p class='muted'>Accuracy of the answer picked among N samples of each problem: by each PRM rule "
             "(argmax of the aggregated step scores), by majority vote, at random, and pass@N (oracle); the mean over "
             "all draws of N, 95% bootstrap CIs over problems.</p>"]
    for e in prms:
        key = f"{e['evaluator']}@{e['config_hash']}"
        try:
            # The pool at N=1 says how many scored samples the largest problem has; N goes up to the largest power
            # of two within it (problems with fewer are left out, and counted).
            most = best_of_n_from_store(store, key, ns=[1], rules=("min",), baselines=()).sizes[1]
            ns = [2**i for i in range(most.bit_length())]
            rep = best_of_n_from_store(store, key, ns=ns, rules=("min", "mean", "last", "product"),
                                       baselines=("majority", "random", "oracle"))
        except DataError as exc:  # no problem with a gold answer and scored samples: said, never hidden
            parts.append(f"<p class='muted'>{_e(key)}: {_e(exc)}</p>")
            continue
        methods = list(dict.fromkeys(r.method for r in rep.rows))
        ns_done = sorted({r.n for r in rep.rows})
        by = {(r.n, r.method): r for r in rep.rows}
        parts.append(_table({"title": f"{key}: best-of-N accuracy ({rep.groups} problems, {rep.samples} samples; "
                                      f"left out: {rep.unscored} unscored, {rep.errors} errors, {rep.no_gold} groups "
                                      f"without gold, {rep.short} short)",
                             "columns": [{"name": "N", "kind": "int"}, *[
                                 c for m in methods for c in ({"name": m, "kind": "rate"},
                                                              {"name": f"{m} CI", "kind": "ci"})]],
                             "rows": [[n, *[v for m in methods for v in (
                                 by[(n, m)].accuracy if (n, m) in by else None,
                                 [by[(n, m)].ci_low, by[(n, m)].ci_high]
                                 if (n, m) in by and by[(n, m)].ci_low is not None else None)]]
                                      for n in ns_done]}))
        parts.append('<div class="plots">' + _plot({
            "type": "bars", "title": f"Best-of-N accuracy by N: {key}", "groups": [f"N={n}" for n in ns_done],
            "series": [{"name": m, "values": [by[(n, m)].accuracy if (n, m) in by else None for n in ns_done],
                        "low": [by[(n, m)].ci_low if (n, m) in by else None for n in ns_done],
                        "high": [by[(n, m)].ci_high if (n, m) in by else None for n in ns_done]} for m in methods],
            "ymax": 1.0, "percent": True}) + "</div>")
    return "".join(parts) + "</section>"


def _store_section(store: Store, n_examples: int = 6, incomplete: str = DEFAULT_INCOMPLETE) -> str:
    """Every judge and monitor result in the store, whichever command wrote it (ingested and judged traces
    included): label counts per evaluator (incomplete outcomes and answer verdicts quoted from the reasoning
    apart), SafeChain metrics per model, strategy and reasoning provenance, cap hits per model and strategy,
    example traces."""
    from cotscope.pipeline import completion_metrics, guard_metrics, safety_metrics

    counts = store.con.execute(
        "SELECT r.evaluator, r.part, r.kind, any_value(e.label_meaning), count(*), count(*) FILTER (label),"
        " count(*) FILTER (NOT label), count(*) FILTER (parse_error IS NOT NULL),"
        " count(*) FILTER (json_extract_string(details, '$.outcome') = 'incomplete'),"
        " count(*) FILTER (json_extract_string(details, '$.verdict_from_reasoning') = 'true')"
        " FROM results r LEFT JOIN evaluators e USING (evaluator, config_hash)"
        " GROUP BY ALL ORDER BY r.evaluator, r.part").fetchall()
    if not counts:
        return ""
    n_traces = store.count()
    parts = ["<section id='store'><h2>All judged traces in this store</h2>",
             f"<p class='muted'>{n_traces:,} traces; results of every judge and monitor, whether they came from "
             "a benchmark run, <code>cotscope judge</code> / <code>monitor</code> or an ingested log.</p>"]
    parts.append(_table({"title": "Results per judge and monitor",
                         "columns": [{"name": c, "kind": k} for c, k in (
                             ("evaluator", "text"), ("part", "text"), ("kind", "text"), ("label means", "text"),
                             ("results", "int"), ("label true", "int"), ("label false", "int"),
                             ("parse errors", "int"), ("incomplete (not judged)", "int"),
                             ("verdicts from reasoning", "int"))],
                         "rows": [list(r) for r in counts]}))
    rows = safety_metrics(store, ["model", "strategy"], incomplete=incomplete)
    if rows:
        parts.append(_table(safety_table(rows, ["model", "strategy"], incomplete,
                                         "Safe@1, Safe@K, ConsSafe@K per judge, model, strategy and reasoning "
                                         f"provenance ({FORM_TEXT[incomplete]}; a group with one is left out)")))
    parts.append(_table(completion_table(completion_metrics(store, incomplete=incomplete, judged_only=True),
                                         incomplete)))
    guard = guard_metrics(store, ["model"])
    if guard:
        parts.append(_table(guard_table(guard, ["model"])))
    # Examples: traces with a true label first (unsafe, refused, flagged), then the rest.
    ids = [r[0] for r in store.con.execute(
        "SELECT trace_id FROM results GROUP BY trace_id ORDER BY bool_or(coalesce(label, false)) DESC,"
        " min(created_at) LIMIT ?", [n_examples]).fetchall()]
    if ids:
        traces = {t.id: t for t in store.traces(ids=ids)}
        res: dict[str, list[dict[str, Any]]] = {}
        for r in store.results(trace_ids=ids):
            res.setdefault(r["trace_id"], []).append(r)
        parts.append("<h3>Example traces</h3>" + "".join(trace_card(traces[i], res.get(i, [])) for i in ids
                                                        if i in traces))
    return "".join(parts) + "</section>"


def build_report(store: Store, out_dir: str | Path, title: str = "cotscope report",
                 incomplete: str | None = None) -> Path:
    """Write ``index.html`` into ``out_dir`` (created) and return its path (``incomplete``: see
    :func:`render_report`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "index.html"
    path.write_text(render_report(store, title, incomplete), encoding="utf-8")
    return path
