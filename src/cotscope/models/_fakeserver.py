"""A tiny OpenAI-compatible server for tests and benchmarks, with fault injection.

It answers ``/v1/chat/completions`` and ``/v1/completions`` instantly with text derived from the request
(``<think>`` reasoning, then an answer naming the question and seed), honours ``stop`` strings, and at a
set rate injects one of: ``429`` (with ``Retry-After``), ``500``, ``timeout`` (hangs past the client's
timeout), ``drop`` (closes the connection without a reply) and ``truncate`` (a 200 whose JSON body is cut
off). It is a bare asyncio HTTP/1.1 server with keep-alive so that, run in its own process, it is not the
bottleneck of a client benchmark.

Chat templates, for the prefill checks: with ``FaultConfig.chat_template`` (a Jinja chat template) a chat
request is rendered the way vLLM renders it, through transformers' ``render_jinja_template`` with the
request's ``continue_final_message``/``add_generation_prompt``/``chat_template_kwargs`` (a template that
deletes part of a continued message gives transformers' error as an HTTP 400, as vLLM does), and the fake
model continues the rendered text like a completion. ``FaultConfig.ignore_continue`` plays a server
without the extension (Ollama, llama.cpp's server): the prefill is ignored and the model starts afresh.
Every prompt text the fake model continued (completions and templated chats) is kept in
``ServerStats.prompts``.

Streaming: a chat request with ``"stream": true`` is answered as server-sent events, one token (a word with
its trailing space) per chunk every ``FaultConfig.pace_s`` seconds, the reasoning as ``reasoning_content``
deltas (``reasoning_field``) or as ``<think>`` text inside ``content``, then ``finish_reason`` and, when
``stream_options.include_usage`` asks, a usage chunk. ``FaultConfig.replies`` maps a question to the
``(reasoning, answer)`` to stream instead of the derived text. ``FaultConfig.stream_fault`` breaks streams:
``hang`` (stops sending and waits), ``die`` (closes the connection without the end of the stream),
``malformed`` (interleaves undecodable and ill-shaped events) after ``stream_fault_at`` tokens;
``first_delta_extra`` adds keys to the first token's delta (an encrypted reasoning block, say). Each request's
``Authorization`` header is kept in ``ServerStats.authorization``. Every stream
is recorded in ``ServerStats.streams`` (:class:`StreamRecord`), including whether the client abandoned it.

Run: ``python -m cotscope.models._fakeserver --port 8000 [--fault-rate 0.3] [--faults 429,500]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FAULT_KINDS = ("429", "500", "timeout", "drop", "truncate")


@dataclass
class FaultConfig:
    """Which faults to inject and how often."""

    rate: float = 0.0
    kinds: tuple[str, ...] = FAULT_KINDS
    seed: int = 0
    retry_after: str = "0.05"
    hang_s: float = 5.0
    reasoning_field: bool = False
    delay_s: float = 0.0
    chat_template: str | None = None
    ignore_continue: bool = False
    pace_s: float = 0.0
    replies: dict[str, tuple[str, str]] = field(default_factory=dict)
    stream_fault: str | None = None
    stream_fault_at: int = 5
    first_delta_extra: dict[str, Any] = field(default_factory=dict)


#: How a streamed reply is cut into tokens: a word with the whitespace after it (or a run of whitespace).
_TOKEN = re.compile(r"\S+\s*|\s+")

STREAM_FAULTS = ("hang", "die", "malformed")


@dataclass
class StreamRecord:
    """One streamed reply: the question, tokens sent of the total, and how it ended.

    ``abandoned`` is true when the client closed the connection before the stream's end (it went away, as a
    guard that cuts a generation does); ``completed`` when the server sent everything.
    """

    question: str
    total_tokens: int
    sent_tokens: int = 0
    abandoned: bool = False
    completed: bool = False
    started: float = 0.0
    ended: float = 0.0


@dataclass
class ServerStats:
    """What the server did: replies and faults by kind."""

    counts: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    prompts: list[str] = field(default_factory=list)
    streams: list[StreamRecord] = field(default_factory=list)
    authorization: list[str | None] = field(default_factory=list)

    def add(self, kind: str) -> None:
        with self.lock:
            self.counts[kind] += 1


def _question(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            return str(m.get("content") or "")
    return ""


def _continuation(closed: bool, question: str, seed: Any) -> str:
    answer = f"answer to {question} (seed {seed})"
    if closed:
        return answer
    return f"more thought about {question}\n</think>\n\n{answer}"


def _cut(text: str, stops: Any) -> tuple[str, str]:
    if isinstance(stops, str):
        stops = [stops]
    best = len(text)
    for s in stops or []:
        i = text.find(s)
        if 0 <= i < best:
            best = i
    return (text[:best], "stop") if best < len(text) else (text, "stop")


class TemplateRefused(ValueError):
    """The chat template deleted part of the message to continue (transformers' ValueError)."""


def render_template(template: str, body: dict[str, Any]) -> str:
    """The prompt text vLLM would build for a chat request, by transformers' Jinja renderer."""
    from transformers.utils.chat_template_utils import render_jinja_template

    cont = bool(body.get("continue_final_message"))
    add = bool(body.get("add_generation_prompt", not cont))
    try:
        # Annotated as str, but it returns (renderings, generation indices).
        result: Any = render_jinja_template(
            [body.get("messages") or []], chat_template=template, continue_final_message=cont,
            add_generation_prompt=add, **(body.get("chat_template_kwargs") or {}),
        )
    except ValueError as e:
        raise TemplateRefused(str(e)) from None
    return str(result[0][0])


def _chat(body: dict[str, Any], cfg: FaultConfig, stats: ServerStats | None = None) -> dict[str, Any]:
    messages = body.get("messages") or []
    q = _question(messages)
    seed = body.get("seed")
    reasoning: str | None = None
    if cfg.chat_template is not None and not cfg.ignore_continue:
        prompt = render_template(cfg.chat_template, body)
        if stats is not None:
            with stats.lock:
                stats.prompts.append(prompt)
        text = _continuation(_closed(prompt), q, seed)
    elif (messages and messages[-1].get("role") == "assistant" and body.get("continue_final_message")
          and not cfg.ignore_continue):
        prefill = str(messages[-1].get("content") or "")
        text = _continuation("</think>" in prefill or "<think>" not in prefill, q, seed)
    elif q in cfg.replies:
        reasoning, text = cfg.replies[q]
        if not (cfg.reasoning_field or "reasoning-field" in str(body.get("model"))):
            text, reasoning = f"<think>\n{reasoning}\n</think>\n\n{text}", None
    elif cfg.reasoning_field or "reasoning-field" in str(body.get("model")):
        reasoning, text = f"thinking about {q}", f"answer to {q} (seed {seed})"
    else:
        text = f"<think>\nthinking about {q}\n</think>\n\nanswer to {q} (seed {seed})"
    text, finish = _cut(text, body.get("stop"))
    msg: dict[str, Any] = {"role": "assistant", "content": text}
    if reasoning is not None:
        msg["reasoning_content"] = reasoning
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": body.get("model", "fake"),
        "choices": [{"index": 0, "message": msg, "finish_reason": finish}],
        "usage": {"prompt_tokens": 10, "completion_tokens": len(text.split()), "total_tokens": 10 + len(text.split())},
    }


