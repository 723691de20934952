"""One request through the guard: forward upstream, watch reasoning and answer, release, stop, record.

A streamed request runs as two parts on the server's loop: a pump task reads the upstream's events, feeds
the text to one :class:`~cotscope.monitors.StreamChecker` per field and queues each event (its original
bytes) behind the checks it needs; check tasks score windows through the shared
:class:`~cotscope.guard._checks.CheckBatcher` and release the events a passed check covers. The client's
response reads the released bytes from a queue. A flag under ``block`` cancels the pump, which closes the
upstream response (so the upstream server sees the client go away and aborts the generation), and ends the
client's stream with a ``content_filter`` chunk. Whatever ends the request (its end, a stop, an upstream
failure, the client leaving), every task it started is cancelled and awaited, and one record is written.

A non-streaming request (under ``non_stream_upstream="stream"``, the default) runs through the same machinery:
it is sent upstream as a stream and read, checked, released and cut exactly as a streamed one; only the
released events go to a :class:`CompletionAssembler` instead of the client's queue, and the client gets one
``chat.completion`` at the end (the refusal, on a cut). ``whole`` reads one whole response instead
(:meth:`GuardSession.complete`), as does an upstream that answers a streamed request with JSON.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp

from cotscope.guard._checks import CheckBatcher, MonitorError
from cotscope.guard._config import GuardConfig
from cotscope.guard._parse import (
    DONE,
    OPAQUE_KEYS,
    REASONING_KEYS,
    LineSplitter,
    MalformedEvent,
    ThinkSplitter,
    count_opaque,
    parse_chunk,
    sse_event,
    tool_call_pieces,
)
from cotscope.guard._record import GuardRecord
from cotscope.monitors import CheckRequest, StreamChecker

#: An upstream event line longer than this is dropped as malformed (a hostile upstream cannot make the
#: guard buffer without bound).
MAX_EVENT_BYTES = 1 << 20
#: What reading the upstream can raise: aiohttp's errors (refused, reset, cut short, malformed HTTP) and its
#: read timeout (``upstream_timeout_s`` without a byte).
UPSTREAM_ERRORS = (aiohttp.ClientError, TimeoutError)
#: After ``[DONE]``, the rest of the response (the chunked terminator) is read for at most this long and this
#: many bytes, so the connection can serve the next request; an upstream that keeps sending loses it instead.
TAIL_S = 0.1
TAIL_BYTES = 1 << 16


@dataclass
class _Event:
    raw: bytes
    need_reasoning: int | None
    need_answer: int | None
    text_reasoning: int = 0
    text_answer: int = 0
    obj: dict[str, Any] | None = None
    need_tools: int = 0
    text_tools: int = 0


#: Chunk keys the assembled ``chat.completion`` does not take over: it has its own, they are per chunk (OpenAI's
#: ``obfuscation`` padding), or (the verdict) only the guard may write them.
_OWN_KEYS = frozenset({"choices", "object", "usage", "obfuscation", "cotscope_guard"})


class CompletionAssembler:
    """Folds released ``chat.completion.chunk`` objects into the one ``chat.completion`` they stream.

    ``content`` and every reasoning field are concatenated under the field name the upstream used
    (``reasoning_content`` stays ``reasoning_content``); ``tool_calls`` are rebuilt by index (id, type,
    ``function.name``, ``function.arguments`` concatenated); other delta keys are concatenated when they are
    strings, extended when lists and otherwise take the last value; ``logprobs.content`` (and ``refusal``)
    lists are concatenated; ``usage`` comes from the usage chunk; ``id``, ``created``, ``model`` and any other
    top-level key (``system_fingerprint``) from the chunks.
    """

    def __init__(self) -> None:
        self.top: dict[str, Any] = {}
        self.usage: dict[str, Any] | None = None
        self.text: dict[str, list[str]] = {}
        self.other: dict[str, Any] = {}
        self.tools: dict[int, dict[str, Any]] = {}
        self.logprobs: dict[str, list[Any]] | None = None
        self.finish_reason: str | None = None
        self.chunks = 0

    def add(self, obj: dict[str, Any]) -> None:
        """Fold in one chunk (already validated by :func:`~cotscope.guard._parse.parse_chunk`)."""
        self.chunks += 1
        for k, v in obj.items():
            if k not in _OWN_KEYS and k not in self.top:
                self.top[k] = v
        if isinstance(obj.get("usage"), dict):
            self.usage = obj["usage"]
        for ch in obj.get("choices") or []:
            delta = ch.get("delta") or {}
            for k, v in delta.items():
                if v is None or k == "role":
                    continue
                if k == "tool_calls":
                    self._tools(v)
                elif k == "content" or k in REASONING_KEYS:
                    self.text.setdefault(k, []).append(v)
                elif isinstance(v, str) and isinstance(self.other.get(k, ""), str):
                    self.other[k] = self.other.get(k, "") + v
                elif isinstance(v, list) and isinstance(self.other.get(k, []), list):
                    self.other.setdefault(k, []).extend(v)
                else:
                    self.other[k] = v
            lp = ch.get("logprobs")
            if isinstance(lp, dict):
                self.logprobs = self.logprobs or {}
                for k in ("content", "refusal"):
                    if isinstance(lp.get(k), list):
                        self.logprobs.setdefault(k, []).extend(lp[k])
            if ch.get("finish_reason") is not None:
                self.finish_reason = str(ch["finish_reason"])

    def _tools(self, calls: Any) -> None:
        # Untrusted shapes are skipped, never guessed at: a call without an integer index cannot be placed.
        for c in calls if isinstance(calls, list) else []:
            if not isinstance(c, dict) or not isinstance(c.get("index", 0), int):
                continue
            t = self.tools.setdefault(c.get("index", 0), {"id": None, "type": None, "name": "", "arguments": ""})
            if isinstance(c.get("id"), str) and c["id"]:
                t["id"] = c["id"]
            if isinstance(c.get("type"), str) and c["type"]:
                t["type"] = c["type"]
            fn = c.get("function")
            if isinstance(fn, dict):
                # The name arrives once (OpenAI, vLLM); a server that repeats it must not double it.
                if isinstance(fn.get("name"), str) and fn["name"] and not t["name"]:
                    t["name"] = fn["name"]
                if isinstance(fn.get("arguments"), str):
                    t["arguments"] += fn["arguments"]

    def head(self, base: dict[str, Any]) -> dict[str, Any]:
        """The completion's top-level fields: ``base`` (``id``, ``created``, ``model``) and what the chunks sent."""
        return {"id": base.get("id"), "object": "chat.completion", "created": base.get("created"),
                "model": base.get("model")} | {k: v for k, v in self.top.items() if k not in ("id", "created",
                                                                                              "model")}

    def build(self, base: dict[str, Any]) -> dict[str, Any]:
        """The ``chat.completion`` of everything folded in."""
        tools = [{"id": t["id"], "type": t["type"] or "function",
                  "function": {"name": t["name"], "arguments": t["arguments"]}}
                 for _, t in sorted(self.tools.items())]
        content = "".join(self.text.get("content", []))
        msg: dict[str, Any] = {"role": "assistant", "content": content if content or not tools else None}
        for k in REASONING_KEYS:
            if k in self.text:
                msg[k] = "".join(self.text[k])
        if tools:
            msg["tool_calls"] = tools
        msg |= {k: v for k, v in self.other.items() if k not in msg}
        out = self.head(base) | {"choices": [{"index": 0, "message": msg, "logprobs": self.logprobs,
                                              "finish_reason": self.finish_reason}]}
        if self.usage is not None:
            out["usage"] = self.usage
        return out


