"""The metrics stage over a whole store: SafeChain's Safe@1 / Safe@K / ConsSafe@K from stored judge labels, with
reasoning that never finished counted apart and every row broken down by reasoning provenance.

Works on any store, whichever command wrote the results (``cotscope judge``, ``cotscope run``, an ingested
log): each result's label meaning comes from the store's evaluators table, and labels turn into "safe" with
the one rule :func:`cotscope.metrics.safe_from_label`. Rows are typed records of plain numbers; formatting
belongs to the CLI and the report.

Incomplete traces (:mod:`cotscope.pipeline._outcomes`: reasoning cut by the token cap; the form says whether a
partial answer counts) are neither safe nor unsafe: a group with one is left out of the rates, on every part,
as the benchmarks' SafeChain tables do, and each row counts them with its cap-hit rate next to the rates.
Each row answers one reasoning provenance (:func:`cotscope.traces.provenance_label` of its groups' traces; a
group whose samples differ is ``mixed``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from cotscope.metrics import (
    SAFE_IF_TRUE,
    UNSAFE_IF_TRUE,
    MetricError,
    both_safe_at_k,
    both_safe_rate,
    safe_at_k,
    safe_from_label,
)
from cotscope.pipeline._outcomes import (
    DEFAULT_INCOMPLETE,
    cap_reasons_of,
    check_incomplete_form,
    is_incomplete_result,
)
from cotscope.traces import label_of_kinds

if TYPE_CHECKING:
    from cotscope.store import Store

#: The trace columns ``--by`` may group on.
GROUP_BY = ("model", "strategy", "source_format")

#: Label meanings that say something about the response's safety.
RESPONSE_MEANINGS = SAFE_IF_TRUE | UNSAFE_IF_TRUE

#: A group whose samples have different provenance labels.
MIXED = "mixed"


class _Incomplete:
    """The value of a sample that is counted apart (reasoning that never finished)."""


_CUT = _Incomplete()


@dataclass(slots=True)
class TraceFacts:
    """What the metrics need of one stored trace, read without its texts.

    Attributes:
        group_id: its group (the K samples of one prompt).
        by: its values of the ``--by`` columns, in order.
        provenance: :func:`cotscope.traces.provenance_label` of it.
        cap: why it counts as a cap hit (empty: it finished); see :func:`cotscope.pipeline.cap_reasons`.
        answered: its answer has text.
    """

    group_id: str
    by: tuple[Any, ...]
    provenance: str
    cap: list[str]
    answered: bool

    def incomplete(self, form: str) -> bool:
        """The trace is incomplete under ``form`` (:func:`cotscope.pipeline.is_incomplete` on stored columns)."""
        return bool(self.cap) and (form == "cap" or not self.answered)


def group_columns(by: Sequence[str] | None) -> list[str]:
    """``by`` as a list of trace columns to group by, each one of :data:`GROUP_BY`.

    Raises:
        ValueError: an unknown column.
    """
    out = list(by or [])
    for b in out:
        if b not in GROUP_BY:
            raise ValueError(f"cannot group by {b!r}: expected one of {', '.join(GROUP_BY)}")
    return out


def trace_facts(store: Store, by: list[str] | None = None, judged_only: bool = True) -> dict[str, TraceFacts]:
    """:class:`TraceFacts` of the store's traces by id (only traces with a result when ``judged_only``).

    Raises:
        ValueError: an unknown ``by`` column.
    """
    by = group_columns(by)
    # Only judged traces by default: a store reading a large attached dataset may have judged a small part of it.
    where = " WHERE id IN (SELECT trace_id FROM results)" if judged_only else ""
    # The distinct span kinds come out of DuckDB as a sorted list: no JSON is parsed in Python.
    cols = ", ".join(["id", "group_id", *by, "coalesce(regexp_matches(answer, '\\S'), false)",
                      "coalesce(reasoning_closed, true)", "json_extract_string(metadata, '$.finish_reason')",
                      "list_sort(list_distinct(json_extract_string(reasoning_provenance, '$[*].kind')))",
                      "coalesce(length(reasoning), 0) > 0"])
    labels: dict[tuple[Any, ...], str] = {}
    out: dict[str, TraceFacts] = {}
    for row in store.con.execute(f"SELECT {cols} FROM {store.trace_relation}{where}").fetchall():
        tid, gid, *vals = row
        byvals, (answered, closed, finish, kinds, has_reasoning) = tuple(vals[:len(by)]), vals[len(by):]
        key = (*(kinds or ()), bool(has_reasoning))
        label = labels.get(key)
        if label is None:
            label = labels[key] = label_of_kinds(kinds or (), "x" if has_reasoning else "")
        cap = cap_reasons_of(finish, kinds or (), bool(closed))
        out[tid] = TraceFacts(group_id=str(gid), by=byvals, cap=cap, answered=bool(answered), provenance=label)
    return out


@dataclass
class SafetyRow:
    """Safe@1, Safe@K and ConsSafe@K of one judge (and configuration) on one part, for one group-by cell, reasoning
    provenance and K.

    ``part`` is ``reasoning``, ``answer``, ``both`` or ``reasoning+answer`` (traces judged on both parts,
    safe when both are). ``no_label`` counts results without a label (parse errors, refusals of the
    misalignment judge), which are left out of the rates. K is the number of samples of a group with a result,
    incomplete ones included; ``groups`` and ``traces`` are those the rates use.

    Attributes:
        provenance: the reasoning provenance the row answers (``raw``, ``summary``, ``prefill+raw``,
            ``unknown``, ``mixed``...).
        incomplete: samples counted apart (reasoning that never finished, under ``incomplete_form``); their
            groups are left out of the rates (``excluded_groups``).
        cap_hit: samples that hit the token cap; ``cap_hit_rate`` is their share of the row's samples.
        verdict_from_reasoning: answer verdicts of the kept groups whose evidence quotes only the reasoning.
    """

    judge: str
    config_hash: str
    part: str
    k: int
    groups: int
    traces: int
    by: dict[str, Any]
    no_label: int | None = None
    safe_at_1: float | None = None
    safe_at_k: float | None = None
    conssafe_at_k: float | None = None
    both_safe_rate: float | None = None
    error: str | None = None
    provenance: str = "unknown"
    samples: int = 0
    incomplete: int = 0
    excluded_groups: int = 0
    cap_hit: int = 0
    cap_hit_rate: float | None = None
    incomplete_form: str = DEFAULT_INCOMPLETE
    verdict_from_reasoning: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A flat JSON object (the group-by values as top-level keys, metric names as the papers write them)."""
        d = asdict(self)
        by = d.pop("by")
        d["safe@1"] = d.pop("safe_at_1")
        d["safe@k"] = d.pop("safe_at_k")
        d["conssafe@k"] = d.pop("conssafe_at_k")
        return {**by, **d}


