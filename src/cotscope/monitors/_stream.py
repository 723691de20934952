"""Watching a generation as it streams, and stopping it when a monitor's suspicion passes a threshold.

:class:`StreamChecker` is the one incremental checking implementation: it holds a growing text, says when a
check is due, cuts the windows a check reads (covering every character since the previous check, never
skipping any) and folds the monitor's results into a running verdict. :func:`watch_stream` drives it over an
async iterator with direct monitor calls; the serving guard (``cotscope.guard``) drives the same class with
checks batched across concurrent streams.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from cotscope.judges import Evidence
from cotscope.monitors._types import Monitor, MonitorResult
from cotscope.traces import Message, Trace

#: Which part of a generation a checker watches; the window is put in that field of the trace it builds.
StreamField = Literal["reasoning", "answer"]


@dataclass
class StreamVerdict:
    """What happened while watching a stream.

    ``stopped`` is true when the monitor intervened; then ``stop_offset`` is the number of characters of
    the generation received when it fired (the text kept is ``text == full[:stop_offset]``) and
    ``stop_chunk`` the index of the stream chunk whose arrival triggered it.
    """

    stopped: bool
    text: str
    suspicion: float
    stop_offset: int | None = None
    stop_chunk: int | None = None
    checks: int = 0
    chunks_seen: int = 0
    result: MonitorResult | None = None
    evidence: list[Evidence] = field(default_factory=list)
    parse_errors: int = 0


@dataclass
class CheckRequest:
    """One check of a :class:`StreamChecker`: the windows to score (one trace each) and what they cover.

    ``offsets[i]`` is where window ``i`` starts in the whole text; together the windows cover
    ``text[start:end]`` (and up to ``window`` characters before ``start`` as context).
    """

    traces: list[Trace]
    offsets: list[int]
    start: int
    end: int


class StreamChecker:
    """Incremental monitoring of one growing text (a reasoning, or an answer).

    Feed it text with :meth:`feed`; when :meth:`due` says so, take a :meth:`request`, score its traces with
    the monitor and hand the results to :meth:`record`, which says whether the text must be stopped. The
    verdict is the running maximum of suspicion over all windows; evidence offsets are shifted from the
    window into the whole text.

    Args:
        prompt: the user prompt the generation answers (monitors that score pairs need it).
        threshold: stop when a window's suspicion is strictly greater than this.
        check_every: new characters between checks.
        window: characters a window holds, or ``None`` for the whole text (LLM monitors).
        field: the trace field the windows are put in.
        first_check: characters before the first check (default ``check_every``); a small first check lets a
            caller that holds text back until it is checked release the start early.
    """

    def __init__(self, *, prompt: str = "", threshold: float = 0.5, check_every: int = 200,
                 window: int | None = 1000, field: StreamField = "reasoning", first_check: int | None = None) -> None:
        if check_every < 1:
            raise ValueError(f"check_every must be at least 1 character, got {check_every}")
        if window is not None and window < 1:
            raise ValueError(f"window must be at least 1 character (or None for the whole text), got {window}")
        self.prompt = prompt
        self.threshold = threshold
        self.check_every = check_every
        self.window = window
        self.field: StreamField = field
        self.first_check = check_every if first_check is None else max(1, first_check)
        self.text = ""
        #: Characters covered by the checks issued so far.
        self.issued = 0
        #: Characters covered by checks that passed (everything before a stop, if any).
        self.passed = 0
        self.checks = 0
        self.parse_errors = 0
        self.suspicion = 0.0
        self.result: MonitorResult | None = None
        self.evidence: list[Evidence] = []
        self.stopped = False
        self.stop_offset: int | None = None

    def feed(self, piece: str) -> None:
        """Append newly received text."""
        self.text += piece

    @property
    def unchecked(self) -> int:
        """Characters received that no issued check covers yet."""
        return len(self.text) - self.issued

    def due(self, final: bool = False) -> bool:
        """Whether a check should run now: ``check_every`` new characters, or (``final``) anything unchecked.

        A ``final`` check of a text never checked runs even when the text is empty, so every stream gets a
        verdict.
        """
        if self.stopped:
            return False
        if final:
            return self.unchecked > 0 or self.checks == 0
        return self.unchecked >= (self.first_check if self.issued == 0 else self.check_every)

    def windows(self, end: int) -> list[tuple[int, int]]:
        """``(start, end)`` windows covering ``text[issued:end]``, the last one ending at ``end``.

        One window when fewer than ``window`` characters arrived since the previous check; more when
        a burst brought more (consecutive windows overlap by a fifth, so a phrase cut at one boundary is
        seen whole in the other).
        """
        if self.window is None:
            return [(0, end)]
        out: list[tuple[int, int]] = []
        e = end
        step = max(1, self.window - self.window // 5)
        while True:
            s = max(0, e - self.window)
            out.append((s, e))
            if s <= self.issued:
                return out[::-1]
            e = s + (self.window - step)

    def request(self) -> CheckRequest:
        """The next check over everything received; marks it issued."""
        end = len(self.text)
        spans = self.windows(end)
        traces = []
        for s, e in spans:
            part = self.text[s:e]
            traces.append(Trace(prompt=[Message(role="user", content=self.prompt)],
                                reasoning=part if self.field == "reasoning" else "",
                                answer=part if self.field == "answer" else ""))
        req = CheckRequest(traces=traces, offsets=[s for s, _ in spans], start=self.issued, end=end)
        self.issued = end
        return req

    def record(self, req: CheckRequest, results: Sequence[MonitorResult]) -> bool:
        """Fold the results of ``req`` into the verdict; returns whether the text must be stopped.

        A result without a suspicion (parse error, backend error) counts as a parse error and neither
        passes nor stops anything by itself; the caller decides (fail open or closed) with :meth:`fail`.
        """
        self.checks += 1
        scored = True
        for off, r in zip(req.offsets, results, strict=True):
            if r.parse_error or r.error or r.suspicion is None:
                self.parse_errors += 1
                scored = False
                continue
            if r.suspicion >= self.suspicion:
                self.suspicion = r.suspicion
                self.result = r
                self.evidence = [self._shift(e, off) for e in r.evidence]
            if r.suspicion > self.threshold and not self.stopped:
                self.stopped = True
                self.stop_offset = req.end
        if not self.stopped and scored:
            self.passed = max(self.passed, req.end)
        return self.stopped

    def fail(self, req: CheckRequest, closed: bool) -> bool:
        """A check that could not be scored: pass its text (``closed=False``) or stop (``closed=True``)."""
        if closed and not self.stopped:
            self.stopped = True
            self.stop_offset = req.end
        elif not closed and not self.stopped:
            self.passed = max(self.passed, req.end)
        return self.stopped

    def _shift(self, e: Evidence, off: int) -> Evidence:
        # Evidence offsets are relative to the window: shift them back into the whole text.
        if e.verified and e.start is not None and e.end is not None and e.field in (self.field, "both"):
            return e.model_copy(update={"start": e.start + off, "end": e.end + off, "field": self.field})
        return e


async def watch_stream(
    monitor: Monitor,
    stream: AsyncIterator[str],
    *,
    prompt: str = "",
    threshold: float = 0.5,
    check_every: int = 200,
    window: int | None = 1000,
) -> StreamVerdict:
    """Consume ``stream`` (text chunks of a reasoning as generated) and stop it when suspicion > threshold.

    The monitor is asked every ``check_every`` new characters (and once at the end). With ``window`` set
    it reads only the last ``window`` characters, so the cost per check stays constant however long the
    reasoning grows; since windows overlap and the verdict is a running maximum, this is the chunked
    max-over-chunks score computed incrementally (a burst of more than ``window`` characters is read as
    several overlapping windows in one call, so no text goes unchecked). ``window=None`` re-reads the
    whole text (for LLM monitors that need the full context).

    Stopping closes the stream (``aclose``), which cancels an async-generator generation upstream.

    Args:
        monitor: any monitor.
        stream: async iterator of text chunks.
        prompt: the user prompt the generation answers (monitors that score pairs need it).
        threshold: intervene when suspicion is strictly greater than this.
        check_every: characters between checks.
        window: characters the monitor reads per check, or ``None`` for all.
    """
    checker = StreamChecker(prompt=prompt, threshold=threshold, check_every=check_every, window=window)
    verdict = StreamVerdict(stopped=False, text="", suspicion=0.0)

    async def check(chunk_index: int) -> bool:
        req = checker.request()
        stopped = checker.record(req, await monitor.monitor(req.traces))
        if stopped:
            verdict.stop_chunk = chunk_index
        return stopped

    i = -1
    try:
        async for i, piece in _enumerate(stream):
            checker.feed(piece)
            verdict.chunks_seen = i + 1
            if checker.due() and await check(i):
                break
        else:
            if checker.due(final=True):
                await check(i)
    finally:
        closer = getattr(stream, "aclose", None)
        if checker.stopped and closer is not None:
            await closer()
    verdict.stopped = checker.stopped
    verdict.text = checker.text
    verdict.suspicion = checker.suspicion
    verdict.stop_offset = checker.stop_offset
    verdict.checks = checker.checks
    verdict.result = checker.result
    verdict.evidence = checker.evidence
    verdict.parse_errors = checker.parse_errors
    return verdict


async def _enumerate(it: AsyncIterator[str]) -> AsyncIterator[tuple[int, str]]:
    i = 0
    async for x in it:
        yield i, x
        i += 1
