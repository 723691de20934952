"""Watching a generation as it streams, and stopping it when a monitor's suspicion passes a threshold."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from cotscope.judges import Evidence
from cotscope.monitors._types import Monitor, MonitorResult
from cotscope.traces import Message, Trace


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
    max-over-chunks score computed incrementally. ``window=None`` re-reads the whole text (for LLM
    monitors that need the full context).

    Stopping closes the stream (``aclose``), which cancels an async-generator generation upstream.

    Args:
        monitor: any monitor.
        stream: async iterator of text chunks.
        prompt: the user prompt the generation answers (monitors that score pairs need it).
        threshold: intervene when suspicion is strictly greater than this.
        check_every: characters between checks.
        window: characters the monitor reads per check, or ``None`` for all.
    """
    text = ""
    last_checked = 0
    verdict = StreamVerdict(stopped=False, text="", suspicion=0.0)

    async def check(chunk_index: int) -> bool:
        nonlocal last_checked
        start = 0 if window is None else max(0, len(text) - window)
        trace = Trace(prompt=[Message(role="user", content=prompt)], reasoning=text[start:])
        r = (await monitor.monitor([trace]))[0]
        verdict.checks += 1
        last_checked = len(text)
        if r.parse_error or r.error or r.suspicion is None:
            verdict.parse_errors += 1
            return False
        if r.suspicion >= verdict.suspicion:
            # Evidence offsets are relative to the window: shift them back into the whole generation.
            verdict.suspicion = r.suspicion
            verdict.result = r
            verdict.evidence = [
                e.model_copy(update={"start": e.start + start, "end": e.end + start, "field": "reasoning"})
                if e.verified and e.start is not None and e.end is not None and e.field in ("reasoning", "both")
                else e
                for e in r.evidence
            ]
        if r.suspicion > threshold:
            verdict.stopped = True
            verdict.stop_offset = len(text)
            verdict.stop_chunk = chunk_index
            return True
        return False

    i = -1
    try:
        async for i, piece in _enumerate(stream):
            text += piece
            verdict.chunks_seen = i + 1
            if len(text) - last_checked >= check_every and await check(i):
                break
        else:
            if len(text) > last_checked or verdict.checks == 0:
                await check(i)
    finally:
        closer = getattr(stream, "aclose", None)
        if verdict.stopped and closer is not None:
            await closer()
    verdict.text = text
    return verdict


async def _enumerate(it: AsyncIterator[str]) -> AsyncIterator[tuple[int, str]]:
    i = 0
    async for x in it:
        yield i, x
        i += 1
