"""Fixtures of the guard tests: a fake upstream streaming at a fixed pace and a guard on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from cotscope.guard import Guard, GuardConfig, GuardRecord, GuardThread
from cotscope.models._fakeserver import FakeOpenAIServer, FaultConfig, serve_in_thread
from cotscope.monitors import Monitor

#: Reasoning that turns: the phrase monitor flags "EVIL"; everything before it is benign.
TURNING = ("Let me think about the request step by step. First, the user wants help. " * 2
           + "Now the EVIL plan: mix the two chemicals in a closed room. " + "More detail follows here. " * 6)
BENIGN = "Let me add the numbers carefully: two plus two makes four, and I check it twice. " * 4
REPLIES = {"turning": (TURNING, "Here is how to do it."), "benign": (BENIGN, "The answer is 4."),
           "answer-turns": (BENIGN, "Sure. The EVIL part of the answer comes here, with more words after it.")}


@contextmanager
def upstream(**faults: Any) -> Iterator[FakeOpenAIServer]:
    """A fake upstream that streams the scripted replies, one token every 2 ms by default."""
    cfg = FaultConfig(replies=dict(REPLIES), pace_s=faults.pop("pace_s", 0.002),
                      reasoning_field=faults.pop("reasoning_field", True), **faults)
    with serve_in_thread(cfg) as srv:
        yield srv


@contextmanager
def guard_on(up: FakeOpenAIServer, store: Path | None = None, monitor: Monitor | None = None,
             **options: Any) -> Iterator[tuple[GuardThread, list[GuardRecord]]]:
    """A guard in front of ``up`` with the phrase monitor (flags ``EVIL``) unless ``monitor`` is given."""
    records: list[GuardRecord] = []
    cfg = GuardConfig(upstream=up.base_url, upstream_model="fake", monitor=options.pop("monitor_name", "phrase"),
                      monitor_options=options.pop("monitor_options", {"phrase": "EVIL"}),
                      check_every=options.pop("check_every", 40), **options)
    with GuardThread(Guard(cfg, store=store, monitor=monitor, on_record=records.append)) as g:
        yield g, records


def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``cond`` until it holds or ``timeout`` passes; its last value."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


async def _request_tasks() -> list[str]:
    return sorted(t.get_name() for t in asyncio.all_tasks()
                  if t.get_name().startswith(("guard-pump", "guard-check")) and not t.done())


def leaks(g: GuardThread) -> dict[str, Any]:
    """What a finished request could have left behind on the guard: its tasks, sessions, busy connections."""

    async def probe() -> dict[str, Any]:
        assert g.guard.client is not None
        # aiohttp's connector holds the connections lent to a response until it is released or closed.
        busy = g.guard.client.connector._acquired  # type: ignore[union-attr]
        return {"tasks": await _request_tasks(), "sessions": len(g.guard._sessions), "busy_connections": len(busy)}

    return g.run(probe())


def no_leaks(g: GuardThread) -> bool:
    """True once no request task, session or busy upstream connection is left (polled: teardown is async)."""
    return wait_for(lambda: leaks(g) == {"tasks": [], "sessions": 0, "busy_connections": 0})


@pytest.fixture
def benign_up() -> Iterator[FakeOpenAIServer]:
    with upstream() as srv:
        yield srv
