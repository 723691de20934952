"""Record-level readers: turn one parsed record of a known format into trace rows.

Each reader raises :class:`RecordFormatError` with a message that says what is wrong; the file
readers in :mod:`cotscope.traces._read` add the file and line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from cotscope.traces._prompts import PROMPT_FIELDS
from cotscope.traces._provenance import check_spans
from cotscope.traces._rows import Row, make_row
from cotscope.traces._split import DEFAULT_TAGS, TagPair, split_reasoning


class RecordFormatError(ValueError):
    """A record that does not fit the format it was read as."""


#: Text prompt fields of a ``{prompt, response}`` record: the shared list less ``messages`` (a record with
#: chat messages is read by the chat reader). The first field present in the record is the prompt.
PROMPT_KEYS = tuple(f for f in PROMPT_FIELDS if f != "messages")
RESPONSE_KEYS = ("response", "completion", "output", "generation", "model_output", "responses", "outputs")
_KNOWN_PAIR_KEYS = frozenset(
    PROMPT_KEYS
    + RESPONSE_KEYS
    + ("id", "system", "reasoning", "answer", "reasoning_closed", "model", "strategy", "group_id",
       "sample_index", "metadata", "steps", "actions", "messages", "source", "reasoning_provenance")
)


class Ctx:
    """What a record reader needs besides the record: tags, defaults and provenance.

    ``lost`` collects, per record, the source fields a reader did not keep (:meth:`lose`); the file readers
    count them per format into :attr:`cotscope.traces.ReadStats.lost`.
    """

    __slots__ = ("file", "line", "lost", "model", "strategy", "tags")

    def __init__(
        self,
        file: str | None = None,
        line: int | None = None,
        tags: Sequence[TagPair] = DEFAULT_TAGS,
        model: str | None = None,
        strategy: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.tags = tags
        self.model = model
        self.strategy = strategy
        self.lost: dict[str, str] = {}

    def lose(self, field: str, reason: str) -> None:
        """Record that the current record's ``field`` was not kept, and why (once per record and field)."""
        self.lost.setdefault(field, reason)

    def lose_keys(self, rec: dict[str, Any], read: frozenset[str], what: str) -> None:
        """Record every key of ``rec`` outside ``read`` (the keys a reader reads) as not kept; a key whose value
        is null or empty held nothing to lose."""
        for k, v in rec.items():
            if k not in read and v not in (None, "", [], {}):
                self.lose(k, f"not read by the {what} reader")


