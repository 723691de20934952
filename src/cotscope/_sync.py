"""Running a coroutine from sync code, inside or outside a running event loop.

It sits at the root of the package (it imports nothing from cotscope) so that every layer may use it: the
Python front door (``cotscope.run``) and sync callbacks that must call async code, such as a training
reward function that runs a judge.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, whether or not an event loop is already running here."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # A loop runs in this thread (a notebook): asyncio.run would refuse, so use a thread with its own loop.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
