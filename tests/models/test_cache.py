"""The request cache: hits, errors never cached, keys that change with every setting."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from cotscope.models import CachedModel, GenerateConfig, GenerateRequest, ModelOutput, RequestCache, request_key


class Counting:
    name = "test/counting"

    def __init__(self, fail: bool = False) -> None:
        self.seen: list[GenerateRequest] = []
        self.fail = fail

    async def generate(self, requests: Sequence[GenerateRequest]) -> list[ModelOutput]:
        self.seen.extend(requests)
        if self.fail:
            return [ModelOutput(error="HTTP 500: nope") for _ in requests]
        return [ModelOutput(text=f"out {r.messages[0]['content']} {r.sample_index}", answer="a", completion_tokens=3)
                for r in requests]

    async def aclose(self) -> None:
        return None


def _req(q: str = "q", k: int = 0, **cfg: object) -> GenerateRequest:
    return GenerateRequest(messages=[{"role": "user", "content": q}], sample_index=k,
                           config=GenerateConfig(**cfg))  # type: ignore[arg-type]


def test_hit_after_first_call_and_across_instances(tmp_path: Path) -> None:
    inner = Counting()
    cache = RequestCache(tmp_path / "c.sqlite")
    m = CachedModel(inner, cache)
    first = asyncio.run(m.generate([_req("a"), _req("b")]))
    second = asyncio.run(m.generate([_req("a"), _req("b"), _req("c")]))
    assert len(inner.seen) == 3  # a, b, then only c
    assert [o.cached for o in first] == [False, False]
    assert [o.cached for o in second] == [True, True, False]
    assert second[0].text == first[0].text
    cache.close()
    again = RequestCache(tmp_path / "c.sqlite")
    assert len(again) == 3
    got = again.get(request_key("test/counting", _req("b")))
    assert got is not None and got.cached and got.text == "out b 0"


def test_errors_are_never_cached(tmp_path: Path) -> None:
    cache = RequestCache(tmp_path / "c.sqlite")
    failing = Counting(fail=True)
    out = asyncio.run(CachedModel(failing, cache).generate([_req()]))
    assert out[0].error
    assert len(cache) == 0
    ok = Counting()
    out2 = asyncio.run(CachedModel(ok, cache).generate([_req()]))
    assert out2[0].error is None and len(ok.seen) == 1 and len(cache) == 1


def test_key_changes_with_every_setting() -> None:
    base = request_key("m", _req())
    variants = [
        request_key("m2", _req()),
        request_key("m", _req("other")),
        request_key("m", _req(k=1)),
        request_key("m", _req(temperature=0.7)),
        request_key("m", _req(top_p=0.9)),
        request_key("m", _req(max_tokens=17)),
        request_key("m", _req(seed=3)),
        request_key("m", _req(stop=["</think>"])),
        request_key("m", _req().model_copy(update={"prefill": "<think>\n"})),
        request_key("m", _req().model_copy(update={"template_kwargs": {"enable_thinking": False}})),
    ]
    assert base == request_key("m", _req())
    assert len({base, *variants}) == len(variants) + 1


def test_flush_batches_and_pending_reads(tmp_path: Path) -> None:
    cache = RequestCache(tmp_path / "c.sqlite", flush_every=1000)
    cache.put("k1", ModelOutput(text="x"))
    assert cache.get("k1") is not None  # served from the write buffer before any commit
    assert not cache.put("k2", ModelOutput(error="boom"))
    cache.close()
    assert len(RequestCache(tmp_path / "c.sqlite")) == 1