def _closed(prompt: str) -> bool:
    return prompt.rfind("</think>") > prompt.rfind("<think>") or "<think>" not in prompt


def _completion(body: dict[str, Any], stats: ServerStats | None = None) -> dict[str, Any]:
    prompt = str(body.get("prompt") or "")
    if stats is not None:
        with stats.lock:
            stats.prompts.append(prompt)
    tail = prompt[-40:].replace("\n", " ")
    text, finish = _cut(_continuation(_closed(prompt), tail, body.get("seed")), body.get("stop"))
    return {
        "id": "cmpl-fake",
        "object": "text_completion",
        "created": 0,
        "model": body.get("model", "fake"),
        "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}],
        "usage": {"prompt_tokens": 10, "completion_tokens": len(text.split()), "total_tokens": 10 + len(text.split())},
    }


class FakeOpenAIServer:
    """The server; :meth:`start` binds 127.0.0.1 on ``port`` (0 picks a free one)."""

    def __init__(self, port: int = 0, faults: FaultConfig | None = None) -> None:
        self.port = port
        self.faults = faults or FaultConfig()
        self.stats = ServerStats()
        self._rng = random.Random(self.faults.seed)
        self._server: asyncio.base_events.Server | None = None

    @property
    def base_url(self) -> str:
        """The ``/v1`` URL clients use."""
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> None:
        """Bind and start serving."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.close()

    def _pick_fault(self, path: str) -> str | None:
        if not path.startswith("/v1/") or path == "/v1/models" or self.faults.rate <= 0:
            return None
        with self.stats.lock:
            if self._rng.random() >= self.faults.rate:
                return None
            return self._rng.choice(self.faults.kinds)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for ln in lines[1:]:
                    if ":" in ln:
                        k, v = ln.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                n = int(headers.get("content-length", "0"))
                raw = await reader.readexactly(n) if n else b""
                with self.stats.lock:
                    self.stats.authorization.append(headers.get("authorization"))
                if not await self._respond(method, path.split("?")[0], raw, writer, reader):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _respond(self, method: str, path: str, raw: bytes, writer: asyncio.StreamWriter,
                       reader: asyncio.StreamReader | None = None) -> bool:
        fault = self._pick_fault(path)
        if fault is not None:
            self.stats.add(fault)
        if fault == "drop":
            return False
        if fault == "timeout":
            await asyncio.sleep(self.faults.hang_s)
            return False
        if fault == "429":
            self._send(writer, 429, {"error": {"message": "rate limited", "type": "rate_limit"}},
                       {"Retry-After": self.faults.retry_after})
            return True
        if fault == "500":
            self._send(writer, 500, {"error": {"message": "injected server error", "type": "server_error"}})
            return True
        if method == "GET" and path in ("/health", "/v1/health"):
            self._send(writer, 200, {})
            return True
        if method == "GET" and path == "/v1/models":
            self._send(writer, 200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})
            return True
        if self.faults.delay_s:
            await asyncio.sleep(self.faults.delay_s)
        if method != "POST" or path not in ("/v1/chat/completions", "/v1/completions"):
            self._send(writer, 404, {"error": {"message": f"no route {method} {path}"}})
            return True
        try:
            body = json.loads(raw)
        except ValueError:
            self._send(writer, 400, {"error": {"message": "bad json"}})
            return True
        try:
            payload = (_chat(body, self.faults, self.stats) if path.endswith("chat/completions")
                       else _completion(body, self.stats))
            if body.get("stream") and path.endswith("chat/completions"):
                return await self._stream(payload, body, reader, writer)
        except TemplateRefused as e:
            # vLLM answers a template error of the request as a 400 with the error's text.
            self.stats.add("template_refused")
            self._send(writer, 400, {"error": {"message": str(e), "type": "BadRequestError", "code": 400}})
            return True
        data = json.dumps(payload).encode()
        if fault == "truncate":
            data = data[: len(data) // 2]
        else:
            self.stats.add("ok")
        self._send_raw(writer, 200, data)
        return True

    async def _stream(self, payload: dict[str, Any], body: dict[str, Any], reader: asyncio.StreamReader | None,
                      writer: asyncio.StreamWriter) -> bool:
        """Send ``payload``'s message as server-sent events (chunked), one token per event at the set pace.

        Returns whether the connection can be kept alive. A concurrent read of the request side sees the
        client close its connection: the stream stops there and is recorded as abandoned.
        """
        msg = payload["choices"][0]["message"]
        tokens = [("reasoning_content", t) for t in _TOKEN.findall(msg.get("reasoning_content") or "")]
        tokens += [("content", t) for t in _TOKEN.findall(msg.get("content") or "")]
        rec = StreamRecord(question=_question(body.get("messages") or []), total_tokens=len(tokens),
                           started=time.monotonic())
        with self.stats.lock:
            self.stats.streams.append(rec)
        self.stats.add("stream")
        gone = asyncio.ensure_future(reader.read(1)) if reader is not None else None
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": payload["model"]}
        fault = self.faults.stream_fault

        def event(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
            obj = base | {"choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
            return b"data: " + json.dumps(obj | extra).encode() + b"\n\n"

        def chunk(data: bytes) -> bytes:
            return f"{len(data):x}\r\n".encode() + data + b"\r\n"

        hdr = ["HTTP/1.1 200 OK", "Content-Type: text/event-stream", "Transfer-Encoding: chunked",
               "Connection: keep-alive"]
        try:
            writer.write(("\r\n".join(hdr) + "\r\n\r\n").encode() + chunk(event({"role": "assistant",
                                                                                 "content": ""})))
            for i, (key, tok) in enumerate(tokens):
                if fault is not None and i == self.faults.stream_fault_at:
                    if fault == "hang":
                        await writer.drain()
                        if gone is not None:
                            await asyncio.wait([gone], timeout=self.faults.hang_s)
                            rec.abandoned = gone.done()
                        else:
                            await asyncio.sleep(self.faults.hang_s)
                        return False
                    if fault == "die":
                        await writer.drain()
                        return False
                    if fault == "malformed":
                        writer.write(chunk(b"data: {not json\n\n") + chunk(b"data: {\"choices\": 7}\n\n")
                                     + chunk(b": a comment line\n\n")
                                     + chunk(b'data: {"choices": [{"index": 0, "delta": {"content": 5}}]}\n\n'))
                if self.faults.pace_s:
                    await writer.drain()
                    if gone is not None:
                        await asyncio.wait([gone], timeout=self.faults.pace_s)
                if gone is not None and gone.done():
                    rec.abandoned = True
                    return False
                writer.write(chunk(event({key: tok} | (self.faults.first_delta_extra if i == 0 else {}))))
                rec.sent_tokens = i + 1
            usage = payload["usage"]
            tail = event({}, payload["choices"][0]["finish_reason"])
            if (body.get("stream_options") or {}).get("include_usage"):
                tail += b"data: " + json.dumps(base | {"choices": [], "usage": usage}).encode() + b"\n\n"
            writer.write(chunk(tail + b"data: [DONE]\n\n") + b"0\r\n\r\n")
            await writer.drain()
            rec.completed = True
            return True
        except (ConnectionError, RuntimeError):
            rec.abandoned = True
            return False
        finally:
            rec.ended = time.monotonic()
            if gone is not None and not gone.done():
                gone.cancel()
            if gone is not None:
                # A reset connection ends the read with an error: retrieve it (the client left, that is all).
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await gone

    def _send(self, writer: asyncio.StreamWriter, status: int, obj: Any, extra: dict[str, str] | None = None) -> None:
        self._send_raw(writer, status, json.dumps(obj).encode(), extra)

    @staticmethod
    def _send_raw(writer: asyncio.StreamWriter, status: int, data: bytes, extra: dict[str, str] | None = None) -> None:
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests",
                  500: "Internal Server Error"}.get(status, "OK")
        hdr = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json", f"Content-Length: {len(data)}",
               "Connection: keep-alive"]
        hdr += [f"{k}: {v}" for k, v in (extra or {}).items()]
        writer.write(("\r\n".join(hdr) + "\r\n\r\n").encode() + data)


@contextmanager
def serve_in_thread(faults: FaultConfig | None = None, port: int = 0) -> Iterator[FakeOpenAIServer]:
    """Run a server on its own event loop in a daemon thread (its loop does not share the client's)."""
    server = FakeOpenAIServer(port, faults)
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        ready.set()
        loop.run_forever()
        # Connections still open (hung "timeout" replies, keep-alive) end here, not at interpreter exit.
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.close()

    t = threading.Thread(target=run, daemon=True, name="fake-openai-server")
    t.start()
    ready.wait(10)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        t.join(5)


def main(argv: list[str] | None = None) -> None:
    """Serve until killed; prints ``READY <port>`` once listening."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--fault-rate", type=float, default=0.0)
    ap.add_argument("--faults", default=",".join(FAULT_KINDS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--retry-after", default="0.05")
    ap.add_argument("--hang", type=float, default=5.0)
    ap.add_argument("--delay", type=float, default=0.0, help="seconds before each completion reply")
    ap.add_argument("--pace", type=float, default=0.0, help="seconds per streamed token")
    ap.add_argument("--reasoning-field", action="store_true", help="reasoning as reasoning_content")
    ap.add_argument("--replies", help="JSON file {question: [reasoning, answer]} of replies to stream")
    a = ap.parse_args(argv)
    faults = FaultConfig(rate=a.fault_rate, kinds=tuple(a.faults.split(",")), seed=a.seed,
                         retry_after=a.retry_after, hang_s=a.hang, delay_s=a.delay, pace_s=a.pace,
                         reasoning_field=a.reasoning_field,
                         replies={q: (r[0], r[1]) for q, r in json.loads(Path(a.replies).read_text()).items()}
                         if a.replies else {})

    async def run() -> None:
        s = FakeOpenAIServer(a.port, faults)
        await s.start()
        print(f"READY {s.port}", flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


if __name__ == "__main__":
    main()
