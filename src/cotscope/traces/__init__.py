"""The trace model, reasoning/answer splitting, step segmentation and format readers."""

from cotscope.traces._errors import RecordError, TraceFileError
from cotscope.traces._read import FORMATS, ReadStats, detect_file_format, iter_row_batches, read_traces
from cotscope.traces._split import ANSWER_TAGS, DEFAULT_TAGS, SplitResult, split_reasoning
from cotscope.traces._steps import REFLECTION_MARKERS, segment_spans, segment_steps
from cotscope.traces._trace import Action, Message, Source, Step, Trace

__all__ = [
    "ANSWER_TAGS",
    "DEFAULT_TAGS",
    "FORMATS",
    "REFLECTION_MARKERS",
    "Action",
    "Message",
    "ReadStats",
    "RecordError",
    "Source",
    "SplitResult",
    "Step",
    "Trace",
    "TraceFileError",
    "detect_file_format",
    "iter_row_batches",
    "read_traces",
    "segment_spans",
    "segment_steps",
    "split_reasoning",
]
