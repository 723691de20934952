"""Monitors: suspicion in [0, 1], a flag, a reason and verified evidence spans; streaming intervention.

Every judge is also usable as a monitor (:func:`get_monitor` wraps it); ``tc-cot-monitor`` is Thought
Crime's CoT monitor and ``local-*`` are the embedded classifiers scored over chunks of long reasoning.
On agent trajectories (CUAHarm): ``action-monitor``, ``cot-monitor``, ``cot-action-monitor`` and
``hier-monitor`` (LLM) and ``local-action`` (embedded); see ``docs/agent_monitors.md``.
"""

from cotscope.monitors._adapt import JudgeMonitor
from cotscope.monitors._local_action import LocalActionMonitor
from cotscope.monitors._stream import CheckRequest, StreamChecker, StreamField, StreamVerdict, watch_stream
from cotscope.monitors._trajectory import (
    HierMonitorJudge,
    MonitorVerdict,
    TrajectoryMonitorJudge,
    parse_monitor_output,
    trajectory_text,
)
from cotscope.monitors._types import Monitor, MonitorResult, get_monitor, monitor, monitor_names

__all__ = [
    "CheckRequest",
    "HierMonitorJudge",
    "JudgeMonitor",
    "LocalActionMonitor",
    "Monitor",
    "MonitorResult",
    "MonitorVerdict",
    "StreamChecker",
    "StreamField",
    "StreamVerdict",
    "TrajectoryMonitorJudge",
    "get_monitor",
    "monitor",
    "monitor_names",
    "parse_monitor_output",
    "trajectory_text",
    "watch_stream",
]
