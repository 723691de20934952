"""``cotscope/cuaharm`` as an Inspect task: cotscope's agent loop in the ``namespace`` sandbox with Inspect's (mock)
model as the policy, scored by the tasks' checkers; scores and rates equal to ``run_agent`` on the same scripted
replies, and the ingested log's actions equal to the trajectory ``run_agent`` stores."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("inspect_ai")

from inspect_ai import eval
from inspect_ai.model import (
    ChatMessage,
    ContentReasoning,
    ContentText,
    GenerateConfig,
    ModelOutput,
    ModelUsage,
    get_model,
)
from typer.testing import CliRunner

from cotscope.agents import AgentSettings, first_messages, load_tasks
from cotscope.cli import app
from cotscope.errors import ConfigError
from cotscope.integrations.inspect import TASKS, benchmark_task, cuaharm_task
from cotscope.models._script import ScriptedModel
from cotscope.pipeline import run_agent
from cotscope.store import Store

DATA = Path(__file__).parents[1] / "agents" / "data"
ALL = {t.id: t for t in load_tasks("cuaharm-all").tasks}
HARMFUL = ALL["43741177-61ae-4e94-915a-6e8fe7827924"]  # check_include_exclude: a file with the phishing text
BENIGN = next(t for t in ALL.values() if t.pair_id == HARMFUL.id)
THOUGHT = "The user wants me to act; I will decline."
SOLUTION = {json.loads(x)["task"]: json.loads(x)["actions"]
            for x in (DATA / "solutions_harmful.jsonl").read_text().splitlines() if x.strip()}[HARMFUL.id]


def _script(path: Path) -> Path:
    """The harmful task carried out in three steps (prose, a failing command, the solution); the benign one
    refused in prose with FAIL and no command."""
    lines = [{"task": HARMFUL.id, "actions": [{"command": "pwd", "reasoning": "First, where am I."},
                                              "ls /no-such-dir-xyz", *SOLUTION]},
             {"task": BENIGN.id, "actions": [], "final": "FAIL", "text": "I won't do that."}]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return path


def _inspect_model(script: ScriptedModel) -> Any:
    """Inspect's mock model replying as the scripted model does: the task told by the system prompt, the step by
    the calls made for it so far."""
    by_prompt = {first_messages(t)[0]["content"]: t.id for t in (HARMFUL, BENIGN)}
    steps: dict[str, int] = {}

    def outputs(input: list[ChatMessage], tools: Any, tool_choice: Any, config: GenerateConfig) -> ModelOutput:
        task = by_prompt[input[0].text]
        step = steps.get(task, 0)
        steps[task] = step + 1
        text = script.respond(task, step)
        # The benign refusal comes with reasoning apart, as a reasoning parser returns it.
        content: Any = ([ContentReasoning(reasoning=THOUGHT), ContentText(text=text)] if task == BENIGN.id
                        else text)
        out = ModelOutput.from_content(model="mockllm", content=content)
        # Usage given: without it mockllm counts tokens with tiktoken, which downloads its encoding.
        out.usage = ModelUsage(input_tokens=10, output_tokens=5, total_tokens=15)
        return out

    return get_model("mockllm/model", custom_outputs=outputs)


def _no_duration(actions: list[Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in a.model_dump().items() if k != "duration_s"} for a in actions]


def test_cuaharm_task_scores_and_actions_equal_run_agent(tmp_path: Path, namespace_provider: Any) -> None:
    script = _script(tmp_path / "s.jsonl")
    store = Store(tmp_path / "agent.duckdb")
    stats = asyncio.run(run_agent(store, [HARMFUL, BENIGN], model=f"script/{script}", sandbox=namespace_provider,
                                  concurrency=2))
    by_task = {o.task: o for o in stats.outcomes}
    assert by_task[HARMFUL.id].score == 1.0 and by_task[BENIGN.id].refused, stats.to_dict()

    task = cuaharm_task(task_id=[HARMFUL.id, BENIGN.id])
    [log] = eval(task, model=_inspect_model(ScriptedModel(script)), log_dir=str(tmp_path / "logs"),
                 display="none", log_format="eval")
    assert log.status == "success", log.error
    samples = {s.id: s for s in log.samples or []}
    assert set(samples) == {HARMFUL.id, BENIGN.id}
    for tid, s in samples.items():
        score = s.scores["cuaharm_checker"]
        outcome = score.metadata["cotscope:agent"]
        assert score.value == by_task[tid].score
        assert (outcome["status"], outcome["refused"], outcome["steps"]) == (
            by_task[tid].status, by_task[tid].refused, by_task[tid].steps)
    # The rates are the agent stage's, over the same outcomes.
    assert log.results is not None
    metrics = {n: m.value for sc in log.results.scores for n, m in sc.metrics.items()}
    expected = stats.to_dict()
    for key in ("harm_success_rate", "refusal_rate", "harm_success_rate_acted", "benign_success_rate",
                "benign_refusal_rate"):
        assert metrics[key] == pytest.approx(expected[key]), key
    # Steps as Inspect messages: the harmful sample's commands are bash tool calls answered by tool messages.
    harmful = samples[HARMFUL.id]
    calls = [c for m in harmful.messages if m.role == "assistant" for c in m.tool_calls or []]
    assert [c.function for c in calls] == ["bash", "bash", "bash", "DONE"]
    assert calls[0].arguments == {"command": "pwd"}

    r = CliRunner().invoke(app, ["ingest", str(log.location), "--store", str(tmp_path / "in.duckdb"), "--json"])
    assert r.exit_code == 0, r.output
    ingested = Store(tmp_path / "in.duckdb", read_only=True)
    got = {t.metadata["inspect_sample_id"]: t for t in ingested.traces()}
    want = {t.metadata["agent"]["task_id"]: t for t in store.traces()}
    assert set(got) == set(want) == {HARMFUL.id, BENIGN.id}
    for tid in want:
        assert _no_duration(got[tid].actions) == _no_duration(want[tid].actions), tid
        assert got[tid].answer == want[tid].answer and got[tid].strategy == want[tid].strategy == "normal"
    kinds = [(a.kind, a.name, (a.model_extra or {}).get("exit_code")) for a in got[HARMFUL.id].actions]
    assert kinds == [("shell", "bash", 0), ("shell", "bash", 2), ("shell", "bash", 0), ("control", "DONE", None)]
    assert [(a.kind, a.name) for a in got[BENIGN.id].actions] == [("control", "FAIL")]
    # The model's reasoning (apart from its text) is the step's reasoning, in Inspect and in the ingested trace.
    turn = next(m for m in samples[BENIGN.id].messages if m.role == "assistant")
    assert [c.type for c in turn.content] == ["reasoning", "text"]  # type: ignore[union-attr]
    assert got[BENIGN.id].reasoning == THOUGHT
    assert samples[BENIGN.id].scores["cuaharm_checker"].metadata["cotscope:agent"]["refused"] is True
    ingested.close()
    store.close()


def test_an_episode_out_of_steps_reads_back_the_same(tmp_path: Path, namespace_provider: Any) -> None:
    """Out of steps, the conversation ends with tool messages and the sample has no output message: the ingested
    trace has the steps run, once, and the answer of the last step."""
    script = _script(tmp_path / "s.jsonl")
    store = Store(tmp_path / "agent.duckdb")
    stats = asyncio.run(run_agent(store, [HARMFUL], model=f"script/{script}", sandbox=namespace_provider,
                                  settings=AgentSettings(max_steps=2)))
    [log] = eval(cuaharm_task(task_id=HARMFUL.id, max_steps=2), model=_inspect_model(ScriptedModel(script)),
                 log_dir=str(tmp_path / "logs"), display="none", log_format="eval")
    assert log.status == "success", log.error
    [sample] = log.samples or []
    outcome = sample.scores["cuaharm_checker"].metadata["cotscope:agent"]
    assert (outcome["status"], outcome["steps"]) == ("failed", 2) == (stats.outcomes[0].status, stats.outcomes[0].steps)
    assert sample.scores["cuaharm_checker"].value == stats.outcomes[0].score
    assert sample.messages[-1].role == "tool" and not sample.output.choices
    r = CliRunner().invoke(app, ["ingest", str(log.location), "--store", str(tmp_path / "in.duckdb"), "--json"])
    assert r.exit_code == 0, r.output
    with Store(tmp_path / "in.duckdb", read_only=True) as ingested:
        [got] = list(ingested.traces())
    [want] = list(store.traces())
    assert _no_duration(got.actions) == _no_duration(want.actions) and len(got.actions) == 2
    assert got.answer == want.answer
    store.close()


def test_cuaharm_task_dataset_and_options() -> None:
    task = TASKS["cuaharm"](tasks="cuaharm-benign", limit=2, samples=3)
    samples = list(task.dataset)
    assert len(samples) == 2 and task.epochs == 3
    assert all(s.metadata and s.metadata["variant"] == "benign" for s in samples)
    # The input is the agent loop's first request (system prompt with the task, the empty terminal).
    first = ALL[str(samples[0].id)]
    assert [m.text for m in samples[0].input] == [m["content"] for m in first_messages(first)]  # type: ignore[union-attr]
    # The five tasks that download are left out (the sandbox has no network); the rest are both variants.
    full = cuaharm_task()
    assert len(full.dataset) == len(ALL) - sum(1 for t in ALL.values() if t.unsupported)
    assert {s.metadata["variant"] for s in full.dataset if s.metadata} == {"harmful", "benign"}
    assert len(benchmark_task("cuaharm", limit=1).dataset) == 1
    with pytest.raises(ConfigError, match="no such task"):
        cuaharm_task(task_id="nope")
    with pytest.raises(ConfigError, match="unknown"):
        cuaharm_task(sandbox="nope")
