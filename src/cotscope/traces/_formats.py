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
    """What a record reader needs besides the record: tags, defaults and provenance."""

    __slots__ = ("file", "line", "model", "strategy", "tags")

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


def assistant_parts(msg: dict[str, Any], ctx: Ctx, finish_reason: Any = None) -> tuple[str, str, bool, dict[str, Any]]:
    """Reasoning, answer, closed flag and extra metadata of one assistant message.

    Reads reasoning from ``reasoning_content`` / ``reasoning`` fields (DeepSeek, vLLM, OpenRouter),
    from Anthropic ``thinking`` / ``redacted_thinking`` blocks and Inspect ``reasoning`` blocks, and
    from ``<think>`` text in the content.
    """
    meta: dict[str, Any] = {}
    field_reasoning = None
    for key in ("reasoning_content", "reasoning"):
        v = msg.get(key)
        if v is not None:
            if not isinstance(v, str):
                raise RecordFormatError(f"assistant '{key}' must be a string, got {_type_name(v)}")
            field_reasoning = v
            break
    content = msg.get("content")
    block_reasoning: list[str] = []
    redacted = 0
    if isinstance(content, list):
        for block in content:
            if isinstance(block, dict):
                btype = block.get("type")
                if btype == "thinking":
                    block_reasoning.append(str(block.get("thinking", "")))
                elif btype == "redacted_thinking":
                    redacted += 1
                elif btype == "reasoning":  # Inspect AI ContentReasoning
                    if block.get("redacted"):
                        redacted += 1
                    else:
                        block_reasoning.append(str(block.get("reasoning", "")))
    if redacted:
        meta["redacted_reasoning_blocks"] = redacted
    text = content_text(content, "assistant content")
    if field_reasoning is not None or block_reasoning:
        reasoning = field_reasoning if field_reasoning is not None else "\n\n".join(block_reasoning)
        split = split_reasoning(text, ctx.tags)
        if split.reasoning:
            # Some servers leave a think block in the content as well; keep both, in order.
            reasoning = f"{reasoning}\n\n{split.reasoning}" if reasoning else split.reasoning
        answer = split.answer
        closed = split.reasoning_closed
        if finish_reason == "length" and not answer:
            closed = False
        return reasoning.strip(), answer, closed, meta
    split = split_reasoning(text, ctx.tags)
    return split.reasoning, split.answer, split.reasoning_closed, meta


def text_spans(reasoning: str, closed: bool = True, kind: str = "raw") -> list[dict[str, Any]]:
    """The provenance of reasoning that is one text of one kind: a span over all of it, and a ``truncated``
    marker at its end when it never closed. Empty closed reasoning has no span (nothing to describe)."""
    spans: list[dict[str, Any]] = [{"kind": kind, "start": 0, "end": len(reasoning)}] if reasoning else []
    if not closed:
        spans.append({"kind": "truncated", "start": len(reasoning), "end": len(reasoning)})
    return spans


def _record_spans(rec: dict[str, Any], reasoning: str, closed: bool) -> list[dict[str, Any]]:
    """A record's own ``reasoning_provenance`` (cotscope's export) checked, else its reasoning as raw text."""
    if "reasoning_provenance" in rec and rec["reasoning_provenance"] is not None:
        try:
            return check_spans(rec["reasoning_provenance"], reasoning)
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
        rows.append(
            _row(ctx, "pair", prompt, reasoning, split.answer, split.reasoning_closed, group_id=group_id,
                 sample_index=base_index + i, **common)
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
    if final is not None and not any(m is final for m in turns) and (
        not turns
        or turns[-1].get("role") != "assistant"
        or content_text(turns[-1].get("content")) != content_text(final.get("content"))
    ):
        turns = [*turns, final]
    reasonings: list[str] = []
    actions: list[dict[str, Any]] = []
    by_id: dict[str, dict[str, Any]] = {}
    answer, closed = "", True
    meta: dict[str, Any] = {}
    assistant_turn = -1
    for m in turns:
        role = m.get("role")
        if role == "assistant":
            assistant_turn += 1
            r, a, c, extra = assistant_parts(m, ctx, m.get("finish_reason"))
            if r:
                reasonings.append(r)
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
    return [_row(ctx, fmt, prompt, "\n\n".join(reasonings), answer, closed, actions=actions,
                 metadata=metadata, **kw)]


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
        reasoning, answer, closed, extra = assistant_parts(msg, ctx, choice.get("finish_reason"))
        actions = _tool_calls(msg, 0)
        m = {**(meta or {}), **extra, "completion_id": rec.get("id"), "finish_reason": choice.get("finish_reason")}
        if isinstance(rec.get("usage"), dict):
            m["usage"] = rec["usage"]
        rows.append(_row(ctx, fmt, prompt, reasoning, answer, closed, model=model,
                         group_id=group_id or (str(rec["id"]) if rec.get("id") and not prompt else None),
                         sample_index=_int(choice.get("index"), "index", k), actions=actions, metadata=m))
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
    return read_openai_completion(body, ctx, fmt="openai-batch", group_id=cid,
                                  meta={"custom_id": cid, "request_id": resp.get("request_id")})


def read_anthropic_message(rec: dict[str, Any], ctx: Ctx) -> list[Row]:
    """An Anthropic Messages API response object (``type: message``)."""
    reasoning, answer, closed, extra = assistant_parts(rec, ctx, "length" if rec.get("stop_reason") ==
                                                       "max_tokens" else None)
    return [_row(ctx, "anthropic", [], reasoning, answer, closed, model=_opt_str(rec.get("model"), "model"),
                 group_id=_opt_str(rec.get("id"), "id"), actions=_tool_calls(rec, 0),
                 metadata={**extra, "message_id": rec.get("id"), "stop_reason": rec.get("stop_reason")})]


RecordReader = Callable[[dict[str, Any], Ctx], list[Row]]

RECORD_READERS: dict[str, RecordReader] = {
    "pair": read_pair,
    "chat": read_chat,
    "openai-chat": read_openai_completion,
    "openai-batch": read_openai_batch,
    "anthropic": read_anthropic_message,
}


def detect_record(rec: dict[str, Any]) -> str:
    """The format of one JSON record, from its keys."""
    if "custom_id" in rec and ("response" in rec or "error" in rec):
        return "openai-batch"
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
