"""What the guard records per request, and the one task that writes it to the store.

Every request becomes a trace (prompt, the reasoning and answer the upstream produced up to where the guard
stopped reading) and one monitor result keyed ``guard:<monitor>``: the streaming verdict (running maximum of
suspicion over the checked windows, the flag, evidence verified against the trace) with the guard's
decision in ``details``. DuckDB allows one writer, so all writes go through one :class:`RecordWriter` task
(the store calls run in a worker thread, off the event loop, one at a time).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from cotscope.judges import Evidence, verify
from cotscope.traces import Message, ProvenanceSpan, Trace, text_spans

if TYPE_CHECKING:
    from cotscope.store import Store

Action = Literal["passed", "blocked", "flagged", "logged", "error"]


class GuardRecord(BaseModel):
    """One request the guard served.

    Attributes:
        request_id: the guard's id for the request (also the trace id, ``gd-`` + hex).
        prompt: the request's messages.
        reasoning: the reasoning received from the upstream (up to the stop, if any).
        answer: the answer received.
        reasoning_closed: false when the reasoning never ended (stopped inside it, or cut off).
        stream: whether the client asked for a stream.
        action: what the guard did: ``passed``, ``blocked``, ``flagged`` (policy flag), ``logged`` (policy
            log, flagged), ``error`` (upstream failure).
        stop_field, stop_offset: where the flagged check ended (characters of that field received);
            ``None`` when nothing was flagged.
        released: characters of reasoning and answer the client received.
        suspicion: running maximum over the checks (``None`` when no check was scored).
        flagged: the monitor's verdict over the request (``None`` when no check was scored).
        evidence: the most suspicious window's evidence, offsets into the whole field.
        reason: the monitor's reason for that window, or why the guard acted.
        checks, windows: monitor checks and windows scored.
        monitor_errors: checks that failed (monitor error, timeout, unparsable output).
        fail_mode: ``open`` or ``closed``, and ``fail_applied`` whether a failed check decided anything.
        opaque_blocks: reasoning blocks the monitor could not read, and ``opaque_policy`` what was done.
        malformed_chunks: upstream events dropped as unreadable.
        upstream_error: why the upstream request failed, if it did.
        client_disconnected: the client went away before the end.
        latency_s: request arrival to the last byte sent; ``ttft_s`` to the first text released.
        finish_reason: the finish reason the client received.
        usage: the upstream's usage object, when it sent one.
        config: the guard settings that shaped the verdict.
    """

    request_id: str = Field(default_factory=lambda: "gd-" + uuid.uuid4().hex[:24])
    prompt: list[dict[str, Any]] = Field(default_factory=list)
    model: str | None = None
    reasoning: str = ""
    answer: str = ""
    reasoning_closed: bool = True
    stream: bool = True
    action: Action = "passed"
    stop_field: str | None = None
    stop_offset: int | None = None
    released: dict[str, int] = Field(default_factory=lambda: {"reasoning": 0, "answer": 0})
    suspicion: float | None = None
    flagged: bool | None = None
    evidence: list[Evidence] = Field(default_factory=list)
    reason: str | None = None
    checks: int = 0
    windows: int = 0
    monitor_errors: int = 0
    monitor_error_examples: list[str] = Field(default_factory=list)
    fail_mode: str = "open"
    fail_applied: bool = False
    opaque_blocks: int = 0
    opaque_policy: str = "pass"
    malformed_chunks: int = 0
    malformed_examples: list[str] = Field(default_factory=list)
    upstream_error: str | None = None
    upstream_status: int | None = None
    client_disconnected: bool = False
    latency_s: float | None = None
    ttft_s: float | None = None
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    config: dict[str, Any] = Field(default_factory=dict)

    def guard_metadata(self) -> dict[str, Any]:
        """The guard's decision as stored in ``trace.metadata['guard']`` and the result's ``details``."""
        return self.model_dump(exclude={"prompt", "reasoning", "answer", "evidence", "model", "config",
                                        "reasoning_closed"})

    def to_trace(self) -> Trace:
        """The request as a trace; the monitor's evidence is re-verified against it."""
        msgs = [_message(m) for m in self.prompt]
        meta: dict[str, Any] = {"guard": self.guard_metadata()}
        if self.finish_reason:
            # Where the generation stopped, read as for any trace: "length" is the token cap, "content_filter"
            # the guard's own cut (an incomplete trace, never a cap hit).
            meta["finish_reason"] = self.finish_reason
        cap = self.finish_reason == "length"
        return Trace(id=self.request_id, prompt=msgs, reasoning=self.reasoning, answer=self.answer,
                     reasoning_closed=self.reasoning_closed, model=self.model, strategy="guard", metadata=meta,
                     reasoning_provenance=[ProvenanceSpan(**d) for d in text_spans(
                         self.reasoning, closed=self.reasoning_closed or not cap)])

    def result_row(self, trace: Trace, evaluator: str, config_hash: str, run_id: str) -> dict[str, Any]:
        """The store row of the guard's verdict (the shape of ``cotscope.pipeline.result_row``)."""
        evidence = [verify(e, trace) for e in self.evidence]
        parse_error = None
        if self.flagged is None:
            parse_error = ("no check was scored: " + "; ".join(self.monitor_error_examples[:3])
                           if self.monitor_errors else "no check was scored")
        return {
            "trace_id": trace.id, "evaluator": evaluator, "config_hash": config_hash, "part": "both",
            "kind": "monitor", "label": self.flagged, "score": self.suspicion, "parse_error": parse_error,
            "raw": None, "reason": self.reason,
            "evidence": [e.model_dump(exclude_none=True) for e in evidence],
            "details": self.guard_metadata(), "run_id": run_id,
        }


