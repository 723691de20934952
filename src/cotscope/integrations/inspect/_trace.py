"""A running Inspect sample as a cotscope trace, read by the one Inspect reader ``cotscope ingest`` uses."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cotscope.traces import Trace
from cotscope.traces._read import inspect_sample_rows
from cotscope.traces._rows import row_to_trace

if TYPE_CHECKING:
    from inspect_ai.solver import TaskState


def state_sample(state: TaskState) -> dict[str, Any]:
    """The sample's state in the JSON form an Inspect log stores a sample in (what the reader reads)."""
    target = state.target.target
    inp = state.input
    return {
        "id": state.sample_id,
        "epoch": state.epoch,
        "input": inp if isinstance(inp, str) else [m.model_dump(mode="json", exclude_none=True) for m in inp],
        "messages": [m.model_dump(mode="json", exclude_none=True) for m in state.messages],
        "output": state.output.model_dump(mode="json", exclude_none=True) if state.output else {},
        "metadata": dict(state.metadata or {}),
        "store": dict(state.store.items()),
        "target": target[0] if len(target) == 1 else list(target),
    }


def state_trace(state: TaskState) -> Trace:
    """The trace of a running sample: reasoning from ``ContentReasoning`` blocks, ``reasoning`` fields and
    ``<think>`` text of the assistant turns, the answer from the last turn's text, tool calls as actions.

    It is read by :func:`cotscope.traces._read.inspect_sample_rows`, the reader ``cotscope ingest`` runs on the
    logged sample, so the scorer judges the reasoning and answer that the ingested trace will hold. Only the
    group id differs: the log's task id is written after the sample is scored, so the trace here groups by the
    task name (its scores are attached to the ingested trace by sample, not by id).

    Raises:
        RecordFormatError: the sample has no assistant output to judge (a ``ValueError``).
    """
    from inspect_ai.log._samples import sample_active

    active = sample_active()
    eval_info = {"task": active.task if active is not None else None, "model": str(state.model)}
    return row_to_trace(inspect_sample_rows(state_sample(state), eval_info)[0])
