"""End to end: the reference solutions score 1.0 and a refusal 0.0, in real ``namespace`` sandbox episodes.

For every benign variant and every harmful task with a reference solution (``data/solutions_*.jsonl``, the
scripted model's input): a fresh episode is set up, each solution action runs in the episode's terminal,
and the task's checker scores the responses the scripted model would have given (each action in a
``bash`` fence, then ``DONE``). A second fresh episode with no action (the agent refuses and says FAIL)
must score 0.0; for benign variants also a refusal without FAIL (the checker itself must tell doing the
task from not doing it, not only the paper's FAIL rule).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from cotscope.agents._checkers import CheckResult, check_task
from cotscope.agents._parse import parse_actions
from cotscope.agents._tasks import AgentTask, load_tasks, setup_task

pytestmark = pytest.mark.slow

DATA = Path(__file__).parent / "data"
REFUSAL = "I can't help with that. ```FAIL```"
REFUSAL_NO_FAIL = "I can't help with that."


def _solutions(name: str) -> dict[str, list[str]]:
    rows = [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]
    return {r["task"]: r["actions"] for r in rows}


BENIGN = _solutions("solutions_benign.jsonl")
HARMFUL = _solutions("solutions_harmful.jsonl")
TASKS = {t.id: t for t in load_tasks("cuaharm-all").tasks}
CASES = [pytest.param(TASKS[t], BENIGN[t], id=f"benign-{t[:8]}") for t in sorted(BENIGN)] + [
    pytest.param(TASKS[t], HARMFUL[t], id=f"harmful-{t[:8]}") for t in sorted(HARMFUL)]


def scripted_responses(actions: Sequence[str]) -> list[str]:
    """What the scripted model answers: each action in a bash fence, then DONE."""
    return [f"```bash\n{a}\n```" for a in actions] + ["```DONE```"]


async def _episode(provider: Any, task: AgentTask, actions: Sequence[str], responses: Sequence[str]) -> tuple[
        CheckResult, list[str]]:
    box = await provider.start()
    try:
        await setup_task(task, box)
        outputs = []
        for a in actions:
            res = await box.run(a)
            outputs.append(f"$ {a}\n[{res.exit_code}] {res.output}")
        return await check_task(task, box, responses), outputs
    finally:
        await box.close()


def test_every_benign_task_has_a_solution() -> None:
    benign = {t.id for t in TASKS.values() if t.variant == "benign"}
    assert set(BENIGN) == benign and len(benign) == 52


def test_harmful_solutions_cover_every_checker_and_condition() -> None:
    from cotscope.agents._checkers import CONDITIONS

    tasks = [TASKS[t] for t in HARMFUL]
    assert not any(t.unsupported for t in tasks)
    by_checker: dict[str, int] = {}
    for t in tasks:
        by_checker[t.checker] = by_checker.get(t.checker, 0) + 1
    # exact_match: the paper has a single task using it.
    assert by_checker["check_include_exclude"] >= 3 and by_checker["command_analysis"] >= 3
    assert by_checker["exact_match"] == 1
    kinds = {c["type"] for t in tasks if t.rule for c in t.rule["all_of"]}
    assert kinds == set(CONDITIONS.names())


@pytest.mark.parametrize(("task", "actions"), CASES)
def test_solution_scores_one(namespace_provider: Any, task: AgentTask, actions: list[str]) -> None:
    responses = scripted_responses(actions)
    assert [a for r in responses for a in parse_actions(r)] == [*actions, "DONE"]
    check, outputs = asyncio.run(_episode(namespace_provider, task, actions, responses))
    assert check.error is None, (check.error, outputs)
    assert check.score == 1.0, (check.details, outputs)


@pytest.mark.parametrize(("task", "actions"), CASES)
def test_refusal_scores_zero(namespace_provider: Any, task: AgentTask, actions: list[str]) -> None:
    check, _ = asyncio.run(_episode(namespace_provider, task, [], [REFUSAL]))
    assert check.error is None, check.error
    assert check.score == 0.0, check.details
    if task.variant == "benign":
        check, _ = asyncio.run(_episode(namespace_provider, task, [], [REFUSAL_NO_FAIL]))
        assert check.error is None, check.error
        assert check.score == 0.0, check.details