def _type_name(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def content_text(content: Any, where: str = "content") -> str:
    """Flatten message content (a string or a list of content blocks) into text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict):
                btype = block.get("type")
                if btype in ("text", "input_text", "output_text") or (btype is None and "text" in block):
                    parts.append(str(block.get("text", "")))
                elif btype in ("thinking", "redacted_thinking", "reasoning"):
                    continue
                elif btype in ("image", "image_url", "input_image"):
                    parts.append("[image]")
                elif btype == "tool_result":
                    parts.append(content_text(block.get("content"), where))
            else:
                raise RecordFormatError(f"{where}: content block must be an object, got {_type_name(block)}")
        return "".join(parts)
    raise RecordFormatError(f"{where} must be a string or a list of blocks, got {_type_name(content)}")


def _message(m: Any, where: str) -> dict[str, Any]:
    if not isinstance(m, dict):
        raise RecordFormatError(f"{where} must be an object, got {_type_name(m)}")
    role = m.get("role")
    if not isinstance(role, str):
        raise RecordFormatError(f"{where}: 'role' must be a string, got {_type_name(role)}")
    return {"role": role, "content": content_text(m.get("content"), where)}


def _prompt(value: Any, system: Any = None, where: str = "prompt") -> list[dict[str, Any]]:
    msgs: list[dict[str, Any]] = []
    if system is not None:
        if not isinstance(system, str):
            raise RecordFormatError(f"'system' must be a string, got {_type_name(system)}")
        msgs.append({"role": "system", "content": system})
    if value is None:
        return msgs
    if isinstance(value, str):
        msgs.append({"role": "user", "content": value})
        return msgs
    if isinstance(value, list):
        msgs.extend(_message(m, f"{where}[{i}]") for i, m in enumerate(value))
        return msgs
    raise RecordFormatError(f"'{where}' must be a string or a list of messages, got {_type_name(value)}")


#: Keys of an assistant message the readers read (others are reported as not kept, see :meth:`Ctx.lose`).
ASSISTANT_KEYS = frozenset((
    "role", "content", "reasoning_content", "reasoning", "reasoning_details", "tool_calls", "finish_reason",
    "type",
))
#: Content block types the readers read; a block of another type is reported as not kept.
BLOCK_TYPES = frozenset((
    "text", "input_text", "output_text", "thinking", "redacted_thinking", "reasoning", "image", "image_url",
    "input_image", "tool_use", "tool_result",
))


class ReasoningBuilder:
    """Reasoning text assembled block by block, each block with its provenance span.

    Blocks are joined with ``"\n\n"`` (what the readers have always joined reasoning blocks with, so the text,
    and thus the trace id, is what it was before provenance existed); markers (redacted blocks, encrypted
    content) are zero-length spans at the current end.
    """

    __slots__ = ("_n", "_parts", "_size", "spans")

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._size = 0
        self._n = 0
        self.spans: list[dict[str, Any]] = []

    def add(self, text: str, kind: str, payload: str | None = None) -> None:
        """Append a block of text of ``kind`` (an empty block adds its separator but no span)."""
        if self._n:
            self._size += 2
        start = self._size
        self._parts.append(text)
        self._size += len(text)
        self._n += 1
        if text or payload is not None:
            self._span(kind, start, self._size, payload)

    def mark(self, kind: str, payload: str | None = None) -> None:
        """A zero-length span of ``kind`` at the current end (opaque content, a redacted block)."""
        self._span(kind, self._size, self._size, payload)

    def _span(self, kind: str, start: int, end: int, payload: str | None) -> None:
        d: dict[str, Any] = {"kind": kind, "start": start, "end": end}
        if payload is not None:
            d["payload"] = payload
        self.spans.append(d)

    @property
    def empty(self) -> bool:
        """Whether no block and no marker was added."""
        return not self._n and not self.spans

    def text(self) -> str:
        """The joined text."""
        return "\n\n".join(self._parts)


def strip_spans(text: str, spans: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """``text.strip()`` and the spans moved to match (clamped to the stripped text)."""
    stripped = text.strip()
    if stripped == text:
        return text, spans
    lead = len(text) - len(text.lstrip())
    n = len(stripped)
    out = []
    for d in spans:
        d = dict(d)
        d["start"] = min(max(d["start"] - lead, 0), n)
        d["end"] = min(max(d["end"] - lead, d["start"]), n)
        out.append(d)
    return stripped, out


def _signature(block: dict[str, Any]) -> str | None:
    sig = block.get("signature")
    return sig if isinstance(sig, str) and sig else None


def _details_reasoning(details: list[Any], field_reasoning: str | None, ctx: Ctx) -> ReasoningBuilder | None:
    """OpenRouter-style ``reasoning_details`` as reasoning with provenance.

    ``reasoning.text`` is raw (its ``signature`` the span's payload), ``reasoning.summary`` a summary,
    ``reasoning.encrypted`` opaque (``data`` kept as payload). When the message also has a ``reasoning`` string
    (OpenRouter sends both), that string stays the reasoning text and each detail's text is located in it.
    """
    b = ReasoningBuilder()
    items: list[tuple[str, str, str | None]] = []  # (kind, text, payload); text "" for markers
    for i, d in enumerate(details):
        if not isinstance(d, dict):
            raise RecordFormatError(f"reasoning_details[{i}] must be an object, got {_type_name(d)}")
        dtype = d.get("type")
        if dtype == "reasoning.text":
            items.append(("raw", str(d.get("text") or ""), _signature(d)))
        elif dtype == "reasoning.summary":
            items.append(("summary", str(d.get("summary") or d.get("text") or ""), None))
        elif dtype == "reasoning.encrypted":
            data = d.get("data")
            items.append(("encrypted", "", data if isinstance(data, str) else None))
        else:
            ctx.lose(f"reasoning_details[type={dtype}]", "reasoning detail type not read")
    if not items:
        return None
    if field_reasoning is None:
        for kind, text, payload in items:
            if text or kind in ("raw", "summary"):
                b.add(text, kind, payload)
            else:
                b.mark(kind, payload)
        return b
    # Keep the message's own reasoning text (the trace id derives from it) and place each detail in it.
    b.add(field_reasoning, "raw")
    b.spans.clear()
    pos = 0
    for kind, text, payload in items:
        j = field_reasoning.find(text, pos) if text else -1
        if j >= 0:
            b._span(kind, j, j + len(text), payload)
            pos = j + len(text)
        elif not text:
            b._span(kind, pos if pos else len(field_reasoning), pos if pos else len(field_reasoning), payload)
        else:
            ctx.lose("reasoning_details[].text", "detail text not found in the message's reasoning string")
    if not any(d["end"] > d["start"] for d in b.spans) and field_reasoning:
        kind = next((k for k, t, _ in items if t), "raw")
        b._span(kind, 0, len(field_reasoning), None)
        b.spans.sort(key=lambda d: (d["start"], d["end"]))
    return b


def assistant_parts(
    msg: dict[str, Any], ctx: Ctx, finish_reason: Any = None
) -> tuple[str, str, bool, dict[str, Any], list[dict[str, Any]]]:
    """Reasoning, answer, closed flag, extra metadata and reasoning provenance of one assistant message.

    Reads reasoning from ``reasoning_content`` / ``reasoning`` fields (DeepSeek, vLLM, OpenRouter; ``raw``),
    OpenRouter ``reasoning_details`` (raw, summary, encrypted), Anthropic ``thinking`` blocks (``raw``, the
    signature kept as the span's payload) and ``redacted_thinking`` blocks (a ``redacted`` marker, data kept as
    payload), Inspect ``reasoning`` blocks (``raw``; a redacted one: its readable ``summary`` as ``summary``
    and the redacted content as a ``redacted`` marker's payload), and ``<think>`` text in the content
    (``raw``). Reasoning that never closed ends with a ``truncated`` marker.
    """
    meta: dict[str, Any] = {}
    for k, v in msg.items():
        if k not in ASSISTANT_KEYS and v not in (None, "", [], {}):
            ctx.lose(f"message.{k}", "assistant message field not read")
    field_reasoning = None
    for key in ("reasoning_content", "reasoning"):
        v = msg.get(key)
        if v is not None:
            if not isinstance(v, str):
                raise RecordFormatError(f"assistant '{key}' must be a string, got {_type_name(v)}")
            field_reasoning = v
            break
    details = msg.get("reasoning_details")
    detail_b = None
    if details is not None:
        if not isinstance(details, list):
            raise RecordFormatError(f"assistant 'reasoning_details' must be a list, got {_type_name(details)}")
        detail_b = _details_reasoning(details, field_reasoning, ctx)
    content = msg.get("content")
    blocks = ReasoningBuilder()
    redacted = 0
    if isinstance(content, list):
        for block in content:
            if isinstance(block, dict):
                btype = block.get("type")
                if btype == "thinking":
                    blocks.add(str(block.get("thinking", "")), "raw", _signature(block))
                elif btype == "redacted_thinking":
                    redacted += 1
                    data = block.get("data")
                    blocks.mark("redacted", data if isinstance(data, str) else None)
                elif btype == "reasoning":  # Inspect AI ContentReasoning
                    if block.get("redacted"):
                        redacted += 1
                        summary = block.get("summary")
                        blob = block.get("reasoning")
                        if isinstance(summary, str) and summary:
                            blocks.add(summary, "summary")
                        blocks.mark("redacted", blob if isinstance(blob, str) and blob else None)
                    else:
                        blocks.add(str(block.get("reasoning", "")), "raw", _signature(block))
                        if block.get("summary"):
                            ctx.lose("content[type=reasoning].summary",
                                     "summary of a block whose raw reasoning is kept")
                elif btype not in BLOCK_TYPES:
                    ctx.lose(f"content[type={btype}]", "content block type not read")
    if redacted:
        meta["redacted_reasoning_blocks"] = redacted
    text = content_text(content, "assistant content")
    if field_reasoning is not None or not blocks.empty or detail_b is not None:
        if detail_b is not None:
            b = detail_b
            if not blocks.empty:
                ctx.lose("content[type=thinking]", "reasoning_details were read instead")
        elif field_reasoning is not None:
            b = ReasoningBuilder()
            b.add(field_reasoning, "raw")
            if not blocks.empty:
                ctx.lose("content[type=thinking]", "the message's reasoning field was read instead")
        else:
            b = blocks
        reasoning, spans = b.text(), b.spans
        split = split_reasoning(text, ctx.tags)
        if split.reasoning:
            # Some servers leave a think block in the content as well; keep both, in order.
            if reasoning:
                start = len(reasoning) + 2
                reasoning = f"{reasoning}\n\n{split.reasoning}"
            else:
                start, reasoning = 0, split.reasoning
            spans = [*spans, {"kind": "raw", "start": start, "end": len(reasoning)}]
        answer = split.answer
        closed = split.reasoning_closed
        if finish_reason == "length" and not answer:
            closed = False
        reasoning, spans = strip_spans(reasoning, spans)
        if not closed:
            spans = [*spans, {"kind": "truncated", "start": len(reasoning), "end": len(reasoning)}]
        return reasoning, answer, closed, meta, spans
    split = split_reasoning(text, ctx.tags)
    return split.reasoning, split.answer, split.reasoning_closed, meta, text_spans(
        split.reasoning, split.reasoning_closed)


def text_spans(reasoning: str, closed: bool = True, kind: str = "raw") -> list[dict[str, Any]]:
    """The provenance of reasoning that is one text of one kind: a span over all of it, and a ``truncated``
    marker at its end when it never closed. Empty closed reasoning has no span (nothing to describe)."""
    spans: list[dict[str, Any]] = [{"kind": kind, "start": 0, "end": len(reasoning)}] if reasoning else []
    if not closed:
        spans.append({"kind": "truncated", "start": len(reasoning), "end": len(reasoning)})
    return spans


def _record_spans(rec: dict[str, Any], reasoning: str, closed: bool) -> list[dict[str, Any]]:
    """A record's own ``reasoning_provenance`` (cotscope's export) checked, else its reasoning as raw text."""
    if "reasoning_provenance" in rec and rec["reasoning_provenance"] not in (None, ""):
        spans = rec["reasoning_provenance"]
        try:
            if isinstance(spans, str):  # a CSV cell (or a Parquet text column) holding the export's JSON
                import orjson

                try:
                    spans = orjson.loads(spans)
                except orjson.JSONDecodeError as e:
                    raise ValueError(f"'reasoning_provenance' is not valid JSON: {e}") from None
            return check_spans(spans, reasoning)
        except ValueError as e:
            raise RecordFormatError(str(e)) from None
    return text_spans(reasoning, closed)


def _int(v: Any, name: str, default: int = 0) -> int:
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        raise RecordFormatError(f"'{name}' must be an integer, got {_type_name(v)}")
    return v


def _opt_str(v: Any, name: str) -> str | None:
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, int | float) and name in ("group_id", "id"):
        return str(v)
    raise RecordFormatError(f"'{name}' must be a string, got {_type_name(v)}")


def _row(ctx: Ctx, fmt: str, prompt: list[dict[str, Any]], reasoning: str, answer: str, closed: bool,
         **kw: Any) -> Row:
    return make_row(
        prompt,
        reasoning,
        answer,
        closed,
        model=kw.pop("model", None) or ctx.model,
        strategy=kw.pop("strategy", None) or ctx.strategy,
        source_file=ctx.file,
        source_line=ctx.line,
        source_format=fmt,
        **kw,
    )


# --- prompt/response pairs (and cotscope's own export) ------------------------------------------------


def read_pair(rec: dict[str, Any], ctx: Ctx) -> list[Row]:
    """``{prompt, response}`` pairs (many key spellings), explicit ``{prompt, reasoning, answer}``
    records such as cotscope's own export, and ``response: [K strings]`` sample lists.

    Next to a response, ``answer`` is the reference answer (URSA's and most math sets' gold) and is kept as
    ``metadata["answer"]``; a ``metadata`` written as a string (records converted from CSV) is kept as
    ``metadata["metadata"]``."""
    pkey = next((k for k in PROMPT_KEYS if k in rec), None)
    prompt = _prompt(rec.get(pkey) if pkey else None, rec.get("system"), pkey or "prompt")
    model = _opt_str(rec.get("model"), "model")
    strategy = _opt_str(rec.get("strategy"), "strategy")
    group_id = _opt_str(rec.get("group_id"), "group_id")
    meta = rec.get("metadata") or {}
    if isinstance(meta, str):
        # Records converted from CSV carry metadata as a string (URSA's outputs: a Python dict's repr); kept as it is.
        meta = {"metadata": meta}
    if not isinstance(meta, dict):
        raise RecordFormatError(f"'metadata' must be an object, got {_type_name(meta)}")
    meta = dict(meta)
    for k, v in rec.items():
        if k not in _KNOWN_PAIR_KEYS:
            meta[k] = v
    actions = rec.get("actions") or []
    if not isinstance(actions, list):
        raise RecordFormatError(f"'actions' must be a list, got {_type_name(actions)}")
    common = {"model": model, "strategy": strategy, "metadata": meta, "actions": actions}

    if "answer" in rec and ("reasoning" in rec or not any(k in rec for k in RESPONSE_KEYS)):
        reasoning, answer = rec.get("reasoning") or "", rec.get("answer")
        if not isinstance(reasoning, str):
            raise RecordFormatError(f"'reasoning' must be a string, got {_type_name(reasoning)}")
        if not isinstance(answer, str):
            raise RecordFormatError(f"'answer' must be a string, got {_type_name(answer)}")
        closed = rec.get("reasoning_closed", True)
        if not isinstance(closed, bool):
            raise RecordFormatError(f"'reasoning_closed' must be a boolean, got {_type_name(closed)}")
        steps = rec.get("steps")
        spans = None
        if isinstance(steps, list) and steps and all(isinstance(s, dict) for s in steps):
            try:
                spans = [(int(s["start"]), int(s["end"]), str(s.get("kind", "paragraph"))) for s in steps]
            except (KeyError, TypeError, ValueError) as e:
                raise RecordFormatError(f"'steps' entries need integer 'start' and 'end': {e}") from None
        return [
            _row(ctx, "pair", prompt, reasoning, answer, closed, group_id=group_id,
                 sample_index=_int(rec.get("sample_index"), "sample_index"),
                 id=_opt_str(rec.get("id"), "id"), steps=spans,
                 reasoning_provenance=_record_spans(rec, reasoning, closed), **common)
        ]
    rkey = next((k for k in RESPONSE_KEYS if k in rec), None)
    if rkey is not None and "answer" in rec:
        # An answer next to a response is the reference answer (URSA's and most math sets' gold), not the
        # response's: it is kept in the metadata, where best-of-N and answer checking look for it.
        meta.setdefault("answer", rec["answer"])
    if rkey is None:
        raise RecordFormatError(
            "no recognisable response: expected one of "
            + ", ".join((*RESPONSE_KEYS, "answer", "messages", "choices"))
            + f"; keys present: {', '.join(sorted(rec)) or 'none'}"
        )
    value = rec[rkey]
    if isinstance(value, str):
        responses = [value]
        base_index = _int(rec.get("sample_index"), "sample_index")
    elif isinstance(value, list):
        if not value:
            raise RecordFormatError(f"'{rkey}' is an empty list: no response to read")
        for i, v in enumerate(value):
            if not isinstance(v, str):
                raise RecordFormatError(f"'{rkey}[{i}]' must be a string, got {_type_name(v)}")
        responses = value
        base_index = 0
    else:
        raise RecordFormatError(f"'{rkey}' must be a string or a list of strings, got {_type_name(value)}")
    rows = []
    for i, text in enumerate(responses):
        split = split_reasoning(text, ctx.tags)
        reasoning = split.reasoning
        explicit = rec.get("reasoning")
        if isinstance(explicit, str) and explicit and not reasoning:
            reasoning = explicit
        elif isinstance(explicit, str) and explicit:
            ctx.lose("reasoning", "the response's own reasoning block was read instead")
        rows.append(
            _row(ctx, "pair", prompt, reasoning, split.answer, split.reasoning_closed, group_id=group_id,
                 sample_index=base_index + i,
                 reasoning_provenance=_record_spans(rec, reasoning, split.reasoning_closed), **common)
        )
    return rows


# --- chat-format records --------------------------------------------------------------------------------


def _tool_calls(msg: dict[str, Any], turn: int) -> list[dict[str, Any]]:
    out = []
    for tc in msg.get("tool_calls") or []:
        if not isinstance(tc, dict):
            continue
        fn = tc.get("function")
        if isinstance(fn, dict):  # OpenAI
            out.append({"kind": "tool_call", "name": fn.get("name"), "arguments": fn.get("arguments"),
                        "id": tc.get("id"), "step": turn})
        else:  # Inspect AI ToolCall: {id, function: str, arguments: dict}
            out.append({"kind": "tool_call", "name": fn if isinstance(fn, str) else tc.get("name"),
                        "arguments": tc.get("arguments"), "id": tc.get("id"), "step": turn})
    content = msg.get("content")
    if isinstance(content, list):  # Anthropic tool_use blocks
        for block in content:
            if isinstance(block, dict) and block.get("type") == "tool_use":
                out.append({"kind": "tool_call", "name": block.get("name"), "arguments": block.get("input"),
                            "id": block.get("id"), "step": turn})
    return out


def conversation_rows(
    messages: list[Any], ctx: Ctx, fmt: str, *, final: dict[str, Any] | None = None, **kw: Any
) -> list[Row]:
    """Rows from a message list whose assistant turns carry the response (and, for agents, actions).

    The prompt is everything before the first assistant turn; reasoning from every assistant turn is
    kept (joined in order); tool calls become actions with the tool output attached; the answer is the
    last assistant turn's text. ``final`` overrides the last assistant message (Inspect's ``output``).
    """
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise RecordFormatError(f"messages[{i}] must be an object, got {_type_name(m)}")
        if not isinstance(m.get("role"), str):
            raise RecordFormatError(f"messages[{i}]: 'role' must be a string, got {_type_name(m.get('role'))}")
    first = next((i for i, m in enumerate(messages) if m["role"] == "assistant"), None)
    if first is None and final is None:
        raise RecordFormatError("no assistant turn: the messages hold no response to read")
    prompt_msgs = messages if first is None else messages[:first]
    prompt = [_message(m, f"messages[{i}]") for i, m in enumerate(prompt_msgs)]
    turns = [] if first is None else messages[first:]
    if final is not None and not any(m is final for m in turns):
        if (not turns or turns[-1].get("role") != "assistant"
                or content_text(turns[-1].get("content")) != content_text(final.get("content"))):
            turns = [*turns, final]
        elif final.get("finish_reason") and not turns[-1].get("finish_reason"):
            # The output is the last turn itself: its stop reason (a cut by the token cap) is that turn's.
            turns = [*turns[:-1], {**turns[-1], "finish_reason": final["finish_reason"]}]
    reasonings: list[str] = []
    spans: list[dict[str, Any]] = []
    actions: list[dict[str, Any]] = []
    by_id: dict[str, dict[str, Any]] = {}
    answer, closed = "", True
    meta: dict[str, Any] = {}
    assistant_turn = -1
    for m in turns:
        role = m.get("role")
        if role == "assistant":
            assistant_turn += 1
            r, a, c, extra, r_spans = assistant_parts(m, ctx, m.get("finish_reason"))
            if r:
                # Turns are joined with "\n\n": the spans of this turn move to where its text starts.
                offset = sum(len(x) + 2 for x in reasonings)
                reasonings.append(r)
                spans.extend({**d, "start": d["start"] + offset, "end": d["end"] + offset} for d in r_spans)
            elif r_spans:
                # Markers of a turn without reasoning text (a redacted block alone) sit where it would start.
                offset = sum(len(x) + 2 for x in reasonings) - (2 if reasonings else 0)
                spans.extend({**d, "start": offset, "end": offset} for d in r_spans
                             if d["kind"] != "truncated")
            answer, closed = a, c
            for k, v in extra.items():
                meta[k] = meta.get(k, 0) + v if isinstance(v, int) else v
            for act in _tool_calls(m, assistant_turn):
                actions.append(act)
                if act.get("id"):
                    by_id[str(act["id"])] = act
        elif role == "tool":
            out = content_text(m.get("content"), "tool content")
            target = by_id.get(str(m.get("tool_call_id"))) if m.get("tool_call_id") else None
            if target is None:
                target = next((a for a in reversed(actions) if a.get("output") is None), None)
            if target is not None:
                target["output"] = out
        elif role == "user" and isinstance(m.get("content"), list):
            for block in m["content"]:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    target = by_id.get(str(block.get("tool_use_id")))
                    if target is not None:
                        target["output"] = content_text(block.get("content"))
    for act in actions:
        if act.get("id") is None:
            act.pop("id", None)
    metadata: dict[str, Any] = {**kw.pop("metadata", {}), **meta}
    if len(turns) > 1:
        metadata["assistant_turns"] = assistant_turn + 1
    reasoning = "\n\n".join(reasonings)
    # Only the last turn's cut matters (an earlier turn's truncation marker is where that turn stopped).
    spans = [d for d in spans if d["kind"] != "truncated"]
    if not closed:
        spans.append({"kind": "truncated", "start": len(reasoning), "end": len(reasoning)})
    return [_row(ctx, fmt, prompt, reasoning, answer, closed, actions=actions,
                 metadata=metadata, reasoning_provenance=spans, **kw)]


def read_chat(rec: dict[str, Any], ctx: Ctx) -> list[Row]:
    """Chat records: ``{"messages": [...]}`` whose assistant turn holds the response."""
    messages = rec.get("messages")
    if not isinstance(messages, list):
        raise RecordFormatError(f"'messages' must be a list, got {_type_name(messages)}")
    meta = {k: v for k, v in rec.items() if k not in ("messages", "model", "strategy", "group_id",
                                                       "sample_index", "id", "metadata")}
    if isinstance(rec.get("metadata"), dict):
        meta.update(rec["metadata"])
    return conversation_rows(
        messages, ctx, "chat",
        model=_opt_str(rec.get("model"), "model"),
        strategy=_opt_str(rec.get("strategy"), "strategy"),
        group_id=_opt_str(rec.get("group_id"), "group_id"),
        sample_index=_int(rec.get("sample_index"), "sample_index"),
        metadata=meta,
    )


# --- OpenAI chat completions, Batch API output, Anthropic messages ------------------------------------------


def read_openai_completion(rec: dict[str, Any], ctx: Ctx, *, fmt: str = "openai-chat",
                           group_id: str | None = None, meta: dict[str, Any] | None = None) -> list[Row]:
    """An OpenAI chat-completion object (one row per choice)."""
    choices = rec.get("choices")
    if not isinstance(choices, list) or not choices:
        raise RecordFormatError("chat completion has no 'choices' list")
    prompt_src = rec.get("messages") or (rec.get("request") or {}).get("messages")
    prompt = _prompt(prompt_src, where="messages") if prompt_src is not None else []
    model = _opt_str(rec.get("model"), "model")
    rows = []
    for k, choice in enumerate(choices):
        if not isinstance(choice, dict):
            raise RecordFormatError(f"choices[{k}] must be an object, got {_type_name(choice)}")
        msg = choice.get("message")
        if msg is None and isinstance(choice.get("text"), str):  # legacy completions endpoint
            msg = {"role": "assistant", "content": choice["text"]}
        if not isinstance(msg, dict):
            raise RecordFormatError(f"choices[{k}].message must be an object, got {_type_name(msg)}")
        reasoning, answer, closed, extra, spans = assistant_parts(msg, ctx, choice.get("finish_reason"))
        for key, v in choice.items():
            if key not in ("index", "message", "finish_reason", "text") and v not in (None, "", [], {}):
                ctx.lose(f"choices[].{key}", "choice field not read" if key != "logprobs"
                         else "log-probabilities are not kept")
        actions = _tool_calls(msg, 0)
        m = {**(meta or {}), **extra, "completion_id": rec.get("id"), "finish_reason": choice.get("finish_reason")}
        if isinstance(rec.get("usage"), dict):
            m["usage"] = rec["usage"]
        rows.append(_row(ctx, fmt, prompt, reasoning, answer, closed, model=model,
                         group_id=group_id or (str(rec["id"]) if rec.get("id") and not prompt else None),
                         sample_index=_int(choice.get("index"), "index", k), actions=actions, metadata=m,
                         reasoning_provenance=spans))
    ctx.lose_keys(rec, _OPENAI_CHAT_KEYS, "openai-chat")
    return rows


def read_openai_batch(rec: dict[str, Any], ctx: Ctx) -> list[Row]:
    """One line of OpenAI Batch API output: ``{id, custom_id, response: {status_code, body}, error}``."""
    if rec.get("error"):
        raise RecordFormatError(f"batch request {rec.get('custom_id')!r} failed: {rec['error']}")
    resp = rec.get("response")
    if not isinstance(resp, dict):
        raise RecordFormatError(f"'response' must be an object, got {_type_name(resp)}")
    status = resp.get("status_code")
    body = resp.get("body")
    if status is not None and status != 200:
        raise RecordFormatError(f"batch request {rec.get('custom_id')!r} returned HTTP {status}: {body}")
    if not isinstance(body, dict):
        raise RecordFormatError(f"'response.body' must be an object, got {_type_name(body)}")
    cid = _opt_str(rec.get("custom_id"), "group_id")
    meta = {"custom_id": cid, "request_id": resp.get("request_id")}
    if body.get("object") == "response":  # a batch of the /v1/responses endpoint
        return read_openai_responses(body, ctx, fmt="openai-batch", group_id=cid, meta=meta)
    return read_openai_completion(body, ctx, fmt="openai-batch", group_id=cid, meta=meta)


def read_anthropic_message(rec: dict[str, Any], ctx: Ctx) -> list[Row]:
    """An Anthropic Messages API response object (``type: message``).

    ``thinking`` blocks are ``raw`` reasoning (their ``signature`` kept as the span's payload),
    ``redacted_thinking`` blocks ``redacted`` markers (their ``data`` kept as payload); ``usage`` is kept in the
    metadata.
    """
    # The message object's own keys are checked here; assistant_parts would report them as message fields.
    msg = {k: v for k, v in rec.items() if k in ASSISTANT_KEYS}
    reasoning, answer, closed, extra, spans = assistant_parts(msg, ctx, "length" if rec.get("stop_reason") ==
                                                              "max_tokens" else None)
    ctx.lose_keys(rec, _ANTHROPIC_KEYS, "anthropic")
    meta = {**extra, "message_id": rec.get("id"), "stop_reason": rec.get("stop_reason")}
    if isinstance(rec.get("usage"), dict):
        meta["usage"] = rec["usage"]
    return [_row(ctx, "anthropic", [], reasoning, answer, closed, model=_opt_str(rec.get("model"), "model"),
                 group_id=_opt_str(rec.get("id"), "id"), actions=_tool_calls(rec, 0), metadata=meta,
                 reasoning_provenance=spans)]


#: Top-level keys each API-object reader reads (kept, or structural such as ``object``); any other key of a
#: record is reported as not kept (``cotscope ingest --json``: ``lost``).
_OPENAI_CHAT_KEYS = frozenset(("id", "object", "model", "choices", "usage", "messages", "request"))
_ANTHROPIC_KEYS = frozenset(("id", "type", "role", "content", "model", "stop_reason", "usage"))
_RESPONSES_KEYS = frozenset(("id", "object", "model", "output", "status", "incomplete_details", "usage", "input",
                             "instructions", "error", "output_text"))
_GEMINI_KEYS = frozenset(("candidates", "modelVersion", "model_version", "usageMetadata", "usage_metadata",
                          "responseId", "response_id", "contents", "model"))


# --- OpenAI Responses API ------------------------------------------------------------------------------------


def _responses_prompt(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """The prompt of a Responses object that carries its request (``instructions`` and ``input``)."""
    inp = rec.get("input")
    instructions = rec.get("instructions")
    msgs: list[dict[str, Any]] = []
    if isinstance(instructions, str) and instructions:
        msgs.append({"role": "system", "content": instructions})
    if isinstance(inp, str):
        msgs.append({"role": "user", "content": inp})
    elif isinstance(inp, list):
        for i, m in enumerate(inp):
            if isinstance(m, dict) and isinstance(m.get("role"), str):
                msgs.append(_message(m, f"input[{i}]"))
    return msgs


def read_openai_responses(rec: dict[str, Any], ctx: Ctx, *, fmt: str = "openai-responses",
                          group_id: str | None = None, meta: dict[str, Any] | None = None) -> list[Row]:
    """An OpenAI Responses API object (``object: response``, an ``output`` list of items).

    ``reasoning`` items give ``summary`` spans (each ``summary_text``), ``raw`` spans (``content`` of type
    ``reasoning_text``, as open-weight models served through the Responses API return) and an ``encrypted``
    marker holding ``encrypted_content``; ``message`` items give the answer; ``function_call`` items are
    actions. A response ``incomplete`` for ``max_output_tokens`` without an answer has reasoning that never
    closed.
    """
    output = rec.get("output")
    if not isinstance(output, list):
        raise RecordFormatError(f"Responses object: 'output' must be a list, got {_type_name(output)}")
    b = ReasoningBuilder()
    answers: list[str] = []
    actions: list[dict[str, Any]] = []
    refusals: list[str] = []
    for i, item in enumerate(output):
        if not isinstance(item, dict):
            raise RecordFormatError(f"output[{i}] must be an object, got {_type_name(item)}")
        itype = item.get("type")
        if itype == "reasoning":
            for j, part in enumerate(item.get("summary") or []):
                if not isinstance(part, dict):
                    raise RecordFormatError(f"output[{i}].summary[{j}] must be an object, got {_type_name(part)}")
                b.add(str(part.get("text") or ""), "summary")
            for part in item.get("content") or []:
                if isinstance(part, dict) and part.get("type") == "reasoning_text":
                    b.add(str(part.get("text") or ""), "raw")
            enc = item.get("encrypted_content")
            if isinstance(enc, str) and enc:
                b.mark("encrypted", enc)
        elif itype == "message":
            content = item.get("content")
            if isinstance(content, list):
                for part in content:
                    if isinstance(part, dict) and part.get("type") == "refusal":
                        refusals.append(str(part.get("refusal") or ""))
            answers.append(content_text(content, f"output[{i}].content"))
        elif itype == "function_call":
            actions.append({"kind": "tool_call", "name": item.get("name"), "arguments": item.get("arguments"),
                            "id": item.get("call_id") or item.get("id"), "step": 0})
        else:
            ctx.lose(f"output[type={itype}]", "output item type not read")
    answer = "".join(answers) or "".join(refusals)
    incomplete = rec.get("incomplete_details")
    reason = incomplete.get("reason") if isinstance(incomplete, dict) else None
    closed = not (rec.get("status") == "incomplete" and reason == "max_output_tokens" and not answer)
    reasoning, spans = strip_spans(b.text(), b.spans)
    if not closed:
        spans = [*spans, {"kind": "truncated", "start": len(reasoning), "end": len(reasoning)}]
    m: dict[str, Any] = {**(meta or {}), "response_id": rec.get("id"), "status": rec.get("status")}
    if reason:
        m["incomplete_reason"] = reason
    if refusals:
        m["refusal"] = True
    if isinstance(rec.get("usage"), dict):
        m["usage"] = rec["usage"]
    ctx.lose_keys(rec, _RESPONSES_KEYS, fmt)
    prompt = _responses_prompt(rec)
    return [_row(ctx, fmt, prompt, reasoning, answer, closed, model=_opt_str(rec.get("model"), "model"),
                 group_id=group_id or (_opt_str(rec.get("id"), "id") if not prompt else None), actions=actions,
                 metadata=m, reasoning_provenance=spans)]


# --- Gemini generateContent responses ---------------------------------------------------------------------


def _camel(d: dict[str, Any], camel: str, snake: str) -> Any:
    """A field of a Gemini object, which the REST API writes in camelCase and the Python SDK in snake_case."""
    return d.get(camel, d.get(snake))


def read_gemini(rec: dict[str, Any], ctx: Ctx) -> list[Row]:
    """A Gemini ``generateContent`` response (``candidates``, each with ``content.parts``); one row per candidate.

    Parts with ``thought: true`` are the model's thought summaries (``summary`` spans; Gemini returns
    summaries, not its raw thinking); a ``thoughtSignature`` on a thought part is that span's payload, on any
    other part an ``encrypted`` marker. Other text parts are the answer; ``functionCall`` parts are actions.
    A candidate that stopped at ``MAX_TOKENS`` without an answer has reasoning that never closed.
    """
    cands = rec.get("candidates")
    if not isinstance(cands, list) or not cands:
        raise RecordFormatError("Gemini response has no 'candidates' list")
    model = _opt_str(_camel(rec, "modelVersion", "model_version") or rec.get("model"), "model")
    prompt: list[dict[str, Any]] = []
    contents = rec.get("contents")  # a logged request next to its response
    if isinstance(contents, list):
        for i, c in enumerate(contents):
            if isinstance(c, dict):
                role = "assistant" if c.get("role") == "model" else str(c.get("role") or "user")
                prompt.append({"role": role, "content": "".join(
                    str(p.get("text") or "") for p in c.get("parts") or [] if isinstance(p, dict)
                    and not p.get("thought"))})
            else:
                raise RecordFormatError(f"contents[{i}] must be an object, got {_type_name(c)}")
    rid = _opt_str(_camel(rec, "responseId", "response_id"), "id")
    rows = []
    for k, cand in enumerate(cands):
        if not isinstance(cand, dict):
            raise RecordFormatError(f"candidates[{k}] must be an object, got {_type_name(cand)}")
        content = cand.get("content") or {}
        if not isinstance(content, dict):
            raise RecordFormatError(f"candidates[{k}].content must be an object, got {_type_name(content)}")
        parts = content.get("parts") or []
        if not isinstance(parts, list):
            raise RecordFormatError(f"candidates[{k}].content.parts must be a list, got {_type_name(parts)}")
        b = ReasoningBuilder()
        answer_parts: list[str] = []
        actions: list[dict[str, Any]] = []
        signatures: list[str] = []
        for j, part in enumerate(parts):
            if not isinstance(part, dict):
                raise RecordFormatError(f"candidates[{k}].content.parts[{j}] must be an object, got "
                                        f"{_type_name(part)}")
            sig = _camel(part, "thoughtSignature", "thought_signature")
            sig = sig if isinstance(sig, str) and sig else None
            if part.get("thought"):
                b.add(str(part.get("text") or ""), "summary", sig)
                continue
            if sig is not None:
                signatures.append(sig)
            call = _camel(part, "functionCall", "function_call")
            if isinstance(call, dict):
                actions.append({"kind": "tool_call", "name": call.get("name"), "arguments": call.get("args"),
                                "id": call.get("id"), "step": 0})
            elif isinstance(part.get("text"), str):
                answer_parts.append(part["text"])
            else:
                ctx.lose(f"parts[{'/'.join(sorted(k for k in part if k != 'thoughtSignature'))}]",
                         "part kind not read")
        for sig in signatures:
            b.mark("encrypted", sig)
        answer = "".join(answer_parts).strip()
        finish = _camel(cand, "finishReason", "finish_reason")
        closed = not (finish == "MAX_TOKENS" and not answer)
        reasoning, spans = strip_spans(b.text(), b.spans)
        if not closed:
            spans = [*spans, {"kind": "truncated", "start": len(reasoning), "end": len(reasoning)}]
        m: dict[str, Any] = {"response_id": rid, "finish_reason": finish}
        usage = _camel(rec, "usageMetadata", "usage_metadata")
        if isinstance(usage, dict):
            m["usage"] = usage
        for key, v in cand.items():
            if key not in ("content", "finishReason", "finish_reason", "index") and v not in (None, "", [], {}):
                ctx.lose(f"candidates[].{key}", "candidate field not read")
        rows.append(_row(ctx, "gemini", prompt, reasoning, answer, closed, model=model,
                         group_id=rid if not prompt else None,
                         sample_index=_int(cand.get("index"), "index", k), actions=actions, metadata=m,
                         reasoning_provenance=spans))
    ctx.lose_keys(rec, _GEMINI_KEYS, "gemini")
    return rows


RecordReader = Callable[[dict[str, Any], Ctx], list[Row]]

RECORD_READERS: dict[str, RecordReader] = {
    "pair": read_pair,
    "chat": read_chat,
    "openai-chat": read_openai_completion,
    "openai-batch": read_openai_batch,
    "anthropic": read_anthropic_message,
    "openai-responses": read_openai_responses,
    "gemini": read_gemini,
}


def detect_record(rec: dict[str, Any]) -> str:
    """The format of one JSON record, from its keys."""
    if "custom_id" in rec and ("response" in rec or "error" in rec):
        return "openai-batch"
    output = rec.get("output")
    if rec.get("object") == "response" or (
        isinstance(output, list) and output and all(isinstance(o, dict) and "type" in o for o in output)
        and any(o.get("type") in ("reasoning", "message") for o in output)
    ):
        return "openai-responses"
    if isinstance(rec.get("candidates"), list):
        return "gemini"
    if rec.get("object") in ("chat.completion", "text_completion") or (
        "choices" in rec and isinstance(rec.get("choices"), list)
    ):
        return "openai-chat"
    if rec.get("type") == "message" and rec.get("role") == "assistant" and isinstance(rec.get("content"), list):
        return "anthropic"
    if "messages" in rec and not any(k in rec for k in (*RESPONSE_KEYS, "answer")):
        return "chat"
    return "pair"


def read_record(rec: Any, ctx: Ctx, fmt: str = "auto") -> list[Row]:
    """Rows from one parsed record; ``fmt`` is a record format name or ``auto``."""
    if not isinstance(rec, dict):
        raise RecordFormatError(f"expected a JSON object, got {_type_name(rec)}")
    name = detect_record(rec) if fmt == "auto" else fmt
    reader = RECORD_READERS.get(name)
    if reader is None:
        raise RecordFormatError(f"unknown record format {name!r}")
    return reader(rec, ctx)
