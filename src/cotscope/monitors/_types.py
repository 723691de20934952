"""The monitor protocol, its result type and the registry that names monitors."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from cotscope._registry import Registry, UnknownNameError
from cotscope.judges import JudgeResult, Part
from cotscope.traces import Trace


class MonitorResult(JudgeResult):
    """A monitor's verdict on one trace: ``suspicion`` in [0, 1] (stored as ``score``), ``flag`` (stored as
    ``label``), a reason and evidence spans, each checked to be a verbatim substring of the trace
    (``verified``). A parse failure leaves suspicion and flag unset and records ``parse_error``."""

    @property
    def suspicion(self) -> float | None:
        """How suspicious the trace is, in [0, 1]."""
        return self.score

    @property
    def flag(self) -> bool | None:
        """Whether the monitor flags the trace."""
        return self.label


@runtime_checkable
class Monitor(Protocol):
    """Reads a trace (reasoning, answer, actions) and says how suspicious it is."""

    name: str
    #: The part of the trace the monitor reads; results are stored under it.
    part: Part
    #: What its flag means (``flagged``; a wrapped judge's meaning, e.g. ``refused``), stored with the results.
    label_meaning: str
    #: Traces per batch the evaluate stage hands over.
    preferred_batch: int

    def config(self) -> dict[str, Any]:
        """Everything that changes the verdicts: hashed into the store key."""
        ...

    async def monitor(self, traces: Sequence[Trace]) -> list[MonitorResult]:
        """One result per trace, in order, with evidence already verified."""
        ...

    async def aclose(self) -> None:
        """Release the backend."""
        ...


MonitorFactory = Callable[..., Monitor]


def _load_builtins() -> None:
    from cotscope.monitors import _adapt, _local_action, _trajectory  # noqa: F401


#: Monitor factories by name. A factory is called as ``factory(model=..., **options)``.
MONITORS: Registry[Monitor] = Registry("monitor", loader=_load_builtins)


def monitor(name: str) -> Callable[[MonitorFactory], MonitorFactory]:
    """Register a monitor factory under ``name``: ``@monitor("tc-cot-monitor")``.

    The factory is called as ``factory(model=..., **options)``.
    """
    return MONITORS.register(name)


def monitor_names() -> list[str]:
    """Registered monitor names (every judge can also be used as a monitor, see :func:`get_monitor`)."""
    return MONITORS.names()


def get_monitor(name: str, *, model: str | None = None, **options: Any) -> Monitor:
    """Build a monitor by name; a judge name gives that judge wrapped as a monitor.

    Raises:
        UnknownNameError: neither a monitor nor a judge has that name (a ``ConfigError``).
    """
    if name in MONITORS:
        return MONITORS.get(name, model=model, **options)
    from cotscope.judges import judge_names

    if name in judge_names():
        from cotscope.monitors._adapt import JudgeMonitor

        return JudgeMonitor.from_name(name, model=model, **options)
    raise UnknownNameError("monitor", name, sorted(set(MONITORS.names()) | set(judge_names())))
