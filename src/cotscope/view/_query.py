"""The viewer's queries: one page of traces under filters, the filter choices, neighbours, same-prompt traces.

Every query runs in DuckDB against the store's trace relation, so a page of a 1M-trace store costs one
filtered top-N (plus a count), never a Python loop over the traces. Search is a case-insensitive substring
match (``ILIKE``) over the prompt, reasoning and answer: DuckDB's ``fts`` extension would give ranked search but
is downloaded at run time, which fails offline (see docs/view.md for the measured cost of the scan).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field, field_validator

from cotscope.pipeline import INCOMPLETE_FORMS
from cotscope.store import Store, label_bool
from cotscope.traces import REASONING_KINDS, label_of_kinds

#: Store order (insertion order), as the store's own readers list traces.
ORDER = "created_at, source_file, source_line, id"

#: Characters of prompt, reasoning and answer shown in a list row.
SNIPPET = 160

#: ``details.outcome`` of a stored incomplete result (the pipeline's own test of it: ``is_incomplete_result``).
INCOMPLETE = "incomplete"

#: Values of the judge/monitor label filter (``incomplete``: the stored outcome of reasoning that never finished).
LABEL_CHOICES = ("true", "false", "parse_error", INCOMPLETE, "any")

#: The span kinds of a trace's ``reasoning_provenance`` in span order (NULL or empty: unknown), on alias ``t``.
#: Extracting them is the cost of a provenance filter (about 0.3 s per 1M traces); sorting or deduplicating them
#: in SQL, or a lambda over them, costs 3-20 times that, so labels are made in Python from these lists.
KINDS_SQL = "json_extract_string(t.reasoning_provenance, '$[*].kind')"
_CONTENT_KINDS = tuple(k for k in REASONING_KINDS if k != "truncated")


def _sql_list(items: Iterable[str]) -> str:
    return "[" + ", ".join(f"'{k}'" for k in items) + "]"


def provenance_where(label: str) -> str:
    """The SQL condition (on alias ``t``) of the traces whose :func:`cotscope.traces.provenance_label` is
    ``label``: its content kinds all present and nothing else but a ``truncated`` marker.

    Raises:
        ValueError: ``label`` is not a provenance label.
    """
    if label in ("unknown", "none"):
        text = "> 0" if label == "unknown" else "= 0"
        return f"(coalesce(len({KINDS_SQL}), 0) = 0 AND coalesce(length(t.reasoning), 0) {text})"
    if label == "truncated":
        return f"(len({KINDS_SQL}) > 0 AND list_has_all(['truncated'], {KINDS_SQL}))"
    kinds = label.split("+")
    if any(k not in _CONTENT_KINDS for k in kinds) or label != label_of_kinds(kinds):
        raise ValueError(f"provenance must be a label such as raw, prefill+raw, summary+encrypted, truncated, "
                         f"unknown or none (kinds joined by + in the order {'+'.join(_CONTENT_KINDS)}), "
                         f"got {label!r}")
    return f"(list_has_all({KINDS_SQL}, {_sql_list(kinds)}) AND list_has_all({_sql_list((*kinds, 'truncated'))}, " \
           f"{KINDS_SQL}))"


#: A cap hit (:func:`cotscope.pipeline.cap_reasons` non-empty): stopped for length, a ``truncated`` span, or
#: reasoning never closed.
CAP_SQL = (f"(coalesce(json_extract_string(t.metadata, '$.finish_reason') = 'length', false)"
           f" OR coalesce(list_contains({KINDS_SQL}, 'truncated'), false) OR NOT coalesce(t.reasoning_closed, true))")
#: :func:`cotscope.pipeline.is_incomplete` under each form (``no-answer``: a cap hit with a blank answer).
INCOMPLETE_SQL = {"no-answer": f"({CAP_SQL} AND NOT coalesce(regexp_matches(t.answer, '\\S'), false))",
                  "cap": CAP_SQL}


class Filters(BaseModel):
    """The list's filters, as read from the query string (every field optional).

    Attributes:
        model: only this model.
        strategy: only this decoding strategy.
        run: only traces stored by this run id.
        benchmark: only traces stored by a run of this benchmark.
        evaluator: only traces with a result of this judge or monitor...
        label: ...whose label is ``true``, ``false``, a ``parse_error``, or ``any`` result (default ``any``).
        parse_error: only traces with a parse error from any evaluator.
        human: only traces with a human label of this name.
        provenance: only traces of this reasoning provenance label (:func:`cotscope.traces.provenance_label`:
            ``raw``, ``prefill+raw``, ``summary+encrypted``, ``unknown``...).
        incomplete: only traces whose reasoning never finished, under this form of ``incomplete``
            (``no-answer``: hit the token cap with no answer; ``cap``: every cap hit).
        q: case-insensitive text to find in the prompt, reasoning or answer.
        offset: rows to skip (pagination).
        limit: rows per page (1-500).
    """

    model: str | None = None
    strategy: str | None = None
    run: str | None = None
    benchmark: str | None = None
    evaluator: str | None = None
    label: str = "any"
    parse_error: bool = False
    human: str | None = None
    provenance: str | None = Field(default=None, max_length=200)
    incomplete: str | None = None
    q: str | None = Field(default=None, max_length=1000)
    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=50, ge=1, le=500)

    @field_validator("model", "strategy", "run", "benchmark", "evaluator", "human", "provenance", "incomplete", "q",
                     mode="before")
    @classmethod
    def _blank_is_none(cls, v: Any) -> Any:
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("label")
    @classmethod
    def _label(cls, v: str) -> str:
        if v not in LABEL_CHOICES:
            raise ValueError(f"label must be one of {', '.join(LABEL_CHOICES)}, got {v!r}")
        return v

    @field_validator("provenance")
    @classmethod
    def _provenance(cls, v: str | None) -> str | None:
        if v is not None:
            provenance_where(v)  # raises on a label that is not one
        return v

    @field_validator("incomplete")
    @classmethod
    def _incomplete(cls, v: str | None) -> str | None:
        if v is not None and v not in INCOMPLETE_FORMS:
            raise ValueError(f"incomplete must be one of {', '.join(INCOMPLETE_FORMS)}, got {v!r}")
        return v

    def query(self, **changes: Any) -> dict[str, str]:
        """The non-default fields as query-string pairs (``changes`` applied), for links that keep the filters."""
        d = self.model_dump() | changes
        out: dict[str, str] = {}
        for k, v in d.items():
            if v is None or v is False or (k == "label" and v == "any") or (k == "offset" and v == 0) or (
                    k == "limit" and v == 50):
                continue
            out[k] = "1" if v is True else str(v)
        return out


def _like(text: str) -> str:
    """``text`` as an ILIKE pattern matching it anywhere, its own ``%``, ``_`` and ``\\`` taken literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def where_clause(f: Filters) -> tuple[str, list[Any]]:
    """The SQL ``WHERE`` (possibly empty) and parameters of the filters, on the trace relation aliased ``t``."""
    clauses: list[str] = []
    params: list[Any] = []
    for col, v in (("model", f.model), ("strategy", f.strategy), ("run_id", f.run)):
        if v is not None:
            clauses.append(f"t.{col} = ?")
            params.append(v)
    if f.benchmark is not None:
        clauses.append("t.run_id IN (SELECT id FROM runs WHERE kind = 'benchmark' AND name = ?)")
        params.append(f.benchmark)
    if f.evaluator is not None:
        cond = {"true": " AND label = true AND parse_error IS NULL", "false": " AND label = false AND parse_error"
                " IS NULL", "parse_error": " AND parse_error IS NOT NULL",
                INCOMPLETE: f" AND json_extract_string(details, '$.outcome') = '{INCOMPLETE}'", "any": ""}[f.label]
        clauses.append(f"t.id IN (SELECT trace_id FROM results WHERE evaluator = ?{cond})")
        params.append(f.evaluator)
    if f.parse_error:
        clauses.append("t.id IN (SELECT trace_id FROM results WHERE parse_error IS NOT NULL)")
    if f.human is not None:
        clauses.append("t.id IN (SELECT trace_id FROM labels WHERE name = ?)")
        params.append(f.human)
    if f.provenance is not None:
        clauses.append(provenance_where(f.provenance))
    if f.incomplete is not None:
        clauses.append(INCOMPLETE_SQL[f.incomplete])
    if f.q is not None:
        # The prompt is JSON text: quotes and backslashes in it are escaped, newlines are \n. An ESCAPE clause
        # makes DuckDB's ILIKE about 2.5 times slower, so it is added only when the text holds % _ or \\.
        esc = " ESCAPE '\\'" if any(c in f.q for c in "%_\\") else ""
        clauses.append(f"(t.reasoning ILIKE ?{esc} OR t.answer ILIKE ?{esc} OR CAST(t.prompt AS VARCHAR) ILIKE ?{esc})")
        params += [_like(f.q)] * 3
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


