"""Reading what an OpenAI-compatible upstream streams: server-sent events, deltas, ``<think>`` text.

Everything here treats upstream bytes as untrusted: an event that is not JSON, or JSON of the wrong shape,
is reported as malformed (the caller drops and counts it), never guessed at.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"

#: Delta keys that carry readable reasoning text (vLLM, SGLang and DeepSeek use ``reasoning_content``;
#: newer vLLM and OpenRouter ``reasoning``).
REASONING_KEYS = ("reasoning_content", "reasoning")
#: Delta keys that may carry reasoning blocks a monitor cannot read (encrypted, redacted or signed-only).
OPAQUE_KEYS = ("reasoning_details", "thinking_blocks", "redacted_thinking", "encrypted_content",
               "reasoning_encrypted_content")

Field = Literal["reasoning", "answer"]


class MalformedEvent(ValueError):
    """An upstream event the guard cannot read."""


@dataclass
class Delta:
    """What one upstream chunk contributes: readable text by field, opaque blocks, and the finish reason."""

    reasoning: str = ""
    content: str = ""
    opaque: int = 0
    finish_reason: str | None = None
    has_choice: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    #: Tool-call pieces in order: ``(index, name or None, arguments fragment)``.
    tool_calls: list[tuple[int, str | None, str]] = field(default_factory=list)


def parse_chunk(data: str) -> tuple[dict[str, Any], Delta]:
    """Decode one ``data:`` payload of a chat-completion stream (not ``[DONE]``).

    Raises:
        MalformedEvent: not JSON, not an object, ``choices`` not a list of objects, a text field not a string,
            or a choice other than index 0 (the guard watches one choice).
    """
    try:
        obj = json.loads(data)
    except json.JSONDecodeError as e:
        raise MalformedEvent(f"not JSON ({e.msg} at column {e.colno})") from None
    except ValueError as e:  # e.g. a lone surrogate
        raise MalformedEvent(f"not JSON ({e})") from None
    if not isinstance(obj, dict):
        raise MalformedEvent(f"a JSON {type(obj).__name__}, not an object")
    choices = obj.get("choices", [])
    if not isinstance(choices, list):
        raise MalformedEvent("'choices' is not a list")
    d = Delta()
    for ch in choices:
        if not isinstance(ch, dict):
            raise MalformedEvent("a choice is not an object")
        if ch.get("index", 0) != 0:
            raise MalformedEvent(f"choice index {ch.get('index')!r}: the guard watches one choice (n=1)")
        d.has_choice = True
        delta = ch.get("delta") or {}
        if not isinstance(delta, dict):
            raise MalformedEvent("'delta' is not an object")
        for key in REASONING_KEYS:
            v = delta.get(key)
            if v is None:
                continue
            if not isinstance(v, str):
                raise MalformedEvent(f"'delta.{key}' is not a string")
            d.reasoning += v
        v = delta.get("content")
        if v is not None and not isinstance(v, str):
            raise MalformedEvent("'delta.content' is not a string")
        d.content += v or ""
        d.opaque += sum(count_opaque(delta.get(k)) for k in OPAQUE_KEYS)
        d.tool_calls += tool_call_pieces(delta.get("tool_calls"))
        fr = ch.get("finish_reason")
        if fr is not None:
            d.finish_reason = str(fr)
    return obj, d


def tool_call_pieces(calls: Any) -> list[tuple[int, str | None, str]]:
    """The ``(index, name, arguments)`` pieces of a delta's ``tool_calls``; a shape the guard cannot read (so
    could not monitor) makes the whole event malformed rather than forwarded unread."""
    if calls is None:
        return []
    if not isinstance(calls, list):
        raise MalformedEvent("'delta.tool_calls' is not a list")
    out: list[tuple[int, str | None, str]] = []
    for c in calls:
        if not isinstance(c, dict):
            raise MalformedEvent("a tool call is not an object")
        idx = c.get("index", 0)
        if isinstance(idx, bool) or not isinstance(idx, int):
            raise MalformedEvent("a tool call's 'index' is not an integer")
        fn = c.get("function")
        if fn is None:
            out.append((idx, None, ""))
            continue
        if not isinstance(fn, dict):
            raise MalformedEvent("a tool call's 'function' is not an object")
        name, args = fn.get("name"), fn.get("arguments")
        if (name is not None and not isinstance(name, str)) or (args is not None and not isinstance(args, str)):
            raise MalformedEvent("a tool call's 'function.name' or 'function.arguments' is not a string")
        out.append((idx, name or None, args or ""))
    return out


def count_opaque(value: Any) -> int:
    """How many reasoning blocks in ``value`` a monitor cannot read.

    A block is opaque when it carries no readable text (``text``, ``thinking``, ``summary``) but encrypted
    data, a signature, or a redacted/encrypted type; a block with readable text is read through the
    reasoning fields, so it is not counted.
    """
    if value is None:
        return 0
    items = value if isinstance(value, list) else [value]
    n = 0
    for it in items:
        if isinstance(it, str):
            n += 1 if it else 0  # a bare string in an opaque key is an encrypted payload
            continue
        if not isinstance(it, dict):
            continue
        readable = any(isinstance(it.get(k), str) and it.get(k) for k in ("text", "thinking", "summary"))
        kind = str(it.get("type") or "")
        sealed = any(it.get(k) for k in ("data", "encrypted_content", "signature")) or any(
            w in kind for w in ("encrypted", "redacted"))
        n += 1 if sealed and not readable else 0
    return n


class ThinkSplitter:
    """Splits streamed ``content`` into reasoning and answer by ``<think>``...``</think>`` tags.

    Reasoning is recognised only when the content opens (after whitespace) with ``<think>``; then
    everything up to ``</think>`` is reasoning and the rest (after the blank lines that follow the tag)
    answer. A tag split across chunks is held back (``pending``) until it is complete, so no text is
    attributed before its field is known.
    """

    def __init__(self) -> None:
        self.state: Literal["start", "think", "gap", "answer"] = "start"
        self.pending = ""

    def feed(self, text: str) -> list[tuple[Field, str]]:
        """The ``(field, text)`` pieces that ``text`` completes."""
        buf = self.pending + text
        self.pending = ""
        out: list[tuple[Field, str]] = []
        while buf:
            if self.state == "start":
                stripped = buf.lstrip()
                if not stripped:
                    self.pending = buf
                    break
                if stripped.startswith(OPEN_TAG):
                    self.state = "think"
                    buf = stripped[len(OPEN_TAG):]
                elif OPEN_TAG.startswith(stripped):
                    self.pending = buf
                    break
                else:
                    self.state = "answer"
            elif self.state == "think":
                i = buf.find(CLOSE_TAG)
                if i >= 0:
                    if i:
                        out.append(("reasoning", buf[:i]))
                    buf = buf[i + len(CLOSE_TAG):]
                    self.state = "gap"
                    continue
                keep = _partial_suffix(buf, CLOSE_TAG)
                if len(buf) > keep:
                    out.append(("reasoning", buf[:len(buf) - keep]))
                self.pending = buf[len(buf) - keep:]
                break
            elif self.state == "gap":
                # The blank lines between ``</think>`` and the answer belong to neither.
                buf = buf.lstrip()
                if buf:
                    self.state = "answer"
            else:
                out.append(("answer", buf))
                break
        return out

    def flush(self) -> list[tuple[Field, str]]:
        """Whatever is pending at the end of the stream, in the field it would have belonged to."""
        rest, self.pending = self.pending, ""
        if not rest:
            return []
        return [("reasoning" if self.state == "think" else "answer", rest)]

    @property
    def in_reasoning(self) -> bool:
        """Whether the content is inside an open ``<think>`` block."""
        return self.state == "think"


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag``."""
    for k in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:k]):
            return k
    return 0