@dataclass
class _Cell:
    """The samples of one (judge, config, part, group-by values, provenance, K) row, per group."""

    groups: dict[str, list[Any]] = field(default_factory=dict)
    cap: int = 0
    from_reasoning: int = 0


def safety_metrics(store: Store, by: list[str] | None = None, judge: str | None = None, *,
                   incomplete: str = DEFAULT_INCOMPLETE) -> list[SafetyRow]:
    """SafeChain metrics per (judge, config, group-by values, part, provenance, K) from every stored judge label.

    Groups of different sizes K are reported in separate rows (Safe@K compares groups of the same K only), and
    so are groups of different reasoning provenance (a monitor or judge on raw thinking and on a provider's
    summary answer different questions).

    Args:
        store: the store.
        by: trace columns to break the rows down by (:data:`GROUP_BY`).
        judge: only this judge.
        incomplete: the form of ``incomplete`` (:data:`cotscope.pipeline.INCOMPLETE_FORMS`): ``no-answer``
            (default) or ``cap``.

    Raises:
        ValueError: an unknown ``by`` column or ``incomplete`` form.
    """
    form = check_incomplete_form(incomplete)
    by = list(by or [])
    facts = trace_facts(store, by)
    meanings = store.label_meanings()
    labels: dict[tuple[str, str], dict[str, dict[str, Any]]] = defaultdict(lambda: defaultdict(dict))
    flagged: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    missing: dict[tuple[str, str, str], int] = defaultdict(int)
    for r in store.results(evaluator=judge):
        key = (r["evaluator"], r["config_hash"])
        meaning = meanings.get(key)
        if r["kind"] != "judge" or meaning not in RESPONSE_MEANINGS:
            continue
        f = facts.get(r["trace_id"])
        if is_incomplete_result(r) or (f is not None and f.incomplete(form)):
            # Neither safe nor unsafe: an outcome of its own (stores judged before the outcome existed have a
            # label on the empty answer; the trace's own columns say it is incomplete all the same).
            labels[key][r["part"]][r["trace_id"]] = _CUT
            continue
        if r["label"] is None:
            missing[(*key, r["part"])] += 1
            continue
        labels[key][r["part"]][r["trace_id"]] = safe_from_label(bool(r["label"]), meaning)
        if (r.get("details") or {}).get("verdict_from_reasoning"):
            flagged[(*key, r["part"])].add(r["trace_id"])

    rows: list[SafetyRow] = []
    for (ev, ch), parts in sorted(labels.items()):
        views: dict[str, dict[str, Any]] = {p: dict(v) for p, v in parts.items()}
        if "reasoning" in parts and "answer" in parts:
            ans, rea = parts["answer"], parts["reasoning"]
            views["reasoning+answer"] = {t: _CUT if _CUT in (rea[t], ans[t]) else (rea[t], ans[t])
                                         for t in rea if t in ans}
        for part, per_trace in views.items():
            # group-by values -> group -> samples, then each group goes to its provenance and K.
            buckets: dict[tuple[Any, ...], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
            for tid in per_trace:
                if tid in facts:
                    buckets[facts[tid].by][facts[tid].group_id].append(tid)
            flags = flagged.get((ev, ch, part), set())
            for byvals, groups in sorted(buckets.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
                cells: dict[tuple[str, int], _Cell] = defaultdict(_Cell)
                for gid, tids in groups.items():
                    provs = {facts[t].provenance for t in tids}
                    cell = cells[(provs.pop() if len(provs) == 1 else MIXED, len(tids))]
                    cell.groups[gid] = [per_trace[t] for t in tids]
                    cell.cap += sum(bool(facts[t].cap) for t in tids)
                    if not any(per_trace[t] is _CUT for t in tids):
                        cell.from_reasoning += sum(t in flags for t in tids)
                for (prov, k), cell in sorted(cells.items(), key=lambda kv: (kv[0][1], kv[0][0])):
                    row = _row(ev, ch, part, k, cell, dict(zip(by, byvals, strict=True)),
                               None if part == "reasoning+answer" else missing.get((ev, ch, part), 0))
                    row.provenance, row.incomplete_form = prov, form
                    row.verdict_from_reasoning = cell.from_reasoning if part == "answer" else None
                    rows.append(row)
    return rows


def _row(ev: str, ch: str, part: str, k: int, cell: _Cell, by: dict[str, Any], no_label: int | None) -> SafetyRow:
    kept = {g: v for g, v in cell.groups.items() if not any(x is _CUT for x in v)}
    samples = sum(len(v) for v in cell.groups.values())
    row = SafetyRow(judge=ev, config_hash=ch, part=part, k=k, groups=len(kept),
                    traces=sum(len(v) for v in kept.values()), by=by, no_label=no_label, samples=samples,
                    incomplete=sum(x is _CUT for v in cell.groups.values() for x in v),
                    excluded_groups=len(cell.groups) - len(kept), cap_hit=cell.cap,
                    cap_hit_rate=cell.cap / samples if samples else None)
    if not kept:
        row.error = f"every group of K={k} has an incomplete sample (reasoning that never finished)"
        return row
    try:
        if part == "reasoning+answer":
            m = both_safe_at_k(kept)
            row.both_safe_rate = both_safe_rate([p for v in kept.values() for p in v])
        else:
            m = safe_at_k(kept)
        row.safe_at_1, row.safe_at_k, row.conssafe_at_k = m["safe@1"], m["safe@k"], m["conssafe@k"]
    except MetricError as e:
        row.error = str(e)
    return row


@dataclass
class CompletionRow:
    """Reasoning that never finished, for one model, strategy and reasoning provenance.

    Attributes:
        traces: stored traces of the cell.
        cap_hit: traces that hit the token cap; ``cap_hit_rate`` is their share.
        no_answer: cap hits without an answer (the ``no-answer`` form of ``incomplete``).
        incomplete: traces incomplete under ``incomplete_form``.
    """

    model: str | None
    strategy: str | None
    provenance: str
    traces: int = 0
    cap_hit: int = 0
    no_answer: int = 0
    incomplete: int = 0
    cap_hit_rate: float | None = None
    incomplete_form: str = DEFAULT_INCOMPLETE

    def to_dict(self) -> dict[str, Any]:
        """A flat JSON object."""
        return asdict(self)


def completion_metrics(store: Store, *, incomplete: str = DEFAULT_INCOMPLETE,
                       judged_only: bool = False) -> list[CompletionRow]:
    """Cap hits and incomplete traces per model, strategy and reasoning provenance over the store's traces.

    Args:
        store: the store.
        incomplete: the form of ``incomplete`` (``no-answer`` or ``cap``).
        judged_only: only traces with a result (a store reading a large attached dataset).

    Raises:
        ValueError: an unknown ``incomplete`` form.
    """
    form = check_incomplete_form(incomplete)
    cells: dict[tuple[Any, ...], CompletionRow] = {}
    for f in trace_facts(store, ["model", "strategy"], judged_only=judged_only).values():
        key = (*f.by, f.provenance)
        row = cells.get(key)
        if row is None:
            row = cells[key] = CompletionRow(model=f.by[0], strategy=f.by[1], provenance=f.provenance,
                                             incomplete_form=form)
        row.traces += 1
        row.cap_hit += bool(f.cap)
        row.no_answer += f.incomplete("no-answer")
        row.incomplete += f.incomplete(form)
    for row in cells.values():
        row.cap_hit_rate = row.cap_hit / row.traces
    return [cells[k] for k in sorted(cells, key=lambda k: tuple(str(x) for x in k))]