@dataclass
class Row:
    """One trace of a list page, with its stored verdicts and human labels in short."""

    id: str
    model: str | None
    strategy: str | None
    sample_index: int | None
    prompt: str
    reasoning: str
    answer: str
    reasoning_len: int
    provenance: str = "unknown"
    cap_hit: bool = False
    incomplete: bool = False
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    labels: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Page:
    """One page of the trace list."""

    rows: list[Row]
    total: int
    offset: int
    limit: int


def _has_labels(store: Store) -> bool:
    row = store.con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'main'"
                            " AND table_name = 'labels'").fetchone()
    return bool(row and row[0])


def _page_columns() -> str:
    """The columns of a list row (on alias ``t``); the prompt's text is extracted from its JSON only for the rows
    selected."""
    t = "t"
    return f"""{t}.id, {t}.model, {t}.strategy, {t}.sample_index,
               left(coalesce(
                   [m.content FOR m IN from_json({t}.prompt, '[{{"role": "VARCHAR", "content": "VARCHAR"}}]')
                    IF m.role = 'user'][-1], CAST({t}.prompt AS VARCHAR), ''), {SNIPPET}),
               coalesce(left({t}.reasoning, {SNIPPET}), ''), coalesce(left({t}.answer, {SNIPPET}), ''),
               coalesce(length({t}.reasoning), 0),
               {KINDS_SQL}, {CAP_SQL}, {INCOMPLETE_SQL["no-answer"]}"""