def sse_event(obj: dict[str, Any]) -> bytes:
    """One server-sent event carrying ``obj`` as JSON."""
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


class LineSplitter:
    """Bytes as they arrive -> the lines of a server-sent event stream, each line bounded in size.

    Lines end with LF or CRLF (the CR is dropped); a lone CR is not a line end here (no OpenAI-compatible
    server sends one). A line longer than ``max_bytes`` is never held whole: its bytes are dropped as they
    come, and its length is reported in :attr:`dropped` (so a hostile upstream cannot make the guard buffer
    without bound). Text is decoded as UTF-8, invalid bytes as U+FFFD (a line never ends inside a UTF-8
    character, so decoding line by line is exact).

    Args:
        max_bytes: the longest line kept.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.dropped: list[int] = []
        self._parts: list[bytes] = []
        self._size = 0
        self._skipping = False
        self._last = b""

    def feed(self, data: bytes) -> list[str]:
        """The lines that ``data`` completes, in order."""
        out: list[str] = []
        start = 0
        while True:
            nl = data.find(b"\n", start)
            piece = data[start:] if nl < 0 else data[start:nl]
            self._size += len(piece)
            if piece:
                self._last = piece[-1:]
            if not self._skipping:
                if self._size > self.max_bytes + 1:  # + 1: the CR of a CRLF line end may still come
                    self._skipping = True
                    self._parts.clear()
                else:
                    self._parts.append(piece)
            if nl < 0:
                return out
            self._end_line(out)
            start = nl + 1

    def close(self) -> list[str]:
        """The last line, when the stream ended without a line break after it."""
        out: list[str] = []
        if self._size or self._skipping:
            self._last = b""  # no line end: a final CR is text
            self._end_line(out)
        return out

    def _end_line(self, out: list[str]) -> None:
        size = self._size - (self._last == b"\r")
        if self._skipping or size > self.max_bytes:
            self.dropped.append(size)
        else:
            line = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
            out.append(line[:size].decode("utf-8", "replace"))
        self._parts.clear()
        self._size = 0
        self._skipping = False
        self._last = b""
