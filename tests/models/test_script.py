"""The scripted agent model and the engine's one-request path that the agent loop uses."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from cotscope.errors import DataError
from cotscope.models import Engine, GenerateRequest, ModelOutput, RequestCache, ScriptedModel, get_model


def _script(tmp_path: Path, lines: list[Any]) -> Path:
    p = tmp_path / "script.jsonl"
    p.write_text("\n".join(json.dumps(x) if not isinstance(x, str) else x for x in lines) + "\n")
    return p


def _req(task: str | None, step: int | None) -> GenerateRequest:
    meta = {} if task is None else {"task_id": task, "step": step}
    return GenerateRequest(messages=[{"role": "user", "content": "x"}], metadata=meta)


def test_script_answers_each_step_then_the_final_code(tmp_path: Path) -> None:
    p = _script(tmp_path, [{"task": "a", "actions": ["ls -la", {"command": "whoami", "reasoning": "who am I?"}]},
                           {"task": "r", "actions": [], "final": "FAIL", "text": "I can't help with that."}])
    m = get_model(f"script/{p}")
    outs = asyncio.run(m.generate([_req("a", 0), _req("a", 1), _req("a", 2), _req("a", 9), _req("r", 0)]))
    assert outs[0].answer == "```bash\nls -la\n```"
    assert outs[1].answer == "who am I?\n```bash\nwhoami\n```"
    assert outs[2].answer == outs[3].answer == "```DONE```"
    assert outs[4].answer == "I can't help with that.\n```FAIL```"
    assert all(o.error is None for o in outs)


def test_script_errors_name_the_cause(tmp_path: Path) -> None:
    p = _script(tmp_path, [{"task": "a", "actions": ["ls"]}])
    outs = asyncio.run(ScriptedModel(p).generate([_req("zzz", 0), _req(None, None)]))
    assert "no script for task zzz" in (outs[0].error or "")
    assert "agent task id" in (outs[1].error or "")


@pytest.mark.parametrize(("lines", "message"), [
    (['{"task": "a", "actions": ["ls"]}', "{not json"], ":2"),
    ([{"actions": ["ls"]}], ":1: a script line needs a string 'task'"),
    ([{"task": "a", "actions": "ls"}], "'actions' must be a list"),
    ([{"task": "a", "actions": [3]}], "an action must be a command string"),
    ([{"task": "a", "final": "STOP"}], "'final' must be one of"),
    ([{"task": "a"}, {"task": "a"}], ":2: task a is scripted twice"),
])
def test_malformed_scripts_name_file_and_line(tmp_path: Path, lines: list[Any], message: str) -> None:
    p = _script(tmp_path, lines)
    with pytest.raises(DataError, match=r"script\.jsonl") as e:
        ScriptedModel(p)
    assert message in str(e.value)


def test_missing_script_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        get_model(f"script/{tmp_path / 'nope.jsonl'}")


class _Counting:
    """Records the batches it is called with."""

    name = "counting"
    batch_size = 4
    max_concurrency = 2

    def __init__(self, fail_on: str | None = None) -> None:
        self.batches: list[int] = []
        self.fail_on = fail_on

    async def generate(self, requests: Any) -> list[ModelOutput]:
        self.batches.append(len(requests))
        await asyncio.sleep(0.01)
        if any(r.messages[0]["content"] == self.fail_on for r in requests):
            raise RuntimeError("boom")
        return [ModelOutput(text=r.messages[0]["content"], answer=r.messages[0]["content"]) for r in requests]

    async def aclose(self) -> None:
        return None


def test_submit_batches_concurrent_requests_and_keeps_order() -> None:
    be = _Counting()
    eng = Engine(be)

    async def go() -> list[ModelOutput]:
        return await asyncio.gather(*(eng.submit(GenerateRequest(messages=[{"role": "user", "content": str(i)}]))
                                      for i in range(10)))

    outs = asyncio.run(go())
    assert [o.answer for o in outs] == [str(i) for i in range(10)]
    assert sorted(be.batches, reverse=True) == [4, 4, 2]  # batch_size 4, all submitted in one turn
    assert eng.stats.requests == eng.stats.completed == 10


def test_submit_turns_a_raising_backend_into_error_outputs() -> None:
    eng = Engine(_Counting(fail_on="bad"))

    async def go() -> list[ModelOutput]:
        return await asyncio.gather(eng.submit(GenerateRequest(messages=[{"role": "user", "content": "bad"}])))

    (out,) = asyncio.run(go())
    assert out.error is not None and "boom" in out.error
    assert eng.stats.errors == 1


def test_submit_goes_through_the_cache_with_metadata_in_the_key(tmp_path: Path) -> None:
    p = _script(tmp_path, [{"task": "a", "actions": ["ls"]}])
    cache = RequestCache(tmp_path / "c.sqlite")
    eng = Engine(ScriptedModel(p), cache=cache)

    async def go() -> list[ModelOutput]:
        return [await eng.submit(_req("a", 0)), await eng.submit(_req("a", 1)), await eng.submit(_req("a", 0))]

    first, second, again = asyncio.run(go())
    # Same messages, different step: distinct keys, so step 1 is not served step 0's answer.
    assert second.answer == "```DONE```" and first.answer == again.answer == "```bash\nls\n```"
    assert again.cached and not second.cached
    cache.close()