def list_page(store: Store, f: Filters) -> Page:
    """One page of traces in store order under the filters, with the total count of matches.

    Without a search, the count and the top-N are two cheap statements (a count without a filter is read from
    the table's metadata; DuckDB reads the page's text columns only for the rows of the page). A search costs a
    scan of the text, so it is scanned once: the page's ids and the count come from one statement (a window
    count beside the top-N), and the page's columns are then read for those ids.
    """
    rel = store.trace_relation
    if f.human is not None and not _has_labels(store):
        return Page([], 0, f.offset, f.limit)
    where, params = where_clause(f)
    page_sql = f"ORDER BY {ORDER} LIMIT {int(f.limit)} OFFSET {int(f.offset)}"
    raw: list[Any]
    if f.q is None:
        row = store.con.execute(f"SELECT count(*) FROM {rel} t {where}", params).fetchone()
        total = int(row[0]) if row else 0
        raw = store.con.execute(f"SELECT {_page_columns()} FROM {rel} t {where} {page_sql}", params).fetchall()
    else:
        head = store.con.execute(f"SELECT t.id, count(*) OVER () FROM {rel} t {where} {page_sql}", params).fetchall()
        if head:
            total = int(head[0][1])
        elif f.offset == 0:
            total = 0
        else:  # past the end: the window saw no row, count on its own
            row = store.con.execute(f"SELECT count(*) FROM {rel} t {where}", params).fetchone()
            total = int(row[0]) if row else 0
        order = {str(r[0]): i for i, r in enumerate(head)}
        raw = sorted(store.con.execute(
            f"SELECT {_page_columns()} FROM {rel} t WHERE t.id IN (SELECT unnest(?::VARCHAR[]))",
            [list(order)]).fetchall(), key=lambda r: order[r[0]]) if order else []
    rows = [Row(id=r[0], model=r[1], strategy=r[2], sample_index=r[3], prompt=r[4] or "", reasoning=r[5],
                answer=r[6], reasoning_len=int(r[7]), provenance=label_of_kinds(r[8] or (), "x" if r[7] else ""),
                cap_hit=bool(r[9]), incomplete=bool(r[10])) for r in raw]
    ids = [r.id for r in rows]
    if not rows:
        return Page([], total, f.offset, f.limit)
    by_id = {r.id: r for r in rows}
    meanings = store.label_meanings()
    for tid, ev, chash, part, lab, score, perr, outcome, from_r in store.con.execute(
            "SELECT trace_id, evaluator, config_hash, part, label, score, parse_error,"
            " json_extract_string(details, '$.outcome'), json_extract_string(details, '$.verdict_from_reasoning')"
            " FROM results WHERE trace_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY evaluator, part",
            [ids]).fetchall():
        by_id[tid].verdicts.append({"evaluator": ev, "part": part, "label": lab, "score": score,
                                    "parse_error": perr, "meaning": meanings.get((ev, chash)),
                                    "details": {"outcome": outcome, "verdict_from_reasoning": from_r == "true"}})
    for lab in store.labels(trace_ids=ids, latest=True):
        by_id[lab.trace_id].labels.append({"name": lab.name, "value": lab.value, "author": lab.author,
                                           "bool": label_bool(lab.value)})
    return Page(rows, total, f.offset, f.limit)


