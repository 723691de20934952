"""What the guard did with the traffic it served: requests, decisions, monitor failures, stop points, latency.

``cotscope guard serve --store S`` records each request as a trace and its streaming verdict as a monitor result
keyed ``guard:<monitor>`` whose ``details`` hold the guard's decision (``action``, ``stop_offset``,
``latency_s``, ...). These results carry no safety judge's label, so :func:`safety_metrics` has nothing to say
about them; :func:`guard_metrics` summarises them instead, aggregated in DuckDB (guard traffic can be large).
This module reads the store only: it does not import the guard.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from cotscope.pipeline._metrics import group_columns
from cotscope.store import Store

#: The prefix of the guard's evaluator names (``guard:<monitor>``).
GUARD_PREFIX = "guard:"
#: The guard's decisions, as stored in a result's ``details.action``.
GUARD_ACTIONS = ("passed", "blocked", "flagged", "logged", "error")


@dataclass
class GuardRow:
    """The guard's traffic for one evaluator key (and one value of each ``by`` column).

    Attributes:
        evaluator, config_hash: the guard's result key (``guard:<monitor>`` and its settings' hash).
        by: the group-by values.
        requests: requests recorded; ``passed + blocked + flagged + logged + error == requests``.
        passed, blocked, flagged, logged, error: requests by the guard's decision (``flagged`` and ``logged``:
            the monitor flagged and the policy let the text through; ``error``: the upstream failed).
        monitor_flagged: requests whose verdict was a flag, whatever the policy did with it.
        no_verdict: requests with no scored check (the monitor failed on every check, or none ran); they count
            in neither rate.
        flag_rate: ``monitor_flagged`` over the requests with a verdict; ``block_rate``: ``blocked`` over all
            requests.
        monitor_errors: failed checks over all requests; ``fail_applied``: requests that a failed check decided
            (by ``--on-monitor-error``).
        client_disconnected: requests whose client went away before the end.
        opaque_blocks: reasoning blocks the monitor could not read.
        median_stop_offset: median characters of the stopped field received when a flag stopped it.
        latency_p50_s, latency_p95_s, ttft_p50_s, ttft_p95_s: request to last byte, and to the first text
            released (over the requests that recorded them).
    """

    evaluator: str
    config_hash: str
    by: dict[str, Any] = field(default_factory=dict)
    requests: int = 0
    passed: int = 0
    blocked: int = 0
    flagged: int = 0
    logged: int = 0
    error: int = 0
    monitor_flagged: int = 0
    no_verdict: int = 0
    flag_rate: float | None = None
    block_rate: float | None = None
    monitor_errors: int = 0
    fail_applied: int = 0
    client_disconnected: int = 0
    opaque_blocks: int = 0
    median_stop_offset: float | None = None
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None
    ttft_p50_s: float | None = None
    ttft_p95_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A flat JSON object."""
        return asdict(self)


def _num(key: str) -> str:
    return f"TRY_CAST(json_extract_string(r.details, '$.{key}') AS DOUBLE)"


def guard_metrics(store: Store, by: list[str] | None = None, evaluator: str | None = None) -> list[GuardRow]:
    """One :class:`GuardRow` per guard evaluator key (and ``by`` values) of the store, in key order.

    Args:
        store: the store the guard recorded into (or any store holding guard results).
        by: trace columns to break the rows down by (:data:`cotscope.pipeline.GROUP_BY`).
        evaluator: only this guard evaluator (``guard:<monitor>``); another name gives no rows.

    Raises:
        ValueError: an unknown ``by`` column.
    """
    by = group_columns(by)
    action = "json_extract_string(r.details, '$.action')"
    by_sel = "".join(f", t.{b}" for b in by)
    sql = (
        f"SELECT r.evaluator, r.config_hash{by_sel}, count(*),"
        + "".join(f" count(*) FILTER ({action} = '{a}')," for a in GUARD_ACTIONS)
        + " count(*) FILTER (r.label), count(*) FILTER (r.label IS NULL),"
        f" coalesce(sum({_num('monitor_errors')}), 0),"
        " count(*) FILTER (json_extract_string(r.details, '$.fail_applied') = 'true'),"
        " count(*) FILTER (json_extract_string(r.details, '$.client_disconnected') = 'true'),"
        f" coalesce(sum({_num('opaque_blocks')}), 0),"
        f" median({_num('stop_offset')}),"
        f" quantile_cont({_num('latency_s')}, 0.5), quantile_cont({_num('latency_s')}, 0.95),"
        f" quantile_cont({_num('ttft_s')}, 0.5), quantile_cont({_num('ttft_s')}, 0.95)"
        f" FROM results r JOIN {store.trace_relation} t ON t.id = r.trace_id"
        f" WHERE r.kind = 'monitor' AND starts_with(r.evaluator, '{GUARD_PREFIX}') AND {action} IS NOT NULL"
        + (" AND r.evaluator = ?" if evaluator else "")
        + " GROUP BY ALL ORDER BY ALL"
    )
    rows: list[GuardRow] = []
    for rec in store.con.execute(sql, [evaluator] if evaluator else []).fetchall():
        ev, ch, *rest = rec
        byvals, vals = rest[:len(by)], rest[len(by):]
        (n, passed, blocked, flagged, logged, error, mflag, nover, merr, fail, disc, opaque, stop,
         l50, l95, t50, t95) = vals
        judged = n - nover
        rows.append(GuardRow(
            evaluator=ev, config_hash=ch, by=dict(zip(by, byvals, strict=True)), requests=n, passed=passed,
            blocked=blocked, flagged=flagged, logged=logged, error=error, monitor_flagged=mflag, no_verdict=nover,
            flag_rate=mflag / judged if judged else None, block_rate=blocked / n if n else None,
            monitor_errors=int(merr), fail_applied=fail, client_disconnected=disc, opaque_blocks=int(opaque),
            median_stop_offset=stop, latency_p50_s=l50, latency_p95_s=l95, ttft_p50_s=t50, ttft_p95_s=t95))
    return rows
