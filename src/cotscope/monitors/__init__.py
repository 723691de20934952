"""Monitors: suspicion in [0, 1], a flag, a reason and verified evidence spans; streaming intervention.

Every judge is also usable as a monitor (:func:`get_monitor` wraps it); ``tc-cot-monitor`` is Thought
Crime's CoT monitor and ``local-*`` are the embedded classifiers scored over chunks of long reasoning.
"""

from cotscope.monitors._adapt import JudgeMonitor
from cotscope.monitors._stream import StreamVerdict, watch_stream
from cotscope.monitors._types import Monitor, MonitorResult, get_monitor, monitor, monitor_names

__all__ = [
    "JudgeMonitor",
    "Monitor",
    "MonitorResult",
    "StreamVerdict",
    "get_monitor",
    "monitor",
    "monitor_names",
    "watch_stream",
]
