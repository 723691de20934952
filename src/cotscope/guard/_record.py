"""What the guard records per request, and the one task that writes it to the store.

Every request becomes a trace (prompt, the reasoning and answer the upstream produced up to where the guard
stopped reading) and one monitor result keyed ``guard:<monitor>``: the streaming verdict (running maximum of
suspicion over the checked windows, the flag, evidence verified against the trace) with the guard's
decision in ``details``. All writes go through one :class:`RecordWriter` task (the store calls run in a worker
thread, off the event loop, one at a time), which opens the store only for the moment of each flush, so other
processes can read it while the guard serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, Field

from cotscope.judges import Evidence, verify
from cotscope.traces import Message, ProvenanceSpan, Trace, text_spans

if TYPE_CHECKING:
    from cotscope.store import Store

Action = Literal["passed", "blocked", "flagged", "logged", "error"]
T = TypeVar("T")


class GuardRecord(BaseModel):
    """One request the guard served.

    Attributes:
        request_id: the guard's id for the request (also the trace id, ``gd-`` + hex).
        prompt: the request's messages.
        reasoning: the reasoning received from the upstream (up to the stop, if any).
        answer: the answer received.
        tool_calls: the tool calls received, as the monitor read them (name, then the arguments; a call per
            line); empty when there were none.
        reasoning_closed: false when the reasoning never ended (stopped inside it, or cut off).
        stream: whether the client asked for a stream.
        upstream_stream: whether the guard read the upstream's answer as a stream (a non-streaming request
            under ``non_stream_upstream="stream"`` too); false when it read one whole response (``whole``, or an
            upstream that answered a streamed request with JSON).
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
    tool_calls: str = ""
    reasoning_closed: bool = True
    stream: bool = True
    upstream_stream: bool = True
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
        return scrub(self.model_dump(exclude={"prompt", "reasoning", "answer", "evidence", "model", "config",
                                              "reasoning_closed", "tool_calls"}))

    def to_trace(self) -> Trace:
        """The request as a trace; the monitor's evidence is re-verified against it.

        Text is stored as received except lone surrogates (valid in JSON escapes, not in UTF-8), which become
        U+FFFD one for one, so offsets into the text still hold and the record can be stored.
        """
        msgs = [_message(scrub(m)) for m in self.prompt]
        meta: dict[str, Any] = {"guard": self.guard_metadata()}
        if self.tool_calls:
            meta["tool_calls"] = scrub(self.tool_calls)
        if self.finish_reason:
            # Where the generation stopped, read as for any trace: "length" is the token cap, "content_filter"
            # the guard's own cut (an incomplete trace, never a cap hit).
            meta["finish_reason"] = self.finish_reason
        cap = self.finish_reason == "length"
        return Trace(id=self.request_id, prompt=msgs, reasoning=scrub(self.reasoning), answer=scrub(self.answer),
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
            "raw": None, "reason": scrub(self.reason),
            "evidence": scrub([e.model_dump(exclude_none=True) for e in evidence]),
            "details": self.guard_metadata(), "run_id": run_id,
        }


