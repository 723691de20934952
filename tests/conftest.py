"""Shared test set-up: offline Hugging Face, and a scripted judge backend ``fakejudge/<name>``."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from cotscope.models import GenerateRequest, ModelOutput, modelapi

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _load_bench_fakes() -> None:
    """Register the deterministic ``fake/`` backend of ``tests/benchmarks/fakes.py`` for every test, importable
    as ``cotscope_test_fakes`` (tests outside that package use it without a relative import)."""
    path = Path(__file__).parent / "benchmarks" / "fakes.py"
    spec = importlib.util.spec_from_file_location("cotscope_test_fakes", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["cotscope_test_fakes"] = mod
    spec.loader.exec_module(mod)


_load_bench_fakes()

Reply = Callable[[GenerateRequest], str | ModelOutput]
SCRIPTS: dict[str, Reply] = {}
CALLS: dict[str, list[GenerateRequest]] = {}


class ScriptedModel:
    """Replies with ``SCRIPTS[name](request)``; a reply may be a full ModelOutput (e.g. with ``error``)."""

    batch_size = 8
    max_concurrency = 2

    def __init__(self, name: str) -> None:
        self.name = f"fakejudge/{name}"
        self.key = name

    async def generate(self, requests: Sequence[GenerateRequest]) -> list[ModelOutput]:
        CALLS.setdefault(self.key, []).extend(requests)
        out = []
        for r in requests:
            rep = SCRIPTS[self.key](r)
            out.append(rep if isinstance(rep, ModelOutput) else ModelOutput(text=rep, answer=rep))
        return out

    async def aclose(self) -> None:
        pass


@modelapi("fakejudge")
def _factory(model: str, base_url: str | None = None, **kw: Any) -> ScriptedModel:
    return ScriptedModel(model)


class Fake:
    """Test helper: ``fake.model(name, fn)`` -> ``fakejudge/name`` replying with ``fn``; ``fake.calls(name)``."""

    def model(self, name: str, fn: Reply) -> str:
        SCRIPTS[name] = fn
        CALLS[name] = []
        return f"fakejudge/{name}"

    def calls(self, name: str) -> list[GenerateRequest]:
        return CALLS.get(name, [])

    @staticmethod
    def text(req: GenerateRequest) -> str:
        """The text of the request's last message."""
        return str(req.messages[-1]["content"])


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own request cache: generation and LLM judges cache by default, and a shared
    cache would let one test's outputs answer another's requests."""
    monkeypatch.setenv("COTSCOPE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Fake:
    """The scripted backend, with the request cache in a temporary directory."""
    monkeypatch.setenv("COTSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    modelapi("fakejudge")(_factory)
    return Fake()


# -- sandbox providers: shared by the agent, pipeline and CLI tests ----------------------------------------
def _provider_or_skip(name: str) -> Any:
    from cotscope.agents import get_sandbox

    provider = get_sandbox(name)
    reason = provider.available()
    if reason is not None:
        pytest.skip(f"{name} sandbox unavailable: {reason}")
    return provider


@pytest.fixture(scope="session")
def namespace_provider() -> Any:
    """The default ``namespace`` provider (host root file system); skips with the reason it cannot run."""
    return _provider_or_skip("namespace")


@pytest.fixture(scope="session")
def docker_provider() -> Any:
    """The ``docker`` provider; skips with the reason (usually: no daemon answers)."""
    return _provider_or_skip("docker")
