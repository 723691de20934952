from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from cotscope.store._prefetch import prefetch


def test_order_and_completeness() -> None:
    assert list(prefetch(iter(range(1000)), depth=3)) == list(range(1000))


def test_exception_reraised_after_items() -> None:
    def gen() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("boom")

    got = []
    with pytest.raises(ValueError, match="boom"):
        for x in prefetch(gen()):
            got.append(x)
    assert got == [1, 2]


def test_bounded_and_stops_when_consumer_stops() -> None:
    produced = []

    def gen() -> Iterator[int]:
        for i in range(10_000):
            produced.append(i)
            yield i

    it = prefetch(gen(), depth=2)
    assert next(it) == 0
    time.sleep(0.2)
    assert len(produced) <= 4  # one consumed, two queued, one in hand
    it.close()
    time.sleep(0.2)
    n = len(produced)
    time.sleep(0.2)
    assert len(produced) == n  # the producer stopped
    assert not any(t.name == "cotscope-prefetch" and t.is_alive() for t in threading.enumerate())
