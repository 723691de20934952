"""The OpenAI-compatible backend against a fault-injecting server on 127.0.0.1, and the engine."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cotscope.models import Engine, GenerateConfig, GenerateRequest, RequestCache, get_model
from cotscope.models._fakeserver import FakeOpenAIServer, FaultConfig, serve_in_thread
from cotscope.models._openai import backoff_delay, retry_after_seconds
from cotscope.thinking import get_strategy


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with serve_in_thread() as s:
        yield s


def _reqs(n: int, k: int = 1) -> list[GenerateRequest]:
    return [GenerateRequest(messages=[{"role": "user", "content": f"q{i}"}], sample_index=j,
                            config=GenerateConfig(seed=100 * i + j))
            for i in range(n) for j in range(k)]


def _fast(url: str, **kw: object) -> object:
    args = {"timeout": 0.5, "max_retries": 12, "backoff_base": 0.005, "backoff_max": 0.05, **kw}
    return get_model("openai/fake", base_url=url, **args)


def test_every_request_completes_under_all_fault_kinds() -> None:
    faults = FaultConfig(rate=0.35, seed=7, hang_s=1.0, retry_after="0.01")
    with serve_in_thread(faults) as srv:
        model = _fast(srv.base_url, max_connections=16)
        reqs = _reqs(60, k=2)
        engine = Engine(model, get_strategy("normal"))  # type: ignore[arg-type]
        seen: list[int] = []
        outs = asyncio.run(engine.run(reqs, lambda i, o: seen.append(i)))
        asyncio.run(model.aclose())  # type: ignore[attr-defined]
        counts = dict(srv.stats.counts)
    assert sorted(seen) == list(range(len(reqs)))  # each request reported exactly once
    assert all(o.error is None for o in outs), [o.error for o in outs if o.error]
    for r, o in zip(reqs, outs, strict=True):
        # Each output answers its own request: nothing swapped, dropped or duplicated.
        assert o.answer == f"answer to {r.messages[0]['content']} (seed {r.config.seed})"
        assert o.reasoning == f"thinking about {r.messages[0]['content']}"
    for kind in ("429", "500", "timeout", "drop", "truncate"):
        assert counts.get(kind, 0) > 0, counts
    assert engine.stats.completed == len(reqs) and engine.stats.errors == 0


@pytest.mark.parametrize(
    ("kind", "cause"),
    [("500", "HTTP 500"), ("429", "HTTP 429"), ("drop", "connection error"), ("truncate", "unparseable response"),
     ("timeout", "timeout after 0.3s")],
)
def test_persistent_faults_end_as_errors_with_cause(kind: str, cause: str) -> None:
    with serve_in_thread(FaultConfig(rate=1.0, kinds=(kind,), hang_s=0.6, retry_after="0")) as srv:
        model = _fast(srv.base_url, max_retries=2, timeout=0.3)
        outs = asyncio.run(Engine(model).run(_reqs(3)))  # type: ignore[arg-type]
        asyncio.run(model.aclose())  # type: ignore[attr-defined]
        assert srv.stats.counts[kind] == 9  # 3 requests x 3 attempts, no more, no fewer
    assert len(outs) == 3
    for o in outs:
        assert o.error is not None and cause in o.error and "gave up after 3 attempts" in o.error


def test_client_errors_are_not_retried(server: FakeOpenAIServer) -> None:
    model = _fast(f"http://127.0.0.1:{server.port}/nope")
    outs = asyncio.run(model.generate(_reqs(1)))  # type: ignore[attr-defined]
    assert outs[0].error is not None and outs[0].error.startswith("HTTP 404") and "not retried" in outs[0].error


def test_retry_after_is_honoured() -> None:
    assert retry_after_seconds(httpx.Headers({"retry-after": "2"})) == 2.0
    assert retry_after_seconds(httpx.Headers({"retry-after-ms": "150"})) == 0.15
    assert retry_after_seconds(httpx.Headers({})) is None
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 < (retry_after_seconds(httpx.Headers({"retry-after": date})) or 0) <= 31
    rng = random.Random(0)
    assert all(3.0 <= backoff_delay(0, 3.0, 0.5, 1.0, rng) <= 3.3 for _ in range(50))
    delays = [backoff_delay(a, None, 0.5, 4.0, rng) for a in range(8)]
    assert all(0.25 <= d <= 4.0 for d in delays) and delays[0] <= 0.5 and delays[-1] >= 2.0
    with serve_in_thread(FaultConfig(rate=1.0, kinds=("429",), retry_after="0.4")) as srv:
        model = _fast(srv.base_url, max_retries=1)
        t0 = time.perf_counter()
        out = asyncio.run(model.generate(_reqs(1)))  # type: ignore[attr-defined]
        assert time.perf_counter() - t0 >= 0.4
        assert out[0].error and "HTTP 429" in out[0].error


def test_reasoning_field_and_prefill_through_chat(server: FakeOpenAIServer) -> None:
    model = get_model("openai/reasoning-field", base_url=server.base_url)
    [o] = asyncio.run(model.generate(_reqs(1)))  # type: ignore[attr-defined]
    assert (o.reasoning, o.answer) == ("thinking about q0", "answer to q0 (seed 0)")
    plain = get_model("openai/fake", base_url=server.base_url)
    [p] = asyncio.run(get_strategy("prefill:<think>\\nOkay.").generate(plain, _reqs(1)))
    assert p.reasoning.startswith("Okay.") and p.answer == "answer to q0 (seed 0)"
    [z] = asyncio.run(get_strategy("zerothink").generate(plain, _reqs(1)))
    assert (z.reasoning, z.answer) == ("", "answer to q0 (seed 0)")


def test_completions_endpoint_continues_rendered_text(server: FakeOpenAIServer) -> None:
    model = get_model("openai/fake", base_url=server.base_url, endpoint="completions")
    [o] = asyncio.run(get_strategy("lessthink").generate(model, _reqs(1)))  # type: ignore[arg-type]
    assert o.reasoning == "Okay, the user ask for this, I can answer it without thinking much."
    assert o.answer.startswith("answer to")


def test_engine_cached_rerun_sends_nothing(tmp_path: Path, server: FakeOpenAIServer) -> None:
    cache = RequestCache(tmp_path / "c.sqlite")
    reqs = _reqs(20, k=2)
    model = _fast(server.base_url)
    first = asyncio.run(Engine(model, cache=cache).run(reqs))  # type: ignore[arg-type]
    sent = server.stats.counts["ok"]
    assert sent == 40
    eng = Engine(model, cache=cache)  # type: ignore[arg-type]
    second = asyncio.run(eng.run(reqs))
    assert server.stats.counts["ok"] == sent and eng.stats.cached == 40
    assert [o.text for o in first] == [o.text for o in second]
    # A changed setting misses the cache.
    more = [r.model_copy(update={"config": r.config.model_copy(update={"temperature": 0.5})}) for r in reqs[:3]]
    asyncio.run(Engine(model, cache=cache).run(more))  # type: ignore[arg-type]
    assert server.stats.counts["ok"] == sent + 3


def test_engine_turns_backend_exceptions_into_errors() -> None:
    class Broken:
        name = "broken"

        async def generate(self, requests: object) -> list[object]:
            raise RuntimeError("kaput")

        async def aclose(self) -> None:
            return None

    outs = asyncio.run(Engine(Broken()).run(_reqs(3)))  # type: ignore[arg-type]
    assert [o.error for o in outs] == ["backend failure: RuntimeError: kaput"] * 3
