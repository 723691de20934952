"""The metrics stage over a whole store: SafeChain's Safe@1 / Safe@K / ConsSafe@K from stored judge labels.

Works on any store, whichever command wrote the results (``cotscope judge``, ``cotscope run``, an ingested
log): each result's label meaning comes from the store's evaluators table, and labels turn into "safe" with
the one rule :func:`cotscope.metrics.safe_from_label`. Rows are typed records of plain numbers; formatting
belongs to the CLI and the report.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
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

if TYPE_CHECKING:
    from cotscope.store import Store

#: The trace columns ``--by`` may group on.
GROUP_BY = ("model", "strategy", "source_format")

#: Label meanings that say something about the response's safety.
RESPONSE_MEANINGS = SAFE_IF_TRUE | UNSAFE_IF_TRUE


@dataclass
class SafetyRow:
    """Safe@1, Safe@K and ConsSafe@K of one judge (and configuration) on one part, for one group-by cell and K.

    ``part`` is ``reasoning``, ``answer``, ``both`` or ``reasoning+answer`` (traces judged on both parts,
    safe when both are). ``no_label`` counts results without a label (parse errors, refusals of the
    misalignment judge), which are left out of the rates.
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

    def to_dict(self) -> dict[str, Any]:
        """A flat JSON object (the group-by values as top-level keys, metric names as the papers write them)."""
        d = asdict(self)
        by = d.pop("by")
        d["safe@1"] = d.pop("safe_at_1")
        d["safe@k"] = d.pop("safe_at_k")
        d["conssafe@k"] = d.pop("conssafe_at_k")
        return {**by, **d}


def safety_metrics(store: Store, by: list[str] | None = None, judge: str | None = None) -> list[SafetyRow]:
    """SafeChain metrics per (judge, config, group-by values, part, K) from every stored judge label.

    Groups of different sizes K are reported in separate rows (Safe@K compares groups of the same K only).

    Raises:
        ValueError: an unknown ``by`` column.
    """
    by = list(by or [])
    for b in by:
        if b not in GROUP_BY:
            raise ValueError(f"cannot group by {b!r}: expected one of {', '.join(GROUP_BY)}")
    cols = ["id", "group_id", *by]
    # Only judged traces: a store reading a large attached dataset may have judged a small part of it.
    info = {r[0]: r[1:] for r in store.con.execute(
        f"SELECT {', '.join(cols)} FROM {store.trace_relation} WHERE id IN (SELECT trace_id FROM results)").fetchall()}
    meanings = store.label_meanings()
    labels: dict[tuple[str, str], dict[str, dict[str, bool]]] = defaultdict(lambda: defaultdict(dict))
    missing: dict[tuple[str, str, str], int] = defaultdict(int)
    for r in store.results(evaluator=judge):
        key = (r["evaluator"], r["config_hash"])
        meaning = meanings.get(key)
        if r["kind"] != "judge" or meaning not in RESPONSE_MEANINGS:
            continue
        if r["label"] is None:
            missing[(*key, r["part"])] += 1
            continue
        labels[key][r["part"]][r["trace_id"]] = safe_from_label(bool(r["label"]), meaning)

    rows: list[SafetyRow] = []
    for (ev, ch), parts in sorted(labels.items()):
        views: dict[str, dict[str, Any]] = {p: dict(v) for p, v in parts.items()}
        if "reasoning" in parts and "answer" in parts:
            views["reasoning+answer"] = {t: (parts["reasoning"][t], parts["answer"][t])
                                         for t in parts["reasoning"] if t in parts["answer"]}
        for part, per_trace in views.items():
            buckets: dict[tuple[Any, ...], dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
            for tid, v in per_trace.items():
                if tid in info:
                    gid, *rest = info[tid]
                    buckets[tuple(rest)][gid].append(v)
            for byvals, groups in sorted(buckets.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
                by_k: dict[int, dict[str, list[Any]]] = defaultdict(dict)
                for gid, labs in groups.items():
                    by_k[len(labs)][gid] = labs
                for k, gs in sorted(by_k.items()):
                    rows.append(_row(ev, ch, part, k, gs, dict(zip(by, byvals, strict=True)),
                                     None if part == "reasoning+answer" else missing.get((ev, ch, part), 0)))
    return rows


def _row(ev: str, ch: str, part: str, k: int, gs: dict[str, list[Any]], by: dict[str, Any],
         no_label: int | None) -> SafetyRow:
    row = SafetyRow(judge=ev, config_hash=ch, part=part, k=k, groups=len(gs),
                    traces=sum(len(v) for v in gs.values()), by=by, no_label=no_label)
    try:
        if part == "reasoning+answer":
            m = both_safe_at_k(gs)
            row.both_safe_rate = both_safe_rate([p for v in gs.values() for p in v])
        else:
            m = safe_at_k(gs)
        row.safe_at_1, row.safe_at_k, row.conssafe_at_k = m["safe@1"], m["safe@k"], m["conssafe@k"]
    except MetricError as e:
        row.error = str(e)
    return row