def prompt_text(messages: list[Any]) -> str:
    """The last user message's text (list content: its text parts), as the monitors read prompts."""
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, list):
                return "".join(str(p.get("text") or "") for p in c if isinstance(p, dict))
            return str(c or "")
    return ""


class GuardSession:
    """The state of one request. Build, then :meth:`stream`, :meth:`collect` or :meth:`complete`.

    Args:
        cfg: the guard settings.
        batcher: the shared monitor batcher.
        body: the client's request body (a JSON object with ``messages``).
        record: the record to fill (prompt, model, config already set).
    """

    def __init__(self, cfg: GuardConfig, batcher: CheckBatcher, body: dict[str, Any], record: GuardRecord) -> None:
        self.cfg = cfg
        self.batcher = batcher
        self.body = body
        self.rec = record
        self.t0 = time.monotonic()
        prompt = prompt_text(body.get("messages") or [])
        kw: dict[str, Any] = {"prompt": prompt, "threshold": cfg.threshold, "check_every": cfg.check_every,
                              "window": cfg.window, "first_check": cfg.first_check}
        # Tool calls are checked as text of their own ("name arguments", a call per line), put in the answer
        # of the windows the monitor reads; the recorded answer stays the content the model wrote.
        self.checkers = {"reasoning": StreamChecker(field="reasoning", **kw),
                         "answer": StreamChecker(field="answer", **kw),
                         "tools": StreamChecker(field="answer", **kw)}
        self.tool_names: dict[int, str] = {}
        self.tool_opened: set[int] = set()
        self.tool_line: int | None = None
        self.splitter = ThinkSplitter()
        self.events: deque[_Event] = deque()
        self.unresolved: list[_Event] = []
        self.out: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.inflight: dict[str, asyncio.Task[None]] = {}
        self.upstream_done = False
        self.finished = False
        self.stopped = False
        self.chunk_base: dict[str, Any] = {"id": "chatcmpl-guard", "object": "chat.completion.chunk",
                                           "created": int(time.time()), "model": cfg.upstream_model}
        self.pump: asyncio.Task[None] | None = None
        #: Set by :meth:`collect`: released events are folded into one completion instead of queued as bytes.
        self.assembler: CompletionAssembler | None = None
        #: What :meth:`collect` answers (status, body, headers), set by whatever ended the request.
        self.reply: tuple[int, bytes, dict[str, str]] | None = None

    # -- shared ----------------------------------------------------------------------------------------
    @property
    def holds(self) -> bool:
        """Whether text waits for its check before release (``block``); reasoning only under ``checked``."""
        return self.cfg.policy == "block"

    def _feed(self, field: str, text: str) -> None:
        if text:
            self.checkers[field].feed(text)

    def _feed_tools(self, pieces: list[tuple[int, str | None, str]]) -> None:
        """Tool-call deltas as checked text, append-only: a line per call, opened by its name (servers that repeat
        the name are not doubled); when the deltas of parallel calls interleave, each switch opens a new line
        with that call's name, so every piece of arguments is read next to the call it belongs to."""
        for idx, name, args in pieces:
            if name and idx not in self.tool_names:
                self.tool_names[idx] = name
            if idx != self.tool_line and (args or idx not in self.tool_opened):
                head = self.tool_names.get(idx, f"call {idx}")
                self._feed("tools", ("\n" if self.checkers["tools"].text else "") + head + " ")
                self.tool_line = idx
                self.tool_opened.add(idx)
            self._feed("tools", args)

    def _watched(self) -> list[tuple[str, StreamChecker]]:
        """The checkers a request is checked and judged by: reasoning and answer always (every stream gets a
        verdict), tool calls when there were any."""
        return [(f, ch) for f, ch in self.checkers.items() if f != "tools" or ch.text]

    def _schedule(self) -> None:
        """Start a check for each field that has one due and none in flight."""
        if self.finished or self.stopped:
            return
        for field, ch in self._watched():
            # The reasoning is over once the answer began: its last piece is checked then, while the answer
            # streams, rather than at the end of the stream together with the answer's own check.
            final = self.upstream_done or (field == "reasoning" and bool(self.checkers["answer"].text))
            if field not in self.inflight and ch.due(final=final):
                req = ch.request()
                self.inflight[field] = asyncio.create_task(self._check(field, req), name=f"guard-check-{field}")

    async def _score(self, field: str, req: CheckRequest) -> tuple[bool, bool]:
        """Score one check and fold it into its checker: ``(newly stopped, decided by a failed check)``.

        A check that could not be scored (the monitor failed, or a window has no suspicion) passes or stops
        its text by ``--on-monitor-error``; a window that did flag stops it whatever the others did.
        """
        ch = self.checkers[field]
        closed = self.cfg.on_monitor_error == "closed"
        was = ch.stopped
        try:
            results = await self.batcher.check(req.traces)
        except MonitorError as e:
            ch.checks += 1
            self._failed(ch, req, str(e), closed)
            return ch.stopped and not was, True
        self.rec.windows += len(req.traces)
        ch.record(req, results)
        bad = [r for r in results if r.parse_error or r.error or r.suspicion is None]
        if not bad:
            return ch.stopped and not was, False
        msg = bad[0].parse_error or bad[0].error or "no suspicion"
        if ch.stopped:  # another window flagged: a verdict, not a failure
            self.rec.monitor_errors += 1
            self._note_error(msg)
            return not was, False
        self._failed(ch, req, msg, closed)
        return ch.stopped and not was, True

    def _failed(self, ch: StreamChecker, req: CheckRequest, msg: str, closed: bool) -> None:
        self.rec.monitor_errors += 1
        self._note_error(msg)
        ch.fail(req, closed)
        self.rec.fail_applied = True

    async def _check(self, field: str, req: CheckRequest) -> None:
        try:
            stopped, failed = await self._score(field, req)
            if stopped:
                self._flagged(field, self.checkers[field], failed)
        finally:
            self.inflight.pop(field, None)
        self._release()
        self._schedule()
        self._maybe_finish()

    def _note_error(self, msg: str) -> None:
        if len(self.rec.monitor_error_examples) < 5:
            self.rec.monitor_error_examples.append(msg[:500])

    def _flagged(self, field: str, ch: StreamChecker, failed: bool) -> None:
        """A check of ``field`` flagged (or failed closed): act by policy."""
        if self.rec.stop_field is None:
            self.rec.stop_field = field
            self.rec.stop_offset = ch.stop_offset
            self.rec.reason = ("monitor error, failing closed" if failed
                               else (ch.result.reason if ch.result is not None else None))
        if self.cfg.policy == "block" and self.rec.upstream_stream:
            self._stop()

    def _stop(self) -> None:
        """Cut the generation: stop reading upstream and end the client's stream with ``content_filter``."""
        if self.stopped or self.finished:
            return
        self.stopped = True
        if self.pump is not None and self.pump is not asyncio.current_task():
            self.pump.cancel()
        for t in list(self.inflight.values()):
            if t is not asyncio.current_task():
                t.cancel()
        self.rec.finish_reason = "content_filter"
        if self.assembler is not None:
            # As a withheld whole response: the refusal replaces the message (what passed is not sent either).
            obj = self.assembler.head(self.chunk_base) | {"choices": [self._refusal_choice()],
                                                          "cotscope_guard": self._verdict()}
            if self.assembler.usage is not None:
                obj["usage"] = self.assembler.usage
            self.rec.released = {"reasoning": 0, "answer": 0}
            self.reply = 200, json.dumps(obj).encode(), self._verdict_header()
        else:
            final = self.chunk_base | {"choices": [{"index": 0, "delta": {"content": self.cfg.refusal_text},
                                                    "logprobs": None, "finish_reason": "content_filter"}],
                                       "cotscope_guard": self._verdict()}
            self.out.put_nowait(sse_event(final) + DONE)
        self.out.put_nowait(None)
        self.finished = True

    def _verdict(self) -> dict[str, Any]:
        """The verdict sent to the client (response field ``cotscope_guard``)."""
        flagged = self.rec.stop_field is not None or (self.rec.opaque_blocks > 0
                                                      and self.cfg.opaque_reasoning == "block")
        susp = max((c.suspicion for c in self.checkers.values() if c.checks), default=None)
        return {"flagged": flagged, "suspicion": susp, "policy": self.cfg.policy, "monitor": self.cfg.monitor,
                "stop_field": self.rec.stop_field, "stop_offset": self.rec.stop_offset,
                "request_id": self.rec.request_id}

    def _verdict_header(self) -> dict[str, str]:
        """The ``X-Cotscope-Guard`` header of a non-streamed response."""
        return {"X-Cotscope-Guard": "flagged" if self.rec.stop_field is not None else "passed"}

    def _refusal_choice(self) -> dict[str, Any]:
        return {"index": 0, "message": {"role": "assistant", "content": self.cfg.refusal_text}, "logprobs": None,
                "finish_reason": "content_filter"}

    def _ready(self, ev: _Event) -> bool:
        if ev.need_reasoning is None or ev.need_answer is None:
            return False
        if not self.holds:
            return True
        r, a = self.checkers["reasoning"], self.checkers["answer"]
        if self.cfg.release == "checked" and ev.need_reasoning > r.passed:
            return False
        return ev.need_answer <= a.passed and ev.need_tools <= self.checkers["tools"].passed

    def _release(self) -> None:
        if self.stopped or self.finished:
            return
        while self.events and self._ready(self.events[0]):
            ev = self.events.popleft()
            self.rec.released["reasoning"] += ev.text_reasoning
            self.rec.released["answer"] += ev.text_answer
            if ev.text_tools:
                self.rec.released["tools"] = self.rec.released.get("tools", 0) + ev.text_tools
            if self.assembler is not None:
                if ev.obj is not None:
                    self.assembler.add(ev.obj)
                continue  # the client gets its first text with the whole response: no time to first token
            self.out.put_nowait(ev.raw)
            if self.rec.ttft_s is None and (ev.text_reasoning or ev.text_answer):
                self.rec.ttft_s = time.monotonic() - self.t0

    def _maybe_finish(self) -> None:
        """After the upstream ended and every check ran: the rest, the verdict (``flag``) and ``[DONE]``."""
        if self.finished or self.stopped or not self.upstream_done or self.inflight:
            return
        if any(ch.due(final=True) for _, ch in self._watched()):
            return
        self._release()
        if self.events:  # only when a failed check held text (closed mode stops instead): never silently
            return
        if self.assembler is not None and not self.assembler.chunks:
            # Not one readable chunk (a body that is not server-sent events, or only malformed ones): an empty
            # completion would pass for the model's answer.
            self.rec.upstream_error = "the upstream's stream had no readable chunk"
            self.rec.action = "error"
            self.reply = 502, _error_body("the upstream's response could not be read"), {}
        elif self.assembler is not None:
            obj = self.assembler.build(self.chunk_base)
            if self.cfg.policy == "flag":
                obj["cotscope_guard"] = self._verdict()
            self.reply = 200, json.dumps(obj).encode(), self._verdict_header()
        else:
            if self.cfg.policy == "flag":
                self.out.put_nowait(sse_event(self.chunk_base | {"choices": [], "cotscope_guard": self._verdict()}))
            self.out.put_nowait(DONE)
        self.out.put_nowait(None)
        self.finished = True

    def _fail_upstream(self, msg: str) -> None:
        """The upstream failed mid-stream: release what passed, then an error event, then end."""
        self.rec.upstream_error = msg
        self.rec.action = "error"
        if self.finished or self.stopped:
            return
        for t in list(self.inflight.values()):
            t.cancel()
        self._release()
        err = {"error": {"message": f"upstream failed: {msg}", "type": "upstream_error", "code": 502}}
        if self.assembler is not None:
            self.rec.released = {"reasoning": 0, "answer": 0}  # the client gets the error, none of the text
            self.reply = 502, json.dumps(err).encode(), {}
        else:
            self.out.put_nowait(sse_event(err))
        self.out.put_nowait(None)
        self.finished = True

    # -- streaming -------------------------------------------------------------------------------------
    def _on_chunk(self, line: str) -> None:
        data = line[5:].lstrip(" ")
        try:
            obj, d = parse_chunk(data)
        except MalformedEvent as e:
            self.rec.malformed_chunks += 1
            if len(self.rec.malformed_examples) < 5:
                self.rec.malformed_examples.append(f"{e}: {data[:200]!r}")
            return
        if self.chunk_base["id"] == "chatcmpl-guard" and isinstance(obj.get("id"), str):
            self.chunk_base = self.chunk_base | {"id": obj["id"], "created": obj.get("created", 0),
                                                 "model": obj.get("model", self.cfg.upstream_model)}
        if isinstance(obj.get("usage"), dict):
            self.rec.usage = obj["usage"]
        if d.finish_reason is not None:
            self.rec.finish_reason = d.finish_reason
        r_before = len(self.checkers["reasoning"].text)
        a_before = len(self.checkers["answer"].text)
        t_before = len(self.checkers["tools"].text)
        self._feed("reasoning", d.reasoning)
        for field, text in self.splitter.feed(d.content):
            self._feed(field, text)
        self._feed_tools(d.tool_calls)
        ev = _Event(raw=(line + "\n\n").encode(), need_reasoning=None, need_answer=None,
                    text_reasoning=len(self.checkers["reasoning"].text) - r_before,
                    text_answer=len(self.checkers["answer"].text) - a_before,
                    obj=obj if self.assembler is not None else None,
                    text_tools=len(self.checkers["tools"].text) - t_before)
        self.events.append(ev)
        self.unresolved.append(ev)
        if not self.splitter.pending:
            self._resolve()
        if d.opaque:
            self.rec.opaque_blocks += d.opaque
            if self.cfg.opaque_reasoning == "block" and self.rec.stop_field is None:
                self.rec.stop_field = "reasoning"
                self.rec.stop_offset = len(self.checkers["reasoning"].text)
                self.rec.reason = f"{d.opaque} opaque reasoning block(s) the monitor cannot read"
                if self.cfg.policy == "block":
                    self._stop()
                    return
        self._schedule()
        self._release()

    def _resolve(self) -> None:
        r = len(self.checkers["reasoning"].text)
        a = len(self.checkers["answer"].text)
        t = len(self.checkers["tools"].text)
        for ev in self.unresolved:
            ev.need_reasoning, ev.need_answer, ev.need_tools = r, a, t
        self.unresolved.clear()

    async def _pump_stream(self, resp: aiohttp.ClientResponse) -> None:
        lines = LineSplitter(MAX_EVENT_BYTES)
        complete = False
        try:
            async for data in resp.content.iter_any():
                if self._on_lines(lines.feed(data), lines):
                    break
            else:
                self._on_lines(lines.close(), lines)
            if self.stopped:
                return
            # Before the stream is finished: once it is, the request's teardown cancels this task, and a
            # connection whose terminator was not read cannot go back to the pool.
            complete = await _read_tail(resp)
            for field, text in self.splitter.flush():
                self._feed(field, text)
            self._resolve()
            self.upstream_done = True
            self.rec.reasoning_closed = not self.splitter.in_reasoning
            self._schedule()
            self._maybe_finish()
        except UPSTREAM_ERRORS as e:
            self._fail_upstream(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
        finally:
            # Closing an unfinished response closes its connection: the upstream sees the client go away.
            # A finished one goes back to the pool for the next request.
            if complete and not self.stopped:
                resp.release()
            else:
                resp.close()

    def _on_lines(self, lines: list[str], splitter: LineSplitter) -> bool:
        """Read the event lines of one piece of the upstream's body; whether the stream is over (``[DONE]``, or a
        check stopped it). Lines too long to keep count as malformed."""
        done = False
        for line in lines:
            if not line.startswith("data:"):
                continue  # blank separators, comments, event:/id: lines
            if line[5:].strip() == "[DONE]":
                done = True
                break
            self._on_chunk(line)
            if self.stopped:
                return True
        for n in splitter.dropped:
            self.rec.malformed_chunks += 1
            if len(self.rec.malformed_examples) < 5:
                self.rec.malformed_examples.append(f"an event line of {n:,} bytes")
        splitter.dropped.clear()
        return done

    async def stream(self, client: aiohttp.ClientSession,
                     headers: dict[str, str]) -> tuple[int, AsyncIterator[bytes] | bytes]:
        """Open the upstream stream; the status and, on 200, the iterator of bytes for the client.

        A non-200 upstream answer (or a failure to connect) returns the status and the error body.
        """
        got = await self._open(client, headers, self.body | {"model": self.cfg.upstream_model})
        if not isinstance(got, aiohttp.ClientResponse):
            return got
        if _is_json(got):
            # An upstream that ignores ``stream`` answered one JSON body: checked whole (as ``collect`` does),
            # then sent to the client as a stream of one event.
            status, out, _ = await self._read_whole(got)
            return (200, _as_events(out)) if status == 200 else (status, out)
        self.pump = asyncio.create_task(self._pump_stream(got), name="guard-pump")
        return 200, self._drain()

    async def _open(self, client: aiohttp.ClientSession, headers: dict[str, str],
                    body: dict[str, Any]) -> aiohttp.ClientResponse | tuple[int, bytes]:
        """Send ``body`` upstream as a streamed request: the open 200 response, else the status and error body."""
        try:
            resp = await client.post(f"{self.cfg.upstream}/chat/completions", json=body, headers=headers)
        except UPSTREAM_ERRORS as e:
            self.rec.upstream_error = f"{type(e).__name__}: {e}"
            self.rec.action = "error"
            self.rec.latency_s = time.monotonic() - self.t0
            return 502, _error_body(f"upstream unreachable: {type(e).__name__}")
        self.rec.upstream_status = resp.status
        if resp.status != 200:
            try:
                data = await resp.read()
            except UPSTREAM_ERRORS:
                data = _error_body(f"upstream answered {resp.status}")
            finally:
                resp.release()
            self.rec.upstream_error = f"upstream answered {resp.status}"
            self.rec.action = "error"
            self.rec.latency_s = time.monotonic() - self.t0
            return resp.status, data
        return resp

    async def _drain(self) -> AsyncIterator[bytes]:
        try:
            while True:
                item = await self.out.get()
                if item is None:
                    return
                yield item
        finally:
            if not self.finished:
                self.rec.client_disconnected = True
            await self.cancel()

    async def cancel(self) -> None:
        """Cancel and await every task of this request (idempotent)."""
        tasks = [t for t in [self.pump, *self.inflight.values()] if t is not None and not t.done()]
        for t in tasks:
            # A task already cancelled may be closing the upstream response in its ``finally``; a second
            # cancel would interrupt that close and leave the upstream connection open.
            if not t.cancelling():
                t.cancel()
        if tasks:
            # asyncio.wait, not gather: when the caller is itself cancelled (the client left), gather would
            # cancel the tasks a second time, and a second cancel interrupts httpcore's close of the upstream
            # connection (its shield does not hold against a plain task.cancel()), leaving it open.
            await asyncio.wait(tasks)
        self.inflight.clear()
        # A client still reading (the server shutting down cancelled this request) gets the end of its stream.
        self.out.put_nowait(None)

    # -- not streaming ---------------------------------------------------------------------------------
    async def collect(self, client: aiohttp.ClientSession,
                      headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
        """Answer a non-streaming request from an upstream stream, so that a flag can cut the generation.

        The request goes upstream with ``stream: true`` (and ``stream_options.include_usage`` unless the client
        set ``stream_options``) and is read, checked, released and cut as :meth:`stream` does; the released
        events are assembled into one ``chat.completion``. Under ``block`` a flag closes the upstream
        connection at once and the client gets the refusal (``finish_reason: "content_filter"``). An upstream
        that ignores ``stream`` and answers JSON is read as a whole response (:meth:`complete`'s path).

        Returns:
            The status, the body and the extra headers (``X-Cotscope-Guard``) of the client's response.
        """
        body = self.body | {"model": self.cfg.upstream_model, "stream": True}
        if "stream_options" not in self.body:
            body["stream_options"] = {"include_usage": True}
        got = await self._open(client, headers, body)
        if not isinstance(got, aiohttp.ClientResponse):
            return got[0], got[1], {}
        if _is_json(got):
            return await self._read_whole(got)
        self.assembler = CompletionAssembler()
        self.pump = asyncio.create_task(self._pump_stream(got), name="guard-pump")
        try:
            while await self.out.get() is not None:
                pass
        finally:
            if not self.finished:
                self.rec.client_disconnected = True
            await self.cancel()
        if self.reply is None:  # cancelled from outside (the server shutting down) before the upstream ended
            return 503, _error_body("the guard stopped before the upstream's response ended"), {}
        return self.reply

    async def complete(self, client: aiohttp.ClientSession,
                       headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
        """Forward a non-streaming request and check the whole response before returning it.

        The upstream generates the whole response (there is no stream to cut); the checks read it in the
        same windows as a stream, and ``block`` replaces a flagged response with the refusal. This is the
        path of ``non_stream_upstream="whole"``, for upstreams that cannot stream.
        """
        self.rec.upstream_stream = False
        body = self.body | {"model": self.cfg.upstream_model}
        try:
            async with client.post(f"{self.cfg.upstream}/chat/completions", json=body, headers=headers) as resp:
                status, data = resp.status, await resp.read()
        except UPSTREAM_ERRORS as e:
            self.rec.upstream_error = f"{type(e).__name__}: {e}"
            self.rec.action = "error"
            return 502, _error_body(f"upstream unreachable: {type(e).__name__}"), {}
        self.rec.upstream_status = status
        if status != 200:
            self.rec.upstream_error = f"upstream answered {status}"
            self.rec.action = "error"
            return status, data, {}
        return await self._check_whole(data)

    async def _read_whole(self, resp: aiohttp.ClientResponse) -> tuple[int, bytes, dict[str, str]]:
        """Read an upstream's JSON answer to a streamed request (it ignored ``stream``) and check it whole."""
        self.rec.upstream_stream = False
        try:
            data = await resp.read()
        except UPSTREAM_ERRORS as e:
            self.rec.upstream_error = f"{type(e).__name__}: {e}"
            self.rec.action = "error"
            return 502, _error_body(f"upstream failed: {type(e).__name__}"), {}
        finally:
            resp.release()
        return await self._check_whole(data)

    async def _check_whole(self, data: bytes) -> tuple[int, bytes, dict[str, str]]:
        """Check one whole upstream response (``data``, a ``chat.completion``) in windows, as a stream is."""
        try:
            obj = json.loads(data)
            msg = obj["choices"][0]["message"]
            if not isinstance(msg, dict):
                raise TypeError("message is not an object")
        except (ValueError, KeyError, IndexError, TypeError) as e:
            self.rec.upstream_error = f"unreadable upstream response: {type(e).__name__}: {e}"
            self.rec.action = "error"
            return 502, _error_body("the upstream's response could not be read"), {}
        if isinstance(obj.get("usage"), dict):
            self.rec.usage = obj["usage"]
        reasoning = "".join(msg[k] for k in ("reasoning_content", "reasoning") if isinstance(msg.get(k), str))
        self._feed("reasoning", reasoning)
        content = msg.get("content") if isinstance(msg.get("content"), str) else ""
        for field, text in [*self.splitter.feed(content or ""), *self.splitter.flush()]:
            self._feed(field, text)
        calls = msg.get("tool_calls")
        try:
            # A whole message lists its calls in order; their position is their index.
            self._feed_tools(tool_call_pieces([{**c, "index": i} if isinstance(c, dict) else c
                                               for i, c in enumerate(calls)] if isinstance(calls, list) else calls))
        except MalformedEvent as e:
            self.rec.upstream_error = f"unreadable upstream response: {e}"
            self.rec.action = "error"
            return 502, _error_body("the upstream's response could not be read"), {}
        self.rec.reasoning_closed = not self.splitter.in_reasoning
        self.rec.opaque_blocks = sum(count_opaque(msg.get(k)) for k in OPAQUE_KEYS)
        self.rec.finish_reason = obj["choices"][0].get("finish_reason")
        self.upstream_done = True
        if self.rec.opaque_blocks and self.cfg.opaque_reasoning == "block":
            self.rec.stop_field, self.rec.stop_offset = "reasoning", len(reasoning)
            self.rec.reason = f"{self.rec.opaque_blocks} opaque reasoning block(s) the monitor cannot read"
        for fname, ch in self._watched():
            while self.rec.stop_field is None and ch.due(final=True):
                stopped, failed = await self._score(fname, ch.request())
                if stopped:
                    self._flagged(fname, ch, failed)
        self.finished = True
        flagged = self.rec.stop_field is not None
        extra = self._verdict_header()
        if self.cfg.policy == "block" and flagged:
            # The refusal's choice carries no logprobs: the flagged text's tokens must not leave with them.
            obj["choices"][0] = obj["choices"][0] | self._refusal_choice()
            self.rec.finish_reason = "content_filter"
            obj["cotscope_guard"] = self._verdict()
            return 200, json.dumps(obj).encode(), extra
        self.rec.released = {"reasoning": len(self.checkers["reasoning"].text),
                             "answer": len(self.checkers["answer"].text)}
        if self.checkers["tools"].text:
            self.rec.released["tools"] = len(self.checkers["tools"].text)
        if self.cfg.policy == "flag":
            obj["cotscope_guard"] = self._verdict()
            return 200, json.dumps(obj).encode(), extra
        return 200, data, extra

    # -- the record ------------------------------------------------------------------------------------
    def finalize(self) -> GuardRecord:
        """Fill the record from the checkers (call once, when the request is over)."""
        r, a, t = self.checkers["reasoning"], self.checkers["answer"], self.checkers["tools"]
        self.rec.reasoning, self.rec.answer, self.rec.tool_calls = r.text, a.text, t.text
        if self.rec.stop_field == "reasoning" and self.stopped:
            self.rec.reasoning_closed = False
        watched = [c for _, c in self._watched()]
        self.rec.checks = sum(c.checks for c in watched)
        scored = [c for c in watched if c.checks > c.parse_errors or c.result is not None]
        best = max(scored, key=lambda c: c.suspicion, default=None)
        if best is not None and best.result is not None:
            self.rec.suspicion = best.suspicion
            # Tool-call text is not a field of the trace: its evidence keeps the quote, without offsets.
            self.rec.evidence = best.evidence if best is not t else [
                e.model_copy(update={"start": None, "end": None, "verified": False}) for e in best.evidence]
            if self.rec.reason is None:
                self.rec.reason = best.result.reason
        flagged_by_monitor = any(c.stopped and c.suspicion > self.cfg.threshold for c in watched)
        opaque_flag = self.rec.opaque_blocks > 0 and self.cfg.opaque_reasoning == "block"
        if best is not None and best.result is not None:
            self.rec.flagged = flagged_by_monitor or opaque_flag
        elif opaque_flag:
            self.rec.flagged = True
        if self.rec.action != "error":
            acted = self.rec.stop_field is not None
            self.rec.action = ("blocked" if acted and self.cfg.policy == "block" else
                               "flagged" if acted and self.cfg.policy == "flag" else
                               "logged" if acted else "passed")
        if self.rec.latency_s is None:
            self.rec.latency_s = time.monotonic() - self.t0
        return self.rec


async def _as_events(completion: bytes) -> AsyncIterator[bytes]:
    """A checked ``chat.completion`` as the events of a stream: one delta per choice, the usage, ``[DONE]``."""
    obj = json.loads(completion)
    base = {k: obj[k] for k in ("id", "created", "model", "system_fingerprint") if k in obj}
    base["object"] = "chat.completion.chunk"
    choices = []
    for i, ch in enumerate(obj.get("choices") or []):
        msg = dict(ch.get("message") or {})
        if isinstance(msg.get("tool_calls"), list):
            msg["tool_calls"] = [tc | {"index": j} for j, tc in enumerate(msg["tool_calls"]) if isinstance(tc, dict)]
        out = {"index": ch.get("index", i), "delta": msg, "finish_reason": ch.get("finish_reason")}
        if ch.get("logprobs") is not None:
            out["logprobs"] = ch["logprobs"]
        choices.append(out)
    extra = {k: obj[k] for k in ("cotscope_guard",) if k in obj}
    yield sse_event(base | {"choices": choices} | extra)
    if isinstance(obj.get("usage"), dict):
        yield sse_event(base | {"choices": [], "usage": obj["usage"]})
    yield DONE


async def _read_tail(resp: aiohttp.ClientResponse) -> bool:
    """Read what follows ``[DONE]`` (the chunked terminator), briefly and boundedly; whether the body ended."""
    n = 0
    try:
        async with asyncio.timeout(TAIL_S):
            while not resp.content.at_eof() and n <= TAIL_BYTES:
                n += len(await resp.content.readany())
    except UPSTREAM_ERRORS:
        return False
    return resp.content.at_eof()


def _is_json(resp: aiohttp.ClientResponse) -> bool:
    """Whether the upstream answered with a JSON body (not server-sent events)."""
    kind = resp.headers.get("content-type", "").split(";")[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json")


def _error_body(message: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": "upstream_error"}}).encode()