def _message(m: dict[str, Any]) -> Message:
    """A request message as a trace message; list content (text parts) is joined, other parts dropped."""
    content = m.get("content")
    if isinstance(content, list):
        content = "".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
    extra = {k: v for k, v in m.items() if k not in ("role", "content")}
    return Message(role=str(m.get("role") or "user"), content=str(content or ""), **extra)


class RecordWriter:
    """Writes guard records to a store from one task; the guard never waits for the disk.

    Args:
        path: the store file (created when missing).
        evaluator: the result's evaluator name (``guard:<monitor>``).
        label_meaning: what a true label means (the monitor's meaning).
        config: the evaluator configuration (hashed into the key).
        run_config: what the run row records.
    """

    def __init__(self, path: str | Path, *, evaluator: str, label_meaning: str, config: dict[str, Any],
                 run_config: dict[str, Any]) -> None:
        self.path = Path(path)
        self.evaluator = evaluator
        self.label_meaning = label_meaning
        self.config = config
        self.run_config = run_config
        self.written = 0
        self.failed = 0
        self.errors: list[str] = []
        self._queue: asyncio.Queue[GuardRecord | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._store: Store | None = None
        self._run_id = ""
        self._hash = ""

    async def start(self) -> None:
        """Open the store, record the evaluator and the run, start the writer task.

        Raises:
            OSError: the store cannot be opened (another process holds it, or a bad path).
        """
        from cotscope.store import Store, config_hash

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._store = store = await asyncio.to_thread(Store, self.path)
        self._hash = config_hash(self.config)

        def _begin() -> str:
            store.add_evaluator(self.evaluator, self._hash, kind="monitor", label_meaning=self.label_meaning,
                                config=self.config)
            return store.start_run("guard", self.evaluator, self.run_config)

        self._run_id = await asyncio.to_thread(_begin)
        self._task = asyncio.create_task(self._work(), name="guard-record-writer")

    def submit(self, record: GuardRecord) -> None:
        """Queue a record (never blocks)."""
        self._queue.put_nowait(record)

    def _write(self, batch: list[GuardRecord]) -> None:
        assert self._store is not None
        traces = [r.to_trace() for r in batch]
        rows = [r.result_row(t, self.evaluator, self._hash, self._run_id) for r, t in zip(batch, traces,
                                                                                          strict=True)]
        self._store.add_traces(traces, run_id=self._run_id)
        self._store.add_results(rows)

    async def _work(self) -> None:
        done = False
        while not done:
            first = await self._queue.get()
            batch = [] if first is None else [first]
            done = first is None
            while not self._queue.empty() and len(batch) < 512:
                nxt = self._queue.get_nowait()
                if nxt is None:
                    done = True
                    break
                batch.append(nxt)
            if not batch:
                continue
            try:
                await asyncio.to_thread(self._write, batch)
                self.written += len(batch)
            except Exception as e:  # a failed write is reported; the server keeps serving
                self.failed += len(batch)
                if len(self.errors) < 20:
                    self.errors.append(f"{type(e).__name__}: {e}")

    async def aclose(self) -> None:
        """Write what is queued, finish the run, close the store."""
        if self._task is not None:
            self._queue.put_nowait(None)
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._store is not None:
            store, self._store = self._store, None

            def _end() -> None:
                store.finish_run(self._run_id, "done", {"written": self.written, "failed": self.failed,
                                                        "errors": self.errors})
                store.close()

            await asyncio.to_thread(_end)
