"""``cotscope guard``: a streaming CoT monitor in front of a served reasoning model.

An OpenAI-compatible server (``/v1/chat/completions`` streaming and not, ``/v1/models``) that forwards each
request to an upstream server, watches the reasoning (``reasoning_content`` deltas or ``<think>`` text) and
the answer as they arrive with any registered monitor, releases text only once a check covering it passed
(or at once), cuts a flagged generation (``finish_reason: "content_filter"``, the upstream connection
closed) and records every request in the store. See ``docs/guard.md``.
"""

from cotscope.guard._app import Guard, GuardStats, GuardThread, create_app, serve
from cotscope.guard._checks import BatchStats, CheckBatcher, MonitorError, MonitorThread
from cotscope.guard._config import DEFAULT_REFUSAL, FailMode, GuardConfig, OpaquePolicy, Policy, Release
from cotscope.guard._parse import MalformedEvent, ThinkSplitter, count_opaque, parse_chunk
from cotscope.guard._record import GuardRecord, RecordWriter
from cotscope.guard._session import GuardSession

__all__ = [
    "DEFAULT_REFUSAL",
    "BatchStats",
    "CheckBatcher",
    "FailMode",
    "Guard",
    "GuardConfig",
    "GuardRecord",
    "GuardSession",
    "GuardStats",
    "GuardThread",
    "MalformedEvent",
    "MonitorError",
    "MonitorThread",
    "OpaquePolicy",
    "Policy",
    "RecordWriter",
    "Release",
    "ThinkSplitter",
    "count_opaque",
    "create_app",
    "parse_chunk",
    "serve",
]