def neighbour(store: Store, f: Filters, pos: int) -> str | None:
    """The id of the trace at position ``pos`` (from 0) of the filtered list, or ``None`` past either end."""
    if pos < 0:
        return None
    if f.human is not None and not _has_labels(store):
        return None
    where, params = where_clause(f)
    row = store.con.execute(f"SELECT t.id FROM {store.trace_relation} t {where} ORDER BY {ORDER} LIMIT 1"
                            f" OFFSET {int(pos)}", params).fetchone()
    return str(row[0]) if row else None


@dataclass
class Facets:
    """What the filters offer: the values stored."""

    models: list[str]
    strategies: list[str]
    benchmarks: list[str]
    runs: list[dict[str, Any]]
    evaluators: list[str]
    label_names: list[str]
    traces: int
    provenances: list[str] = field(default_factory=list)


def facets(store: Store) -> Facets:
    """The distinct models, strategies, benchmarks, runs, evaluators, human label names and reasoning provenance
    labels of the store."""
    rel = store.trace_relation
    con = store.con
    models = [r[0] for r in con.execute(f"SELECT DISTINCT model FROM {rel} WHERE model IS NOT NULL ORDER BY 1")
              .fetchall()]
    strategies = [r[0] for r in con.execute(
        f"SELECT DISTINCT strategy FROM {rel} WHERE strategy IS NOT NULL ORDER BY 1").fetchall()]
    runs = [{"id": r[0], "kind": r[1], "name": r[2], "status": r[3], "started_at": r[4]} for r in con.execute(
        "SELECT id, kind, name, status, started_at FROM runs ORDER BY started_at DESC").fetchall()]
    benchmarks = sorted({str(r["name"]) for r in runs if r["kind"] == "benchmark" and r["name"]})
    evaluators = [r[0] for r in con.execute("SELECT DISTINCT evaluator FROM results ORDER BY 1").fetchall()]
    names = label_names(store)
    n = con.execute(f"SELECT count(*) FROM {rel}").fetchone()
    provenances = sorted({label_of_kinds(kinds or (), "x" if has_text else "") for kinds, has_text in con.execute(
        f"SELECT DISTINCT {KINDS_SQL}, coalesce(length(t.reasoning), 0) > 0 FROM {rel} t").fetchall()})
    return Facets(models, strategies, benchmarks, runs, evaluators, names, int(n[0]) if n else 0, provenances)


def label_names(store: Store) -> list[str]:
    """The distinct names of the stored human labels."""
    if not _has_labels(store):
        return []
    return [r[0] for r in store.con.execute("SELECT DISTINCT name FROM labels ORDER BY 1").fetchall()]


def same_prompt(store: Store, trace_id: str, limit: int = 200) -> list[dict[str, Any]]:
    """Other traces of the same prompt (equal message lists): every model, strategy and sample, in store order."""
    rows = store.con.execute(
        f"SELECT t.id, t.model, t.strategy, t.sample_index FROM {store.trace_relation} t"
        f" WHERE CAST(t.prompt AS VARCHAR) = (SELECT CAST(prompt AS VARCHAR) FROM {store.trace_relation}"
        f" WHERE id = ? LIMIT 1) AND t.id <> ? ORDER BY {ORDER} LIMIT {int(limit)}", [trace_id, trace_id]).fetchall()
    return [{"id": r[0], "model": r[1], "strategy": r[2], "sample_index": r[3]} for r in rows]
