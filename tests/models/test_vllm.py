"""The vLLM launcher, with a fake ``vllm`` executable on PATH that serves the OpenAI API on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from cotscope.models import GenerateRequest, get_model
from cotscope.models._vllm import VLLMServer, stop_all_servers

FAKE_VLLM = """#!{python}
import json, os, sys
argv = sys.argv[1:]
with open(os.environ["FAKE_VLLM_LOG"], "a") as f:
    f.write(json.dumps(argv) + "\\n")
if os.environ.get("FAKE_VLLM_CRASH"):
    print("CUDA out of memory (fake)", flush=True)
    sys.exit(3)
assert argv[0] == "serve"
port = argv[argv.index("--port") + 1]
from cotscope.models._fakeserver import main
main(["--port", port])
"""


@pytest.fixture
def fake_vllm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "vllm"
    exe.write_text(FAKE_VLLM.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "vllm.log"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_VLLM_LOG", str(log))
    monkeypatch.delenv("COTSCOPE_VLLM", raising=False)
    return log


def test_managed_server_starts_serves_is_shared_and_stops(fake_vllm: Path) -> None:
    args = {"tensor_parallel_size": "2", "gpu_memory_utilization": "0.5", "reasoning_parser": "deepseek_r1"}
    m1 = get_model("vllm/Org/Model-7B", **args)
    m2 = get_model("vllm/Org/Model-7B", **args)
    srv = m1.server  # type: ignore[attr-defined]
    assert srv is not None and srv is m2.server  # type: ignore[attr-defined]  # one server per model
    argv = [json.loads(ln) for ln in fake_vllm.read_text().splitlines()]
    assert len(argv) == 1
    a = argv[0]
    assert a[:2] == ["serve", "Org/Model-7B"]
    assert a[a.index("--tensor-parallel-size") + 1] == "2"
    assert a[a.index("--gpu-memory-utilization") + 1] == "0.5"
    assert a[a.index("--reasoning-parser") + 1] == "deepseek_r1"
    assert a[a.index("--host") + 1] == "127.0.0.1"

    async def go() -> None:
        [o] = await m1.generate([GenerateRequest(messages=[{"role": "user", "content": "hi"}])])
        assert o.error is None and o.answer == "answer to hi (seed None)" and o.reasoning == "thinking about hi"
        await m1.aclose()
        assert srv.running  # still used by m2
        await m2.aclose()

    asyncio.run(go())
    assert not srv.running and srv.proc is not None and srv.proc.returncode is not None
    assert srv.log_path is not None and not srv.log_path.exists()  # a clean stop leaves no log behind
    assert m1.name == "vllm/Org/Model-7B" and m1.cache_id == "vllm/Org/Model-7B"  # type: ignore[attr-defined]


def test_server_that_exits_reports_its_log(fake_vllm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_VLLM_CRASH", "1")
    srv = VLLMServer("m", startup_timeout=30)
    with pytest.raises(RuntimeError, match=r"exited with code 3 \(log kept at .*\)(?s:.*)CUDA out of memory"):
        srv.start()
    assert srv.log_path is not None and srv.log_path.exists()  # a failed server keeps its log for the user
    srv.stop()
    assert not srv.log_path.exists()


def test_connects_to_running_server_without_starting(fake_vllm: Path) -> None:
    from cotscope.models._fakeserver import serve_in_thread

    with serve_in_thread() as s:
        m = get_model("vllm/x", base_url=s.base_url)
        assert m.server is None  # type: ignore[attr-defined]
        [o] = asyncio.run(m.generate([GenerateRequest(messages=[{"role": "user", "content": "q"}])]))
        assert o.answer == "answer to q (seed None)"
    assert not fake_vllm.exists()


def test_atexit_hook_stops_everything(fake_vllm: Path) -> None:
    m = get_model("vllm/y")
    srv = m.server  # type: ignore[attr-defined]
    assert srv.running
    stop_all_servers()
    assert not srv.running


def test_managed_server_checks_prefills_with_the_served_models_tokenizer(fake_vllm: Path, tmp_path: Path) -> None:
    """vLLM loaded the model, so its tokenizer is on disk: the backend checks prefills against it by default."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    folder = tmp_path / "served-model"
    fast = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]")),
                                   unk_token="[UNK]")
    fast.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    fast.save_pretrained(folder)
    m = get_model(f"vllm/{folder}")
    unknown = get_model("vllm/Org/Not-On-Disk")
    try:
        assert m.client.tokenizer_id == str(folder)  # type: ignore[attr-defined]
        assert unknown.client.tokenizer_id is None  # type: ignore[attr-defined]  # nothing to load: no check
    finally:
        asyncio.run(m.aclose())
        asyncio.run(unknown.aclose())