def scrub(value: Any) -> Any:
    """``value`` with every lone surrogate in its strings (nested in lists and dicts too) replaced by U+FFFD."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in value)
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if isinstance(value, dict):
        return {scrub(k): scrub(v) for k, v in value.items()}
    return value


def _message(m: dict[str, Any]) -> Message:
    """A request message as a trace message; list content (text parts) is joined, other parts dropped."""
    content = m.get("content")
    if isinstance(content, list):
        content = "".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
    extra = {k: v for k, v in m.items() if k not in ("role", "content")}
    return Message(role=str(m.get("role") or "user"), content=str(content or ""), **extra)


class RecordWriter:
    """Writes guard records to a store in batches, holding the file only while it writes.

    DuckDB lets one process open a store file for writing and, meanwhile, no other process open it at all, not
    even read-only. A writer that kept the store open while the guard serves would lock ``cotscope report``,
    ``metrics``, ``validate`` and ``view`` out of the live traffic. So each flush opens the store, writes the
    records queued so far (their traces and verdicts in one transaction) and closes it again. A flush starts
    ``flush_s`` seconds after the oldest queued record arrived, or as soon as ``max_batch`` records are queued.

    When another process holds the file (a ``cotscope judge`` run, a viewer storing a label) the flush is tried
    again with backoff and the records stay queued, so nothing is lost and, since a flush writes nothing until
    the file is open, nothing is written twice. A record that cannot be written for any other reason is counted
    in ``failed`` with its error in ``errors``. At shutdown (:meth:`aclose`) a held store is tried for
    ``give_up_s`` seconds; records still queued then are counted in ``failed`` and ``not_written``. At every
    moment ``received == written + failed + queued``; after :meth:`aclose`, ``queued == 0``.

    Args:
        path: the store file (created when missing).
        evaluator: the result's evaluator name (``guard:<monitor>``).
        label_meaning: what a true label means (the monitor's meaning).
        config: the evaluator configuration (hashed into the key).
        run_config: what the run row records.
        flush_s: the longest a record waits in the queue before a flush starts (readers see it after that).
        max_batch: queued records that start a flush before ``flush_s`` has passed.
        retry_s: the longest wait between two tries at a store another process holds (the backoff's cap).
        give_up_s: how long :meth:`start` and :meth:`aclose` keep trying at a store another process holds.
    """

    def __init__(self, path: str | Path, *, evaluator: str, label_meaning: str, config: dict[str, Any],
                 run_config: dict[str, Any], flush_s: float = 1.0, max_batch: int = 256, retry_s: float = 1.0,
                 give_up_s: float = 10.0) -> None:
        if flush_s < 0 or max_batch < 1 or retry_s <= 0 or give_up_s < 0:
            raise ValueError(f"RecordWriter: flush_s >= 0, max_batch >= 1, retry_s > 0 and give_up_s >= 0 are "
                             f"needed (got {flush_s}, {max_batch}, {retry_s}, {give_up_s})")
        self.path = Path(path)
        self.evaluator = evaluator
        self.label_meaning = label_meaning
        self.config = config
        self.run_config = run_config
        self.flush_s = flush_s
        self.max_batch = max_batch
        self.retry_s = retry_s
        self.give_up_s = give_up_s
        #: Records submitted; ``written + failed + queued`` of them.
        self.received = 0
        #: Records whose trace and verdict are in the store.
        self.written = 0
        #: Records that will never be written (an error, or still queued when shutdown gave up).
        self.failed = 0
        #: Of ``failed``, the records shutdown gave up on because another process held the store.
        self.not_written = 0
        #: Flushes that wrote to the store, and tries that found it held by another process.
        self.flushes = 0
        self.busy_retries = 0
        #: Why records failed, one line each (the first :data:`MAX_ERRORS`; ``errors_dropped`` counts the rest).
        self.errors: list[str] = []
        self.errors_dropped = 0
        self._pending: list[GuardRecord] = []
        self._oldest = 0.0
        self._wake: asyncio.Event | None = None
        self._closing = False
        self._deadline: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._run_id = ""
        self._hash = ""
        self._last_busy = ""  # DuckDB's words the last time the store was held, for the give-up message

    @property
    def queued(self) -> int:
        """Records waiting for a flush."""
        return len(self._pending)

    def stats(self) -> dict[str, Any]:
        """The counts (and errors) as the run row records them at shutdown."""
        return {"received": self.received, "written": self.written, "failed": self.failed,
                "not_written": self.not_written, "queued": self.queued, "flushes": self.flushes,
                "busy_retries": self.busy_retries, "errors": self.errors, "errors_dropped": self.errors_dropped}

    async def start(self) -> None:
        """Record the evaluator and the run (open, write, close), then start the writer task.

        Raises:
            OSError: the store cannot be opened (a bad path, a newer schema), or another process held it for
                ``give_up_s`` seconds.
        """
        from cotscope.store import config_hash

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._hash = config_hash(self.config)
        self._wake = asyncio.Event()

        def _begin(store: Store) -> None:
            store.add_evaluator(self.evaluator, self._hash, kind="monitor", label_meaning=self.label_meaning,
                                config=self.config)
            self._run_id = store.start_run("guard", self.evaluator, self.run_config)

        store = await self._open(time.monotonic() + self.give_up_s)
        if store is None:
            raise OSError(f"{self.path}: held by another process for {self.give_up_s:g} s; the guard cannot "
                          f"record its run ({self._last_busy})")
        await asyncio.to_thread(_run_and_close, store, _begin)
        self._task = asyncio.create_task(self._work(), name="guard-record-writer")

    def submit(self, record: GuardRecord) -> None:
        """Queue a record (never blocks; the guard never waits for the disk)."""
        if not self._pending:
            self._oldest = time.monotonic()
        self._pending.append(record)
        self.received += 1
        # Wake the writer to start the flush timer (first record) or to flush a full batch now.
        if self._wake is not None and (len(self._pending) == 1 or len(self._pending) >= self.max_batch):
            self._wake.set()

    # -- the writer task -----------------------------------------------------------------------------------
    async def _work(self) -> None:
        while True:
            await self._until_due()
            if not self._pending:
                return  # closing, and nothing left
            try:
                await self._flush()
            except Exception as e:
                # Opening failed for a reason that is not an OSError (DuckDB failing the schema check, say):
                # the queued records were not tried, and are reported as failed rather than stopping the writer.
                self._fail(self._pending, f"{type(e).__name__}: {e}")
                self._pending = []

    async def _until_due(self) -> None:
        """Return when a flush is due: ``flush_s`` after the oldest queued record, a full batch, or shutdown."""
        assert self._wake is not None
        while not self._closing:
            timeout: float | None = None
            if self._pending:
                timeout = self._oldest + self.flush_s - time.monotonic()
                if timeout <= 0 or len(self._pending) >= self.max_batch:
                    return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _flush(self) -> None:
        """Open the store (waiting while another process holds it), write every queued record, close it."""
        try:
            store = await self._open(None)
        except OSError as e:  # not a lock: a deleted directory, a damaged file... the batch cannot be written
            self._fail(self._pending, f"cannot open the store: {e}")
            self._pending = []
            return
        if store is None:  # shutdown's deadline passed with the store still held
            n = len(self._pending)
            self._fail(self._pending, None)
            self.not_written += n
            self._note(f"{n} record(s) not written: {self.path} was held by another process for "
                       f"{self.give_up_s:g} s after shutdown began ({self._last_busy})")
            self._pending = []
            return
        # Taken once the file is open: what arrived while it was held goes into this flush too.
        batch, self._pending = self._pending, []
        try:
            failures = await asyncio.to_thread(_run_and_close, store, lambda s: self._write(s, batch))
        except Exception as e:  # closing failed: whether the transaction reached the file is unknown
            self._fail(batch, f"{type(e).__name__} closing the store: {e}")
            return
        self.flushes += 1
        self.written += len(batch) - len(failures)
        self.failed += len(failures)
        for line in failures:
            self._note(line)

    async def _open(self, deadline: float | None) -> Store | None:
        """The store opened for writing, tried with backoff while another process holds it.

        ``None`` once the deadline (``deadline``, or shutdown's when it begins) has passed; every call tries at
        least once.

        Raises:
            OSError: the store cannot be opened for another reason.
        """
        from cotscope.store import Store

        delay = _FIRST_RETRY_S
        while True:
            try:
                # Its own backoff and deadlines (shutdown's included): the store must not wait inside.
                return await asyncio.to_thread(Store, self.path, lock_wait_s=0)
            except OSError as e:
                if not store_held(e):
                    raise
                self.busy_retries += 1
                self._last_busy = str(e)
            end = deadline if deadline is not None else self._deadline
            now = time.monotonic()
            if end is not None and now >= end:
                return None
            await asyncio.sleep(delay if end is None else max(0.0, min(delay, end - now)))
            delay = min(delay * 2, self.retry_s)

    def _write(self, store: Store, batch: list[GuardRecord]) -> list[str]:
        """Write ``batch`` in one transaction; the failure lines of records that could not be written.

        When the transaction fails for a reason other than a held file, each record is tried in a transaction of
        its own, so one record DuckDB or Arrow refuses (text it cannot encode, say) fails alone.
        """
        ready: list[tuple[Trace, dict[str, Any]]] = []
        failures: list[str] = []
        for r in batch:
            try:
                trace = r.to_trace()
                ready.append((trace, r.result_row(trace, self.evaluator, self._hash, self._run_id)))
            except Exception as e:  # a record that is not a valid trace is reported, the rest are written
                failures.append(f"{r.request_id}: {type(e).__name__}: {e}")
        if not ready:
            return failures
        try:
            self._commit(store, ready)
        except Exception as e:
            if len(ready) == 1:
                return [*failures, f"{ready[0][0].id}: {type(e).__name__}: {e}"]
            for item in ready:
                try:
                    self._commit(store, [item])
                except Exception as e1:
                    failures.append(f"{item[0].id}: {type(e1).__name__}: {e1}")
        return failures

    def _commit(self, store: Store, items: list[tuple[Trace, dict[str, Any]]]) -> None:
        """Traces and their results in one transaction (a trace is never stored without its verdict)."""
        store.add_traces_and_results([t for t, _ in items], [row for _, row in items], self._run_id)

    def _fail(self, records: list[GuardRecord], why: str | None) -> None:
        """Count ``records`` as failed for one shared reason, said once (with the first ids), not per record."""
        self.failed += len(records)
        if why is None or not records:
            return
        ids = [r.request_id for r in records]
        if len(ids) == 1:
            self._note(f"{ids[0]}: {why}")
        else:
            shown = ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
            self._note(f"{len(ids)} records ({shown}): {why}")

    def _note(self, line: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(line)
        else:
            self.errors_dropped += 1

    async def aclose(self) -> None:
        """Write what is queued (trying a held store for ``give_up_s`` seconds), then record the run's end."""
        self._closing = True
        self._deadline = time.monotonic() + self.give_up_s
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if not self._run_id:
            return
        run_id, self._run_id = self._run_id, ""
        try:
            store = await self._open(self._deadline)
        except OSError as e:
            self._note(f"the run's end was not recorded: {e}")
            return
        if store is None:
            self._note(f"the run's end was not recorded: {self.path} was held by another process "
                       f"({self._last_busy})")
            return
        stats = self.stats()
        await asyncio.to_thread(_run_and_close, store, lambda s: s.finish_run(run_id, "done", stats))


#: Failure lines kept in :attr:`RecordWriter.errors`.
MAX_ERRORS = 20
#: The first wait before trying a held store again (doubled up to ``retry_s``).
_FIRST_RETRY_S = 0.05
def store_held(error: BaseException) -> bool:
    """Whether ``error`` (from opening a :class:`~cotscope.store.Store`) says that someone else holds the file:
    another process (its lock), or this process with other settings (a viewer's read-only connection in the same
    process). Both pass once the other side closes, so both are retried."""
    from cotscope.store import store_locked

    return isinstance(error, OSError) and (store_locked(error) or "different configuration" in str(error).lower())


def _run_and_close(store: Store, fn: Callable[[Store], T]) -> T:
    try:
        return fn(store)
    finally:
        store.close()
