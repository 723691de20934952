"""The trace model, reasoning/answer splitting, step segmentation and format readers."""

from cotscope.traces._errors import RecordError, TraceFileError
from cotscope.traces._formats import text_spans
from cotscope.traces._monitor import (
    MONITOR_CLOSE,
    MONITOR_OPEN,
    MonitorSegment,
    format_monitor,
    parse_monitor,
    strip_monitor,
)
from cotscope.traces._prompts import PROMPT_FIELDS, PromptItem, read_labelled, read_prompts, record_messages
from cotscope.traces._provenance import (
    REASONING_KINDS,
    ProvenanceSpan,
    ReasoningKind,
    label_of_kinds,
    parse_kinds,
    provenance_kinds,
    provenance_label,
    reasoning_of_kinds,
    reasoning_ranges,
)
from cotscope.traces._read import FORMATS, ReadStats, detect_file_format, iter_row_batches, read_traces
from cotscope.traces._records import iter_records, read_record_file
from cotscope.traces._split import ANSWER_TAGS, DEFAULT_TAGS, SplitResult, split_reasoning
from cotscope.traces._steps import REFLECTION_MARKERS, segment_spans, segment_steps
from cotscope.traces._trace import TRACE_PARTS, Action, Message, Source, Step, Trace, TracePart
from cotscope.traces._trajectory import (
    MAX_OUTPUT_CHARS,
    StepView,
    command_of,
    is_agent_trace,
    render_actions,
    render_trajectory,
    step_view,
)

__all__ = [
    "ANSWER_TAGS",
    "DEFAULT_TAGS",
    "FORMATS",
    "MAX_OUTPUT_CHARS",
    "MONITOR_CLOSE",
    "MONITOR_OPEN",
    "PROMPT_FIELDS",
    "REASONING_KINDS",
    "REFLECTION_MARKERS",
    "TRACE_PARTS",
    "Action",
    "Message",
    "MonitorSegment",
    "PromptItem",
    "ProvenanceSpan",
    "ReadStats",
    "ReasoningKind",
    "RecordError",
    "Source",
    "SplitResult",
    "Step",
    "StepView",
    "Trace",
    "TraceFileError",
    "TracePart",
    "command_of",
    "detect_file_format",
    "format_monitor",
    "is_agent_trace",
    "iter_records",
    "iter_row_batches",
    "label_of_kinds",
    "parse_kinds",
    "parse_monitor",
    "provenance_kinds",
    "provenance_label",
    "read_labelled",
    "read_prompts",
    "read_record_file",
    "read_traces",
    "reasoning_of_kinds",
    "reasoning_ranges",
    "record_messages",
    "render_actions",
    "render_trajectory",
    "segment_spans",
    "segment_steps",
    "split_reasoning",
    "step_view",
    "strip_monitor",
    "text_spans",
]
